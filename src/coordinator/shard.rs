//! What a coordinator keeps per partition of its internal topic.

/// One record of an internal topic: a key and a value, None for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The state of one partition of a coordinator's internal topic. It changes only through [`Self::replay`],
/// both when the partition is loaded and after each write the runtime appended, so what the shard holds is
/// always what the log says.
pub trait CoordinatorShard: Send + 'static {
    /// Applies one record at `offset`. A record the shard cannot understand is its to log and skip: a
    /// damaged or newer record must not stop a load.
    fn replay(&mut self, offset: i64, producer_id: i64, record: &CoordinatorRecord);

    /// Applies a transaction's end marker for `producer_id` (transactional offset commits, later).
    fn replay_end_transaction(&mut self, _offset: i64, _producer_id: i64, _commit: bool) {}
}
