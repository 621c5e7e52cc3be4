//! The replica fetcher's settings (`num.replica.fetchers`, `replica.fetch.*`), with Kafka 4.1's defaults.
//! Defined here, read by the configuration (as the group and transaction settings are), so that the
//! partition layer does not depend on the configuration module.

use std::time::Duration;

/// How followers fetch from their leaders (see `replica::fetcher`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFetchConfig {
    /// `num.replica.fetchers`: fetchers (one request in flight each) per source broker.
    pub num_replica_fetchers: usize,
    /// `replica.fetch.max.bytes`: per partition in one fetch (a larger first batch still comes whole).
    pub fetch_max_bytes: i32,
    /// `replica.fetch.min.bytes`: the leader answers once it has this much (or the wait is over).
    pub fetch_min_bytes: i32,
    /// `replica.fetch.wait.max.ms`: the longest the leader holds a fetch waiting for data.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.response.max.bytes`: a whole fetch response at most.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause of a partition after a failed fetch.
    pub fetch_backoff_ms: u64,
}

impl Default for ReplicaFetchConfig {
    fn default() -> Self {
        ReplicaFetchConfig {
            num_replica_fetchers: 1,
            fetch_max_bytes: 1024 * 1024,
            fetch_min_bytes: 1,
            fetch_wait_max_ms: 500,
            fetch_response_max_bytes: 10 * 1024 * 1024,
            fetch_backoff_ms: 1000,
        }
    }
}

impl ReplicaFetchConfig {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.fetch_wait_max_ms).unwrap_or(0))
    }
    pub fn backoff(&self) -> Duration {
        Duration::from_millis(self.fetch_backoff_ms)
    }
}
