//! Record decoding where the broker decompresses: the produce path's LogValidator on network bytes (the
//! record-by-record key and timestamp checks of a compacted topic with a timestamp window, and the
//! re-encoding of a topic whose compression.type differs from the batch's codec) and the cleaner's
//! decompress + parse + re-compress of a batch payload.
//!
//! The first input byte picks the codec (0-4, others are refused) and a small decompression cap, so bombs and
//! the cap's edge are explored. Invariants: no panic; decompression never yields more than the cap; records
//! parsed from a payload re-encode, re-compress and decompress to the same records; a re-encoded append is
//! valid batches with the same records count.
#![no_main]

use brook::log::records::{Codec, compress, decompress, parse_records};
use brook::log::{
    CleanupPolicy, CompressionType, LogConfig, TopicPartition, validate_batches, validator,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // The produce path: batches that pass validate_batches (whose CRC fuzzing may repair or not) go through
    // the validator as a compacted topic with a timestamp window and a target codec would: refuse or
    // re-encode, never panic.
    if let Ok(summary) = validate_batches(rest, u32::MAX) {
        let target = [
            CompressionType::Uncompressed,
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ][usize::from(mode >> 5) % 5];
        let config = LogConfig {
            cleanup_policy: CleanupPolicy {
                delete: false,
                compact: mode & 0x10 != 0,
            },
            timestamp_before_max_ms: 1_000,
            compression_type: target,
            ..LogConfig::default()
        };
        let tp = TopicPartition::new("fuzz", 0);
        let _ = validator::validate_records(rest, &config, 1_700_000_000_000, &tp);
        if let Ok(Some(out)) = validator::recompress(rest, &config) {
            let again = validate_batches(&out, u32::MAX).expect("re-encoded batches are valid");
            assert_eq!(again.record_count, summary.record_count);
        }
    }

    let codec_id = mode & 0x7;
    let cap = if mode & 0x8 != 0 { 1 << 10 } else { 1 << 20 };
    let Ok((codec, records)) = decompress(codec_id, rest, cap) else {
        return;
    };
    assert!(records.len() <= cap, "decompression stays under its cap");
    let count = i32::from(mode >> 4);
    let Ok(parsed) = parse_records(&records, count) else {
        return;
    };
    assert_eq!(parsed.len(), count as usize);
    if codec == Codec::None {
        return;
    }
    // What the cleaner writes back must read back the same.
    let Ok(again) = compress(codec, &records) else {
        return;
    };
    let (_, round) = decompress(codec.id(), &again, records.len().max(1) * 2 + 64)
        .expect("brook's own compressed output decompresses");
    assert_eq!(round, records, "compress/decompress round trip");
});
