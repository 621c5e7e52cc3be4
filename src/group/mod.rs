//! Consumer groups: the classic group coordinator and committed offsets, stored in `__consumer_offsets`.
//! The offsets and stored group metadata live in [`shard::GroupShard`]s, one per partition, kept by the
//! coordinator runtime ([`crate::coordinator`]); [`OffsetStore`] is the coordinator's handle on them.
//!
//! The layer below the api: it calls into `coordinator`, `log` and `cluster`, never the other way round.

pub mod coordinator;
pub mod offset_store;
pub mod records;
pub mod shard;

pub use offset_store::{
    GroupActivity, GroupStoreError, OffsetStore, WriteWait, upgrade_offsets_topic_config,
};

use bytes::Bytes;

/// The internal topic that holds committed offsets and group metadata, as in Kafka.
pub use crate::cluster::OFFSETS_TOPIC;

/// Group settings, under Kafka's broker property names.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: its replicas when a cluster creates it (as in Kafka, creation
    /// fails until that many brokers are live); a single node keeps one.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes`: how long offsets of an empty group (or of a simple consumer) are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`: the session timeouts a member may ask for.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members per group.
    pub max_size: usize,
    /// `offset.metadata.max.bytes`: the longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.commit.timeout.ms`: how long a write to `__consumer_offsets` waits for its replicas before
    /// the request fails with COORDINATOR_NOT_AVAILABLE.
    pub offsets_commit_timeout_ms: u64,
}

impl GroupConfig {
    /// [`GroupConfig::offsets_commit_timeout_ms`] as a duration.
    pub fn commit_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.offsets_commit_timeout_ms.max(1))
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_commit_timeout_ms: 5_000,
        }
    }
}

/// A committed offset, as OffsetCommit stores it and OffsetFetch returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member of a group as `__consumer_offsets` stores it (Kafka's GroupMetadataValue member schema).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's state as `__consumer_offsets` stores it after each completed rebalance (GroupMetadataValue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}
