//! The partition layer between the API handlers and the logs (Kafka's `ReplicaManager` and `Partition`):
//! which partitions this broker holds, in which role and leader epoch, and the rules (high watermark, last
//! stable offset, isolation) that turn a log into a partition clients read and write.

pub mod isr;
pub mod manager;
pub mod partition;

pub use isr::{FollowerFetch, IsrProposal};
pub use manager::{LogDefaults, ReplicaManager};
pub use partition::{FetchIsolation, HighWatermarkWaitError, Partition};
