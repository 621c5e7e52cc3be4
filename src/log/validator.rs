//! Kafka's `LogValidator` for brook's append path: what a topic's configs require of a batch before it
//! is stored. Three steps, in Kafka's order:
//!
//! - [`validate_records`], record by record, as Kafka does: a compacted topic refuses records without a
//!   key; `CreateTime` with `message.timestamp.before.max.ms` / `after.max.ms` refuses records stamped
//!   outside `[now - before, now + after]` (records without a timestamp, -1, pass). A batch with such
//!   records is refused whole, with a [`RecordError`] per record (its index within the batch), which
//!   Produce v8+ returns so the client fails exactly those records. Compressed batches are decompressed
//!   (capped) for keys; for timestamps only when their header's `baseTimestamp` or `maxTimestamp` is out of
//!   the window, to find which records are.
//! - [`recompress`]: a topic whose `compression.type` is not `producer` stores every batch with that codec,
//!   re-encoding those of another (new CRC, same offsets and timestamps). `producer`, the default, never
//!   looks inside a batch.
//! - [`stamp`]: `message.timestamp.type=LogAppendTime` stamps each batch with the broker's clock: the
//!   timestamp-type attribute bit is set, `maxTimestamp` becomes the append time and the CRC is recomputed
//!   (consumers read every record's timestamp as the batch's `maxTimestamp`). Records are not rewritten.
//!
//! Nothing is changed when a batch is refused.

use crate::log::error::{LogError, RecordError};
use crate::log::record_batch::{CRC_START, RECORD_BATCH_OVERHEAD, RecordBatchHeader};
use crate::log::records::{self, MAX_DECOMPRESSED_BATCH_BYTES};
use crate::log::{LogConfig, TimestampType, TopicPartition};

const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const CRC_AT: usize = 17;
/// Attribute bit 3: the batch's timestamps are LogAppendTime.
const LOG_APPEND_TIME_BIT: i16 = 0x08;
/// Kafka's "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

/// Checks every record of every batch (whole batches already checked by `validate_batches`) against the
/// topic's key and timestamp rules; the first batch with refused records fails the append with Kafka's
/// RecordValidationException (INVALID_TIMESTAMP if any record's timestamp is wrong, else INVALID_RECORD).
pub fn validate_records(
    records: &[u8],
    config: &LogConfig,
    now_ms: i64,
    tp: &TopicPartition,
) -> Result<(), LogError> {
    let compacted = config.cleanup_policy.compact;
    let window = (config.timestamp_type == TimestampType::CreateTime
        && (config.timestamp_before_max_ms != i64::MAX
            || config.timestamp_after_max_ms != i64::MAX))
        .then(|| {
            (
                now_ms.saturating_sub(config.timestamp_before_max_ms),
                now_ms.saturating_add(config.timestamp_after_max_ms),
            )
        });
    if !compacted && window.is_none() {
        return Ok(());
    }
    let in_window =
        |ts: i64| ts == NO_TIMESTAMP || window.is_none_or(|(lo, hi)| (lo..=hi).contains(&ts));
    let mut pos = 0;
    while pos < records.len() {
        let h = RecordBatchHeader::parse(&records[pos..]).expect("invariant: validated batches");
        let size = h.total_size().expect("invariant: validated batches");
        let batch = &records[pos..pos + size];
        pos += size;
        let check_keys = compacted && !h.is_control();
        let compressed = h.compression_type() != 0;
        if compressed
            && !check_keys
            && in_window(h.base_timestamp())
            && in_window(h.max_timestamp())
        {
            continue;
        }
        let decompressed;
        let payload = if compressed {
            decompressed = records::decompress(
                h.compression_type(),
                &batch[RECORD_BATCH_OVERHEAD..],
                MAX_DECOMPRESSED_BATCH_BYTES,
            )
            .map_err(|e| LogError::CorruptMessage(format!("record batch: {e}")))?
            .1;
            &decompressed[..]
        } else {
            &batch[RECORD_BATCH_OVERHEAD..]
        };
        // One entry per refused record, as Kafka reports them all: bounded by the batch's record count,
        // itself bounded by `max.message.bytes` (a record takes at least 7 bytes).
        let mut errors = Vec::new();
        let mut timestamp_error = false;
        records::for_each_record(payload, h.record_count(), |index, r| {
            if check_keys && r.key.is_none() {
                errors.push(RecordError {
                    batch_index: index,
                    message: format!(
                        "Compacted topic cannot accept message without key in topic partition {tp}."
                    ),
                });
                return;
            }
            let ts = h.record_timestamp(r.timestamp_delta);
            if let Some((lo, hi)) = window
                && !in_window(ts)
            {
                timestamp_error = true;
                errors.push(RecordError {
                    batch_index: index,
                    message: format!(
                        "Timestamp {ts} of message with offset {} is out of range. The timestamp should be within [{lo}, {hi}]",
                        h.base_offset().saturating_add(i64::from(r.offset_delta))
                    ),
                });
            }
        })
        .map_err(|e| LogError::CorruptMessage(format!("record batch: {e}")))?;
        if !errors.is_empty() {
            return Err(LogError::from_record_errors(timestamp_error, errors));
        }
    }
    Ok(())
}

