//! The storage engine: Kafka's segmented log, in Kafka's vocabulary and Kafka's on-disk format.
//!
//! A [`LogManager`] owns one data directory and the [`PartitionLog`]s in it. A partition log is an ordered
//! list of [`LogSegment`]s (`<base offset>.log` + `.index` + `.timeindex`); batches are stored exactly as the
//! producer sent them, with only `baseOffset` and `partitionLeaderEpoch` rewritten in place. This module knows
//! nothing of the wire protocol beyond the v2 RecordBatch format.

pub mod checkpoint;
pub mod error;
pub mod index;
pub mod manager;
pub mod partition_log;
pub mod record_batch;
pub mod segment;

use std::fmt;

pub use error::LogError;
pub use index::{OffsetIndex, TimeIndex};
pub use manager::LogManager;
pub use partition_log::{AppendInfo, FetchData, PartitionLog};
pub use record_batch::{
    BatchesSummary, RECORD_BATCH_OVERHEAD, RecordBatchHeader, validate_batches,
};
pub use segment::LogSegment;

/// A partition of a topic: the unit of ordering and of storage (one directory `<topic>-<partition>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    /// Kafka's `topic-partition` form, which is also the partition's directory name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Per-partition storage settings; field names follow the Kafka broker properties they come from.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `log.segment.bytes`: roll to a new segment before the active one would exceed this size.
    pub segment_bytes: u64,
    /// `log.roll.ms`: roll when the active segment's first batch was appended this long ago.
    pub segment_ms: u64,
    /// `log.index.interval.bytes`: bytes of batches between two offset index entries.
    pub index_interval_bytes: u32,
    /// `log.index.size.max.bytes`: preallocated size of each index file; a full index rolls the segment.
    pub max_index_bytes: u32,
    /// `log.flush.interval.messages`: fsync once this many messages are unflushed; 1 makes the log durable
    /// (the high watermark then follows the fsynced offset).
    pub flush_interval_messages: u64,
    /// `log.flush.interval.ms`: fsync when the last flush is this old and messages are unflushed.
    pub flush_interval_ms: Option<u64>,
    /// `message.max.bytes`: largest accepted batch, header included.
    pub max_message_bytes: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            index_interval_bytes: 4096,
            max_index_bytes: 10_485_760,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: None,
            max_message_bytes: 1_048_588,
        }
    }
}

impl LogConfig {
    /// Durable mode: every append is fsynced before the high watermark covers it.
    pub fn is_durable(&self) -> bool {
        self.flush_interval_messages == 1
    }
}

/// Lock helpers that shrug off poisoning: a panic elsewhere while holding one of the log's short locks
/// leaves plain data (counters, index handles) that is still consistent enough to use or rebuild.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn rlock<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn wlock<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
