//! Kafka's `LogValidator` for brook's append path: what a topic's timestamp configs require of a batch
//! before it is stored.
//!
//! - `message.timestamp.type=LogAppendTime`: each batch is stamped with the broker's clock: the timestamp-type
//!   attribute bit is set, `maxTimestamp` becomes the append time and the CRC is recomputed (consumers read
//!   every record's timestamp as the batch's `maxTimestamp`). Records are not rewritten.
//! - `CreateTime` with `message.timestamp.before.max.ms` / `after.max.ms`: a batch with a timestamp outside
//!   `[now - before, now + after]` is refused with INVALID_TIMESTAMP. Uncompressed batches are checked record
//!   by record; compressed ones on their header's `baseTimestamp` and `maxTimestamp` only (brook does not
//!   decompress on the produce path), which catches the earliest-first and the latest record.
//!   Records without a timestamp (-1) are not checked.

use crate::log::error::LogError;
use crate::log::record_batch::{CRC_START, RecordBatchHeader};
use crate::log::records;
use crate::log::{LogConfig, TimestampType};

const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const CRC_AT: usize = 17;
/// Attribute bit 3: the batch's timestamps are LogAppendTime.
const LOG_APPEND_TIME_BIT: i16 = 0x08;
/// Kafka's "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

/// Validates (and for LogAppendTime stamps, in place) every batch of an append, whole batches already
/// checked by `validate_batches`. Returns the log append time, or -1 under CreateTime. Nothing is changed
/// when a batch is refused.
pub fn validate_and_stamp(
    records: &mut [u8],
    config: &LogConfig,
    now_ms: i64,
) -> Result<i64, LogError> {
    match config.timestamp_type {
        TimestampType::LogAppendTime => {
            for_each_batch(records, |batch| {
                let attributes =
                    i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
                batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
                    .copy_from_slice(&(attributes | LOG_APPEND_TIME_BIT).to_be_bytes());
                batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
                    .copy_from_slice(&now_ms.to_be_bytes());
                let crc = crc32c::crc32c(&batch[CRC_START..]);
                batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            });
            Ok(now_ms)
        }
        TimestampType::CreateTime => {
            let earliest = now_ms.saturating_sub(config.timestamp_before_max_ms);
            let latest = now_ms.saturating_add(config.timestamp_after_max_ms);
            let check = |ts: i64| -> Result<(), LogError> {
                if ts == NO_TIMESTAMP || (earliest..=latest).contains(&ts) {
                    return Ok(());
                }
                let (which, limit, key) = if ts < earliest {
                    (
                        "before",
                        config.timestamp_before_max_ms,
                        "message.timestamp.before.max.ms",
                    )
                } else {
                    (
                        "after",
                        config.timestamp_after_max_ms,
                        "message.timestamp.after.max.ms",
                    )
                };
                Err(LogError::InvalidTimestamp(format!(
                    "timestamp {ts} is more than {limit} ms {which} the broker's time {now_ms} ({key})"
                )))
            };
            if config.timestamp_before_max_ms == i64::MAX
                && config.timestamp_after_max_ms == i64::MAX
            {
                return Ok(NO_TIMESTAMP);
            }
            let mut pos = 0;
            while pos < records.len() {
                let h = RecordBatchHeader::parse(&records[pos..])
                    .expect("invariant: validated batches");
                let size = h.total_size().expect("invariant: validated batches");
                let batch = &records[pos..pos + size];
                if h.compression_type() == 0 {
                    let mut result = Ok(());
                    for_each_record_timestamp(batch, |_, ts| {
                        if result.is_ok() {
                            result = check(ts);
                        }
                    })?;
                    result?;
                } else {
                    check(h.base_timestamp())?;
                    check(h.max_timestamp())?;
                }
                pos += size;
            }
            Ok(NO_TIMESTAMP)
        }
    }
}

fn for_each_batch(records: &mut [u8], mut f: impl FnMut(&mut [u8])) {
    let mut pos = 0;
    while pos < records.len() {
        let size = RecordBatchHeader::parse(&records[pos..])
            .ok()
            .and_then(|h| h.total_size())
            .expect("invariant: validated batches");
        f(&mut records[pos..pos + size]);
        pos += size;
    }
}

/// Calls `f(offset_delta, timestamp)` for each record of an uncompressed batch (LogAppendTime batches report
/// their `maxTimestamp` for every record). Fails on a record that runs past the batch.
pub fn for_each_record_timestamp(
    batch: &[u8],
    mut f: impl FnMut(i32, i64),
) -> Result<(), LogError> {
    // A cap of 0: nothing is decompressed on the produce path; a compressed batch fails here.
    records::find_record_timestamp(batch, 0, |delta, ts| {
        f(delta, ts);
        false
    })
    .map(|_| ())
    .map_err(|e| LogError::CorruptMessage(format!("record batch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record_batch::test_support::batch;
    use crate::log::record_batch::validate_batches;

    #[test]
    fn log_append_time_stamps_batches_with_a_valid_crc() {
        let mut records = batch(3, 10, 1_000);
        records.extend_from_slice(&batch(2, 10, 2_000));
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        assert_eq!(
            validate_and_stamp(&mut records, &config, 777_000).unwrap(),
            777_000
        );
        let summary = validate_batches(&records, u32::MAX).expect("CRC recomputed");
        assert_eq!(summary.max_timestamp, 777_000);
        let h = RecordBatchHeader::parse(&records).unwrap();
        assert!(h.is_log_append_time());
        let mut seen = Vec::new();
        for_each_record_timestamp(&records, |d, ts| seen.push((d, ts))).unwrap();
        assert_eq!(seen, vec![(0, 777_000), (1, 777_000), (2, 777_000)]);
    }

    #[test]
    fn create_time_outside_the_window_is_refused_and_untouched() {
        let now = 10_000_000;
        let config = LogConfig {
            timestamp_before_max_ms: 60_000,
            timestamp_after_max_ms: 1_000,
            ..LogConfig::default()
        };
        let mut old = batch(2, 10, now - 120_000);
        let before = old.clone();
        let err = validate_and_stamp(&mut old, &config, now).unwrap_err();
        assert!(matches!(err, LogError::InvalidTimestamp(_)), "{err}");
        assert_eq!(old, before);
        let mut future = batch(1, 10, now + 5_000);
        assert!(validate_and_stamp(&mut future, &config, now).is_err());
        let mut fine = batch(4, 10, now - 30_000);
        assert_eq!(validate_and_stamp(&mut fine, &config, now).unwrap(), -1);
    }

    #[test]
    fn compressed_batches_are_checked_on_their_header_timestamps() {
        let now = 10_000_000;
        let config = LogConfig {
            timestamp_before_max_ms: 60_000,
            ..LogConfig::default()
        };
        let gzip = |mut b: Vec<u8>| {
            // Marked gzip: the records are not readable as such, so only the header may be consulted.
            b[ATTRIBUTES_AT + 1] |= 1;
            b
        };
        let mut old = gzip(batch(2, 10, now - 120_000));
        assert!(matches!(
            validate_and_stamp(&mut old, &config, now),
            Err(LogError::InvalidTimestamp(_))
        ));
        let mut recent = gzip(batch(2, 10, now - 1_000));
        assert_eq!(validate_and_stamp(&mut recent, &config, now).unwrap(), -1);
    }
}
