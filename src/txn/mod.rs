//! The transaction coordinator (KIP-98, TV1): transactional ids, their producer ids and epochs, and the
//! state of their transactions, kept in `__transaction_state` through the coordinator runtime
//! ([`crate::coordinator`]), one [`shard::TxnShard`] per partition. [`TransactionCoordinator`] answers
//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and the admin listings, writes the
//! transaction markers, and aborts timed-out transactions.
//!
//! The layer below the api: it calls into `coordinator`, `replica` and `cluster`.

pub mod coordinator;
pub mod metadata;
pub mod records;
pub mod shard;

pub use coordinator::{OffsetsMarkerWriter, ProducerIdSource, TransactionCoordinator};
pub use metadata::{TransactionMetadata, TransactionState};

/// The internal topic of transaction state, as in Kafka.
pub use crate::cluster::TRANSACTION_STATE_TOPIC;

/// How long a `__transaction_state` write waits to be committed before the request fails with
/// COORDINATOR_NOT_AVAILABLE: Kafka's transaction state manager waits `request.timeout.ms`, 30 s by default.
pub const STATE_LOG_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Transaction coordinator settings, under Kafka's broker property names.
#[derive(Clone, Debug)]
pub struct TransactionConfig {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`: replicas of `__transaction_state` (a single node keeps
    /// one).
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr`: `min.insync.replicas` of `__transaction_state` (capped at its
    /// replication factor).
    pub state_log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`: the segment size of `__transaction_state`.
    pub state_log_segment_bytes: u64,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long an idle transactional id is kept.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out transactions
    /// are looked for.
    pub abort_timed_out_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often expired ids are looked for.
    pub remove_expired_interval_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            state_log_num_partitions: 50,
            state_log_replication_factor: 3,
            state_log_segment_bytes: 100 * 1024 * 1024,
            state_log_min_isr: 2,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn transaction_settings_are_read_under_kafkas_names() {
        let mut config = Config::new();
        assert_eq!(config.txn.state_log_num_partitions, 50);
        assert_eq!(config.txn.max_timeout_ms, 900_000);
        for (key, value) in [
            ("transaction.state.log.num.partitions", "7"),
            ("transaction.state.log.replication.factor", "3"),
            ("transaction.state.log.segment.bytes", "1048576"),
            ("transaction.max.timeout.ms", "60000"),
            ("transactional.id.expiration.ms", "1000"),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                "500",
            ),
            (
                "transaction.remove.expired.transaction.cleanup.interval.ms",
                "700",
            ),
        ] {
            config.set(key, value).unwrap();
        }
        let t = &config.txn;
        assert_eq!(
            (
                t.state_log_num_partitions,
                t.state_log_replication_factor,
                t.state_log_segment_bytes
            ),
            (7, 3, 1_048_576)
        );
        assert_eq!((t.max_timeout_ms, t.id_expiration_ms), (60_000, 1_000));
        assert_eq!(
            (t.abort_timed_out_interval_ms, t.remove_expired_interval_ms),
            (500, 700)
        );
        assert!(
            config
                .set("transaction.state.log.num.partitions", "0")
                .is_err()
        );
        assert!(config.set("transaction.max.timeout.ms", "-1").is_err());
    }
}
