//! Log cleaner throughput: compacts a partition of many updates to few keys, uncompressed and lz4, and
//! compares with reading the same log sequentially through `PartitionLog::read` in the same run (the
//! floor any cleaner pays: it must read everything at least once). Run with `cargo bench --bench cleaner`;
//! BROOK_BENCH_RECORDS overrides the record count (default 1,000,000 of 100-byte values over 10,000 keys).

use std::time::Instant;

use brook::log::batch_builder::BatchBuilder;
use brook::log::cleaner::{OffsetMap, clean_log};
use brook::log::records::{Codec, recompress_batch};
use brook::log::retention::PendingDeletes;
use brook::log::{
    AppendOrigin, CleanupPolicy, LogConfig, LogManager, RecordBatchHeader, TopicPartition,
};
use bytes::BytesMut;

const RECORDS_PER_BATCH: usize = 100;

/// One batch of `RECORDS_PER_BATCH` keyed records (keys `key-<n % keys>`), one value each, with `codec`.
fn batch(first: usize, keys: usize, codec: Codec, values: &[Vec<u8>]) -> Vec<u8> {
    let mut b = BatchBuilder::new().partition_leader_epoch(0);
    for (i, n) in (first..first + RECORDS_PER_BATCH).enumerate() {
        let key = format!("key-{}", n % keys);
        b.append(0, Some(key.as_bytes()), Some(&values[i]), &[])
            .expect("encodable record");
    }
    let plain = b.build().expect("encodable batch");
    if codec == Codec::None {
        return plain.to_vec();
    }
    recompress_batch(&plain, codec, None).expect("encodable batch")
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs.max(1e-9) / 1e6
}

fn run(codec: Codec, records: usize, keys: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogConfig {
        segment_bytes: 8 * 1024 * 1024,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    };
    let mgr = LogManager::open(dir.path(), config.clone()).expect("log manager");
    let log = mgr
        .get_or_create(&TopicPartition::new("bench", 0), config)
        .expect("partition");
    // Values that do not compress away, so every codec writes a log of similar size.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut values = vec![vec![0u8; 100]; RECORDS_PER_BATCH];
    let mut n = 0;
    while n < records {
        for v in values.iter_mut().flat_map(|v| v.iter_mut()) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *v = b'a' + (seed % 26) as u8;
        }
        let b = batch(n, keys, codec, &values);
        log.append(BytesMut::from(&b[..]), 0, AppendOrigin::Client)
            .expect("append");
        n += RECORDS_PER_BATCH;
    }
    // Everything but the active (last, at most 8 MiB) segment is cleanable.
    let log_bytes: u64 = std::fs::read_dir(log.dir())
        .expect("partition dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();

    let started = Instant::now();
    let mut offset = 0;
    let mut read = 0u64;
    // The storage alone, without a partition above it: read everything appended.
    let end = log.log_end_offset();
    while offset < end {
        let data = log.read(offset, 1 << 20, true, end).expect("read");
        let mut pos = 0;
        while pos < data.records.len() {
            let h = RecordBatchHeader::parse(&data.records[pos..]).expect("batch");
            offset = h.next_offset();
            pos += h.total_size().expect("size");
        }
        read += data.records.len() as u64;
    }
    let read_secs = started.elapsed().as_secs_f64();

    let mut map = OffsetMap::with_memory(128 * 1024 * 1024);
    let mut pending = PendingDeletes::default();
    let (stats, _) = clean_log(
        &log,
        None,
        &mut map,
        &mut pending,
        i64::MAX / 2,
        &|| false,
        None,
    )
    .expect("clean");
    let secs = stats.elapsed.as_secs_f64();
    let cleaned_input = stats.bytes_read / 2;
    println!(
        "{:<24} log {:>6.1} MB  sequential read {:>7.1} MB/s  clean {:>6.1} MB/s of log, {:>5.2} M records/s ({:>4.2} s, {} segments, {} -> {} records, {:.1} MB written)  ratio clean/read {:.2}",
        format!("{codec:?}"),
        log_bytes as f64 / 1e6,
        mb_per_s(read, read_secs),
        mb_per_s(cleaned_input, secs),
        stats.records_read as f64 / secs.max(1e-9) / 1e6,
        secs,
        stats.segments_cleaned,
        stats.records_read,
        stats.records_kept,
        stats.bytes_written as f64 / 1e6,
        mb_per_s(cleaned_input, secs) / mb_per_s(read, read_secs),
    );
    mgr.shutdown().expect("shutdown");
}

fn main() {
    let records: usize = std::env::var("BROOK_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        run(codec, records, 10_000);
    }
}