/// The batches re-encoded with the topic's `compression.type`, or None when nothing needs it (`producer`,
/// or every batch already has the codec). Control batches are kept as written, as Kafka keeps them. A
/// re-encoded batch larger than `max.message.bytes` is refused, as Kafka checks the validated size.
pub fn recompress(records: &[u8], config: &LogConfig) -> Result<Option<Vec<u8>>, LogError> {
    let Some(target) = config.compression_type.target() else {
        return Ok(None);
    };
    let level = match target {
        records::Codec::Gzip => Some(config.compression_gzip_level),
        records::Codec::Lz4 => Some(config.compression_lz4_level),
        records::Codec::Zstd => Some(config.compression_zstd_level),
        _ => None,
    };
    let needs = |h: &RecordBatchHeader<'_>| !h.is_control() && h.compression_type() != target.id();
    let mut pos = 0;
    let mut out: Option<Vec<u8>> = None;
    while pos < records.len() {
        let h = RecordBatchHeader::parse(&records[pos..]).expect("invariant: validated batches");
        let size = h.total_size().expect("invariant: validated batches");
        let batch = &records[pos..pos + size];
        if needs(&h) {
            let rebuilt = records::recompress_batch(batch, target, level)
                .map_err(|e| LogError::CorruptMessage(format!("record batch: {e}")))?;
            if rebuilt.len() > config.max_message_bytes as usize {
                return Err(LogError::MessageTooLarge {
                    size: rebuilt.len(),
                    max: config.max_message_bytes,
                });
            }
            out.get_or_insert_with(|| records[..pos].to_vec())
                .extend_from_slice(&rebuilt);
        } else if let Some(out) = out.as_mut() {
            out.extend_from_slice(batch);
        }
        pos += size;
    }
    Ok(out)
}

