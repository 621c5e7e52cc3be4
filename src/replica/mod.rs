//! The partition layer between the API handlers and the logs (Kafka's `ReplicaManager` and `Partition`):
//! which partitions this broker holds, in which role and leader epoch, and the rules (high watermark, last
//! stable offset, isolation) that turn a log into a partition clients read and write; and, for the
//! partitions other brokers lead, the replica fetcher that keeps this broker's replicas in step.

pub mod fetch_config;
pub mod fetcher;
pub mod follower;
pub mod isr;
pub mod manager;
pub mod partition;
pub mod stats;

pub use fetch_config::ReplicaFetchConfig;
pub use fetcher::{FetcherConfig, FetcherStats, ReplicaFetcherManager};
pub use follower::FollowerError;
pub use isr::{FollowerFetch, IsrProposal};
pub use manager::{LogDefaults, ReplicaManager};
pub use partition::{FetchIsolation, HighWatermarkWaitError, Partition};
pub use stats::{FollowerLag, IsrChangeCounts, ReplicaHealth};
