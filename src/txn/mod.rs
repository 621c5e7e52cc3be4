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

/// Transaction coordinator settings, under Kafka's broker property names.
#[derive(Clone, Debug)]
pub struct TransactionConfig {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`: accepted; one node keeps one replica.
    pub state_log_replication_factor: i16,
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
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
        }
    }
}
