//! The storage engine: Kafka's segmented log, in Kafka's vocabulary and Kafka's on-disk format.
//!
//! A [`LogManager`] owns one data directory and the [`PartitionLog`]s in it. A partition log is an ordered
//! list of [`LogSegment`]s (`<base offset>.log` + `.index` + `.timeindex`, and a `.txnindex` once an
//! aborted transaction ends in it); batches are stored exactly as the producer sent them, with only
//! `baseOffset` and `partitionLeaderEpoch` rewritten in place, unless a topic config asks for more
//! (LogAppendTime, a `compression.type` codec: see [`validator`]). This module knows nothing of the wire
//! protocol beyond the v2 RecordBatch format.

#[doc(hidden)]
pub mod audit;
pub mod batch_builder;
pub mod checkpoint;
pub mod cleaned_txn_metadata;
pub mod cleaner;
pub mod error;
pub mod index;
pub mod manager;
pub mod partition_log;
pub mod partition_metadata;
pub mod producer_state;
pub mod read_buffer;
pub mod record_batch;
pub mod records;
pub mod retention;
pub mod segment;
pub mod txn_index;
pub mod validator;
pub mod varint;

use std::fmt;

pub use error::LogError;
pub use index::{OffsetIndex, TimeIndex};
pub use manager::LogManager;
pub use partition_log::{
    AppendInfo, AppendOrigin, FetchData, FlushListener, PartitionLog, VerificationGuard,
};
pub use record_batch::{
    BatchesSummary, RECORD_BATCH_OVERHEAD, RecordBatchHeader, validate_batches,
};
pub use segment::LogSegment;
pub use txn_index::{AbortedTxn, TransactionIndex};

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
    /// `log.cleanup.policy`: delete old segments (retention), compact by key (the log cleaner), or both.
    pub cleanup_policy: CleanupPolicy,
    /// `log.retention.ms` (or `.minutes`, `.hours`): a closed segment whose newest record is older than this
    /// is deleted; -1 keeps segments forever.
    pub retention_ms: i64,
    /// `log.retention.bytes`: closed segments are deleted, oldest first, while the partition is larger than
    /// this; -1 means no size limit.
    pub retention_bytes: i64,
    /// `log.message.timestamp.type`: keep the producer's timestamps or stamp batches at append.
    pub timestamp_type: TimestampType,
    /// `log.message.timestamp.before.max.ms`: CreateTime timestamps further in the past are refused.
    pub timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms`: CreateTime timestamps further in the future are refused.
    pub timestamp_after_max_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms`: a record is eligible for compaction after this long whatever the
    /// dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `log.cleaner.delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// `log.cleaner.min.cleanable.ratio`: clean once this share of the log is dirty.
    pub min_cleanable_dirty_ratio: f64,
    /// `compression.type`: `producer` stores batches as sent (the zero-decode path); any other value makes
    /// the validator re-encode batches of another codec with this one at append.
    pub compression_type: CompressionType,
    /// `compression.gzip.level` (KIP-390): -1 is gzip's default, else 1..=9.
    pub compression_gzip_level: i32,
    /// `compression.lz4.level` (KIP-390): 1..=17.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level` (KIP-390): -131072..=22.
    pub compression_zstd_level: i32,
    /// `log.segment.delete.delay.ms`: deleted segments are renamed `.deleted` and removed this much later, so
    /// a reader that already holds them finishes first.
    pub file_delete_delay_ms: i64,
    /// `producer.id.expiration.ms` (broker-wide): a producer without an open transaction is forgotten this
    /// long after its last batch's timestamp; its next batch is then accepted at any sequence.
    pub producer_id_expiration_ms: i64,
    /// `min.insync.replicas`: in-sync replicas an acks=all write needs (capped at the replication factor,
    /// Kafka's effective min ISR); below it the high watermark does not move.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`: the controller may elect an out-of-sync replica when no in-sync one
    /// is alive. Read by the controller only (from the topic's config, else the cluster default, else the
    /// quorum leader's `server.properties`); a partition's log carries it so DescribeConfigs can show it.
    pub unclean_leader_election_enable: bool,
}

/// Kafka's `cleanup.policy`: a list of `delete` and/or `compact`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Parses Kafka's list form (`delete`, `compact`, `compact,delete`); None when a word is unknown or the
    /// list is empty.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for word in value.split(',').map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        (policy.delete || policy.compact).then_some(policy)
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

/// Kafka's `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    pub fn parse(value: &str) -> Option<TimestampType> {
        match value.trim() {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        })
    }
}

