//! [`TxnShard`]: the transactional ids of one `__transaction_state` partition, each at the latest record the
//! log holds for it (a tombstone removes it), rebuilt by replaying the partition.

use std::collections::HashMap;

use crate::coordinator::{CoordinatorRecord, CoordinatorShard};

use super::metadata::TransactionMetadata;
use super::records::{self, TxnLogRecord};

/// The transactional ids of one partition of `__transaction_state`, as its log says.
#[derive(Debug, Default)]
pub struct TxnShard {
    txns: HashMap<String, TransactionMetadata>,
    /// The transactional id holding each producer id, for the produce path's verification.
    by_producer_id: HashMap<i64, String>,
}

impl TxnShard {
    pub fn get(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.txns.get(transactional_id)
    }

    /// The metadata of the transactional id that holds `producer_id`.
    pub fn by_producer_id(&self, producer_id: i64) -> Option<&TransactionMetadata> {
        self.txns.get(self.by_producer_id.get(&producer_id)?)
    }

    fn insert(&mut self, m: TransactionMetadata) {
        if let Some(old) = self.txns.get(&m.transactional_id)
            && old.producer_id != m.producer_id
            && self.by_producer_id.get(&old.producer_id) == Some(&m.transactional_id)
        {
            self.by_producer_id.remove(&old.producer_id);
        }
        self.by_producer_id
            .insert(m.producer_id, m.transactional_id.clone());
        self.txns.insert(m.transactional_id.clone(), m);
    }

    fn remove(&mut self, transactional_id: &str) {
        if let Some(old) = self.txns.remove(transactional_id)
            && self
                .by_producer_id
                .get(&old.producer_id)
                .map(String::as_str)
                == Some(transactional_id)
        {
            self.by_producer_id.remove(&old.producer_id);
        }
    }

    pub fn transactions(&self) -> impl Iterator<Item = &TransactionMetadata> {
        self.txns.values()
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }
}

impl CoordinatorShard for TxnShard {
    fn replay(&mut self, offset: i64, _producer_id: i64, record: &CoordinatorRecord) {
        match records::read(&record.key, record.value.as_deref()) {
            Ok(TxnLogRecord::Txn(id, value)) => match value.to_metadata(&id) {
                Ok(m) => self.insert(m),
                Err(e) => tracing::warn!(offset, id, error = %e, "skipping transaction log record"),
            },
            Ok(TxnLogRecord::Tombstone(id)) => self.remove(&id),
            Ok(TxnLogRecord::UnknownKeyVersion(v)) => {
                tracing::debug!(
                    offset,
                    version = v,
                    "ignoring transaction log key of a newer version"
                )
            }
            Ok(TxnLogRecord::UnknownValueVersion(id, v)) => {
                tracing::warn!(
                    offset,
                    id,
                    version = v,
                    "ignoring transaction log value of an unknown version"
                )
            }
            Err(e) => {
                tracing::warn!(offset, error = %e, "skipping undecodable transaction log record")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::log::TopicPartition;
    use crate::txn::metadata::TransactionState;
    use crate::txn::records::{TransactionLogValue, encode_key, encode_value};

    fn record(m: &TransactionMetadata, version: i16) -> CoordinatorRecord {
        CoordinatorRecord {
            key: encode_key(&m.transactional_id).unwrap(),
            value: Some(encode_value(&TransactionLogValue::of(m), version).unwrap()),
        }
    }

    #[test]
    fn replay_keeps_the_latest_record_per_id_and_tombstones_remove() {
        let mut shard = TxnShard::default();
        let mut a = TransactionMetadata::new("a", 1, 10_000, 5);
        a.producer_epoch = 0;
        shard.replay(0, -1, &record(&a, 0));
        let b = TransactionMetadata::new("b", 2, 10_000, 5);
        shard.replay(1, -1, &record(&b, 1));
        a.state = TransactionState::Ongoing;
        a.partitions = BTreeSet::from([TopicPartition::new("t", 0), TopicPartition::new("u", 3)]);
        a.start_ms = 6;
        a.last_update_ms = 6;
        shard.replay(2, -1, &record(&a, 0));
        assert_eq!(shard.len(), 2);
        assert_eq!(shard.get("a"), Some(&a));
        assert_eq!(shard.get("b").unwrap().producer_id, 2);
        assert_eq!(shard.by_producer_id(1).unwrap().transactional_id, "a");
        // A rotated producer id moves the index.
        let mut b2 = b.clone();
        b2.producer_id = 3;
        shard.replay(3, -1, &record(&b2, 0));
        assert!(shard.by_producer_id(2).is_none());
        assert_eq!(shard.by_producer_id(3).unwrap().transactional_id, "b");
        // A damaged record and an unknown value version are skipped; the state stays.
        shard.replay(
            3,
            -1,
            &CoordinatorRecord {
                key: vec![0, 0, 0, 1, b'a'],
                value: Some(vec![0, 0, 1]),
            },
        );
        shard.replay(
            4,
            -1,
            &CoordinatorRecord {
                key: vec![0, 0, 0, 1, b'a'],
                value: Some(vec![0, 9]),
            },
        );
        assert_eq!(shard.get("a"), Some(&a));
        shard.replay(
            6,
            -1,
            &CoordinatorRecord {
                key: encode_key("a").unwrap(),
                value: None,
            },
        );
        assert!(shard.get("a").is_none());
        assert!(shard.by_producer_id(1).is_none());
        assert_eq!(shard.len(), 1);
    }
}
