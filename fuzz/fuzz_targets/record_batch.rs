//! Produced record batches: arbitrary bytes go through `validate_batches` (what Produce runs before an
//! append), and whatever it accepts through the append path's offset and leader-epoch assignment.
//!
//! The first input byte picks the `max.message.bytes` limit and whether to repair every batch's CRC first,
//! so the fuzzer also explores what lies behind the CRC check. Invariants: no panic; accepted batches are
//! whole (their sizes sum to the input), each one passes its CRC and has `recordCount == lastOffsetDelta + 1`;
//! the summary matches the batches; assigning offsets and the epoch keeps every CRC valid and the buffer
//! still validates to the same summary.
#![no_main]

use brook::log::record_batch::{
    RecordBatchHeader, set_base_offset, set_partition_leader_epoch, validate_batches,
};
use libfuzzer_sys::fuzz_target;

/// Bytes from the start of a batch to the first byte its CRC covers (attributes).
const CRC_START: usize = 21;
/// Where the CRC itself sits.
const CRC_AT: usize = 17;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let max_message_bytes = match mode & 0x3 {
        0 => 1_048_588, // Kafka's default message.max.bytes
        1 => 64,
        2 => 512,
        _ => u32::MAX,
    };
    let mut buf = rest.to_vec();
    if mode & 0x4 != 0 {
        fix_crcs(&mut buf);
    }
    let Ok(summary) = validate_batches(&buf, max_message_bytes) else {
        return;
    };

    // Walk the accepted batches as the append path does, checking what validation promised.
    let mut pos = 0usize;
    let mut batches = 0u32;
    let mut records = 0u64;
    let mut max_timestamp = i64::MIN;
    let mut first_base_timestamp = None;
    while pos < buf.len() {
        let h = RecordBatchHeader::parse(&buf[pos..]).expect("validated: a whole header");
        let size = h.total_size().expect("validated: a usable batchLength");
        assert!(pos + size <= buf.len(), "validated: the batch fits");
        assert!(
            size <= max_message_bytes as usize,
            "validated: within max.message.bytes"
        );
        assert_eq!(h.magic(), 2);
        assert!(h.record_count() >= 1);
        assert_eq!(
            i64::from(h.record_count()),
            i64::from(h.last_offset_delta()) + 1
        );
        assert_eq!(crc32c::crc32c(&buf[pos + CRC_START..pos + size]), h.crc());
        first_base_timestamp.get_or_insert(h.base_timestamp());
        max_timestamp = max_timestamp.max(h.max_timestamp());
        batches += 1;
        records += h.record_count() as u64;
        pos += size;
    }
    assert_eq!(pos, buf.len(), "accepted batches cover the input exactly");
    assert_eq!(summary.batch_count, batches);
    assert_eq!(summary.record_count, records);
    assert_eq!(summary.max_timestamp, max_timestamp);
    assert_eq!(Some(summary.first_base_timestamp), first_base_timestamp);

    // Offset assignment (PartitionLog::append): rewrite baseOffset and partitionLeaderEpoch in place.
    let base = i64::from(u32::from_be_bytes([
        data.len() as u8,
        mode,
        rest.first().copied().unwrap_or(0),
        0,
    ]));
    let mut next = base;
    let mut pos = 0usize;
    while pos < buf.len() {
        let h = RecordBatchHeader::parse(&buf[pos..]).expect("validated: a whole header");
        let (count, size) = (h.record_count(), h.total_size().expect("validated"));
        set_base_offset(&mut buf[pos..], next);
        set_partition_leader_epoch(&mut buf[pos..], 7);
        let h = RecordBatchHeader::parse(&buf[pos..]).expect("still a whole header");
        assert_eq!(h.base_offset(), next);
        assert_eq!(h.partition_leader_epoch(), 7);
        assert_eq!(h.last_offset(), next + i64::from(count) - 1);
        next += i64::from(count);
        pos += size;
    }
    assert_eq!(next - base, summary.record_count as i64);
    assert_eq!(
        validate_batches(&buf, max_message_bytes).ok(),
        Some(summary),
        "offsets and epochs lie outside the CRC"
    );
});

/// Rewrites the CRC of every batch whose header can be read and whose length fits, so mutations of the
/// covered bytes are not all rejected at the CRC check.
fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while pos < buf.len() {
        let Ok(h) = RecordBatchHeader::parse(&buf[pos..]) else {
            return;
        };
        let Some(size) = h.total_size().filter(|s| pos + s <= buf.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&buf[pos + CRC_START..pos + size]);
        buf[pos + CRC_AT..pos + CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        pos += size;
    }
}