/// Stamps every batch under LogAppendTime (see the module doc). Returns the log append time, or -1 under
/// CreateTime.
pub fn stamp(records: &mut [u8], config: &LogConfig, now_ms: i64) -> i64 {
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
            now_ms
        }
        TimestampType::CreateTime => NO_TIMESTAMP,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::CleanupPolicy;
    use crate::log::CompressionType;
    use crate::log::record_batch::test_support::{batch, batch_with_timestamps};
    use crate::log::record_batch::validate_batches;
    use crate::log::records::test_support::{ALL_CODECS, keyed_batch};
    use crate::log::records::{Codec, decompress, parse_records};

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    #[test]
    fn log_append_time_stamps_batches_with_a_valid_crc() {
        let mut records = batch(3, 10, 1_000);
        records.extend_from_slice(&batch(2, 10, 2_000));
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        validate_records(&records, &config, 777_000, &tp()).unwrap();
        assert_eq!(stamp(&mut records, &config, 777_000), 777_000);
        let summary = validate_batches(&records, u32::MAX).expect("CRC recomputed");
        assert_eq!(summary.max_timestamp, 777_000);
        let h = RecordBatchHeader::parse(&records).unwrap();
        assert!(h.is_log_append_time());
        let mut seen = Vec::new();
        records::find_record_timestamp(&records, 0, |d, ts| {
            seen.push((d, ts));
            false
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 777_000), (1, 777_000), (2, 777_000)]);
    }

    #[test]
    fn create_time_outside_the_window_is_refused_record_by_record() {
        let now = 10_000_000;
        let config = LogConfig {
            timestamp_before_max_ms: 60_000,
            timestamp_after_max_ms: 1_000,
            ..LogConfig::default()
        };
        let records =
            batch_with_timestamps(&[(now, b"a"), (now - 120_000, b"b"), (now + 5_000, b"c")]);
        let err = validate_records(&records, &config, now, &tp()).unwrap_err();
        assert!(matches!(err, LogError::InvalidTimestamp { .. }), "{err}");
        let indexes: Vec<i32> = err.record_errors().iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, vec![1, 2]);
        assert!(
            err.record_errors()[0].message.starts_with(&format!(
                "Timestamp {} of message with offset 1 is out of range",
                now - 120_000
            )),
            "{}",
            err.record_errors()[0].message
        );
        assert_eq!(stamp(&mut batch(4, 10, now - 30_000), &config, now), -1);
        validate_records(&batch(4, 10, now - 30_000), &config, now, &tp()).unwrap();
    }

    #[test]
    fn compressed_batches_are_opened_only_when_their_header_is_out_of_the_window() {
        let now = 10_000_000;
        let config = LogConfig {
            timestamp_before_max_ms: 60_000,
            ..LogConfig::default()
        };
        let gzip = |mut b: Vec<u8>| {
            // Marked gzip but not compressed: unreadable as such, so only the header may be consulted.
            b[ATTRIBUTES_AT + 1] |= 1;
            b
        };
        validate_records(&gzip(batch(2, 10, now - 1_000)), &config, now, &tp()).unwrap();
        // Out of the window: opened to find the records, and really compressed it names them.
        let old = keyed_batch(0, &[(Some(b"k"), None)], now - 120_000, Codec::Zstd);
        let err = validate_records(&old, &config, now, &tp()).unwrap_err();
        assert_eq!(err.record_errors().len(), 1);
        assert!(matches!(err, LogError::InvalidTimestamp { .. }));
    }

    #[test]
    fn keyless_records_on_a_compacted_topic_are_each_named() {
        let config = LogConfig {
            cleanup_policy: CleanupPolicy {
                delete: false,
                compact: true,
            },
            ..LogConfig::default()
        };
        for codec in ALL_CODECS {
            let good = keyed_batch(0, &[(Some(b"k"), Some(b"v"))], 0, codec);
            validate_records(&good, &config, 0, &tp()).unwrap();
            let mut two = good.clone();
            two.extend(keyed_batch(
                0,
                &[(Some(b"k"), None), (None, Some(b"v")), (None, None)],
                0,
                codec,
            ));
            let err = validate_records(&two, &config, 0, &tp()).unwrap_err();
            let LogError::InvalidRecord { message, .. } = &err else {
                panic!("{err}");
            };
            let errors = err.record_errors();
            assert_eq!(
                errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
                vec![1, 2]
            );
            assert_eq!(
                errors[0].message,
                "Compacted topic cannot accept message without key in topic partition t-0."
            );
            assert!(
                message.starts_with("One or more records have been rejected due to 2 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=1, message='Compacted topic"),
                "{message}"
            );
        }
    }

    #[test]
    fn producer_compression_leaves_batches_alone() {
        let b = keyed_batch(0, &[(Some(b"k"), Some(b"v"))], 5, Codec::Gzip);
        assert_eq!(recompress(&b, &LogConfig::default()).unwrap(), None);
        let lz4 = LogConfig {
            compression_type: CompressionType::Lz4,
            ..LogConfig::default()
        };
        let already = keyed_batch(0, &[(Some(b"k"), Some(b"v"))], 5, Codec::Lz4);
        assert_eq!(recompress(&already, &lz4).unwrap(), None);
    }

    #[test]
    fn recompression_keeps_records_and_header_fields() {
        let records: &[records::test_support::KeyValue<'_>] = &[
            (Some(b"k1"), Some(b"v1")),
            (Some(b"k2"), None),
            (None, Some(b"v3")),
        ];
        for target in [
            CompressionType::Uncompressed,
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            let config = LogConfig {
                compression_type: target,
                compression_gzip_level: 9,
                compression_zstd_level: -5,
                ..LogConfig::default()
            };
            let codec = target.target().unwrap();
            for source in ALL_CODECS {
                let mut input = keyed_batch(7, records, 1_234, source);
                input.extend(keyed_batch(10, &records[..1], 5_678, source));
                let Some(out) = recompress(&input, &config).unwrap() else {
                    assert_eq!(
                        source.id(),
                        codec.id(),
                        "only a batch in the target codec is kept"
                    );
                    continue;
                };
                let summary = validate_batches(&out, u32::MAX).expect("valid CRC and lengths");
                assert_eq!(summary.record_count, 4);
                let mut pos = 0;
                let mut original_pos = 0;
                while pos < out.len() {
                    let h = RecordBatchHeader::parse(&out[pos..]).unwrap();
                    let o = RecordBatchHeader::parse(&input[original_pos..]).unwrap();
                    assert_eq!(h.compression_type(), codec.id(), "{source:?} -> {target}");
                    assert_eq!(
                        (h.base_offset(), h.last_offset_delta(), h.base_timestamp()),
                        (o.base_offset(), o.last_offset_delta(), o.base_timestamp())
                    );
                    assert_eq!(
                        (h.max_timestamp(), h.producer_id()),
                        (o.max_timestamp(), o.producer_id())
                    );
                    let size = h.total_size().unwrap();
                    let osize = o.total_size().unwrap();
                    let (_, new) = decompress(
                        h.compression_type(),
                        &out[pos + RECORD_BATCH_OVERHEAD..pos + size],
                        1 << 20,
                    )
                    .unwrap();
                    let (_, old) = decompress(
                        o.compression_type(),
                        &input[original_pos + RECORD_BATCH_OVERHEAD..original_pos + osize],
                        1 << 20,
                    )
                    .unwrap();
                    assert_eq!(new, old);
                    assert_eq!(
                        parse_records(&new, h.record_count()).unwrap().len(),
                        h.record_count() as usize
                    );
                    pos += size;
                    original_pos += osize;
                }
            }
        }
    }

    #[test]
    fn a_recompressed_batch_over_max_message_bytes_is_refused() {
        let value = vec![7u8; 4096];
        let b = keyed_batch(0, &[(Some(b"k"), Some(&value))], 0, Codec::Zstd);
        let config = LogConfig {
            compression_type: CompressionType::Uncompressed,
            max_message_bytes: 1024,
            ..LogConfig::default()
        };
        assert!(matches!(
            recompress(&b, &config),
            Err(LogError::MessageTooLarge { .. })
        ));
    }
}
