//! The coordinator runtime (Kafka's `CoordinatorRuntime`, KIP-848's design): the state of a coordinator
//! (groups, later transactions) is sharded by the partitions of an internal topic; each shard is rebuilt
//! from its partition's log when this broker becomes its leader and changes only by replaying records the
//! runtime appended to that log, so the log is the one source of truth.

pub mod runtime;
pub mod shard;

pub use runtime::{CommitWait, CoordinatorError, CoordinatorRuntime, ProducerBatch, ShardState};
pub use shard::{CoordinatorRecord, CoordinatorShard};