/// Kafka's `compression.type` of a topic (or of the broker, as the default of topics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionType {
    /// Keep each batch's codec, as the producer chose it.
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Kafka's `compression.gzip.level` default: gzip's own default.
pub const GZIP_DEFAULT_LEVEL: i32 = -1;
/// Kafka's `compression.lz4.level` default.
pub const LZ4_DEFAULT_LEVEL: i32 = 9;

impl CompressionType {
    pub fn parse(value: &str) -> Option<CompressionType> {
        Some(match value.trim() {
            "producer" => CompressionType::Producer,
            "uncompressed" => CompressionType::Uncompressed,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => return None,
        })
    }

    /// The codec batches are stored with, or None when the producer's is kept. Snappy is written in
    /// xerial framing, as Kafka's broker (snappy-java) writes it; every client reads that.
    pub fn target(self) -> Option<records::Codec> {
        use records::Codec;
        Some(match self {
            CompressionType::Producer => return None,
            CompressionType::Uncompressed => Codec::None,
            CompressionType::Gzip => Codec::Gzip,
            CompressionType::Snappy => Codec::Snappy { xerial: true },
            CompressionType::Lz4 => Codec::Lz4,
            CompressionType::Zstd => Codec::Zstd,
        })
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        })
    }
}

/// KIP-390's valid range of a `compression.*.level` key (gzip also takes -1, its default), or None for
/// another key.
pub fn compression_level_range(key: &str) -> Option<(i64, i64)> {
    match key.strip_prefix("log.").unwrap_or(key) {
        "compression.gzip.level" => Some((1, 9)),
        "compression.lz4.level" => Some((1, 17)),
        "compression.zstd.level" => Some((-131_072, 22)),
        _ => None,
    }
}

/// Checks a `compression.*.level` value against [`compression_level_range`], with Kafka's wording.
pub fn check_compression_level(key: &str, level: i64) -> Result<i32, String> {
    let (min, max) =
        compression_level_range(key).ok_or_else(|| format!("{key} is not a compression level"))?;
    let gzip = key.ends_with("gzip.level");
    if (min..=max).contains(&level) || (gzip && level == i64::from(GZIP_DEFAULT_LEVEL)) {
        return Ok(level as i32);
    }
    let or_default = if gzip { " or -1" } else { "" };
    Err(format!(
        "Invalid value {level} for configuration {key}: Value must be between {min} and {max}{or_default}"
    ))
}

/// Broker-wide settings of the background log work (retention checks, the log cleaner), not per topic.
#[derive(Clone, Debug)]
pub struct CleanerConfig {
    /// `log.retention.check.interval.ms`: how often retention looks for deletable segments.
    pub retention_check_interval_ms: u64,
    /// `log.cleaner.enable`: run the log cleaner for compacted topics.
    pub enable: bool,
    /// `log.cleaner.backoff.ms`: sleep between cleaner passes when nothing is cleanable.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory bound of the cleaner's key map.
    pub dedupe_buffer_size: u64,
    /// `producer.id.expiration.check.interval.ms`: how often expired producers are removed.
    pub producer_id_expiration_check_interval_ms: u64,
    /// Not a Kafka property: set by an embedding test to stop the cleaner at its commit point (see
    /// [`BeforeSwapHook`]). None in production.
    pub before_swap: Option<BeforeSwapHook>,
}

/// What the cleaner does once a [`BeforeSwapHook`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapDecision {
    /// Swap the cleaned segment in, as without a hook.
    Proceed,
    /// Stop there, as a process killed at that point would: the cleaned files stay in `.swap` for the next
    /// load to complete, and this pass fails.
    Halt,
}

/// Called by the cleaner after a cleaned segment reached its `.swap` files (the commit point of a clean)
/// and before it is swapped into the log, so crash tests can stop it exactly there.
#[derive(Clone)]
pub struct BeforeSwapHook(
    pub std::sync::Arc<dyn Fn(&TopicPartition) -> SwapDecision + Send + Sync>,
);

impl std::fmt::Debug for BeforeSwapHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeSwapHook")
    }
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            retention_check_interval_ms: 300_000,
            enable: true,
            backoff_ms: 15_000,
            dedupe_buffer_size: 134_217_728,
            producer_id_expiration_check_interval_ms: 600_000,
            before_swap: None,
        }
    }
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
            cleanup_policy: CleanupPolicy::DELETE,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            file_delete_delay_ms: 60_000,
            producer_id_expiration_ms: 86_400_000,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            compression_type: CompressionType::Producer,
            compression_gzip_level: GZIP_DEFAULT_LEVEL,
            compression_lz4_level: LZ4_DEFAULT_LEVEL,
            compression_zstd_level: records::ZSTD_DEFAULT_LEVEL,
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
