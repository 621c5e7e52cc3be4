//! [`GroupShard`]: the committed offsets and stored group metadata of one `__consumer_offsets` partition,
//! rebuilt by replaying Kafka's offset-commit and group-metadata records (a null value is a tombstone).
//!
//! Offsets committed inside a transaction (TxnOffsetCommit, a transactional batch) are staged per producer
//! and invisible until that producer's COMMIT marker, as Kafka's `OffsetMetadataManager` keeps them: the
//! marker materialises each staged offset only over an older committed one (by log offset), an ABORT marker
//! drops them. Load replays batches and markers the same way, so an open transaction stays open across a
//! restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::coordinator::{CoordinatorRecord, CoordinatorShard};
use crate::log::TopicPartition;

use super::records::{
    GroupRecordKey, RecordError, decode_group_metadata_value, decode_key,
    decode_offset_commit_value,
};
use super::{OffsetAndMetadata, StoredGroup};

/// An offset with the log offset of the record that committed it, so that the latest of a transactional
/// and a plain commit wins whichever is materialised last.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Committed {
    value: OffsetAndMetadata,
    record_offset: i64,
}

type GroupOffsets = HashMap<String, BTreeMap<TopicPartition, Committed>>;

/// The groups of one partition of `__consumer_offsets`, as its log says.
#[derive(Debug)]
pub struct GroupShard {
    offsets: GroupOffsets,
    groups: HashMap<String, StoredGroup>,
    /// Offsets staged by each producer's open transaction (Kafka's `pendingTransactionalOffsets`). A
    /// producer stays here, even with nothing left staged, until its end marker.
    pending: HashMap<i64, GroupOffsets>,
    /// The producers with offsets staged for each group (Kafka's `openTransactionsByGroup`).
    open_by_group: HashMap<String, BTreeSet<i64>>,
    /// The log offset of the last end-transaction marker replayed, -1 before any: a write verified against
    /// the transaction coordinator before a later marker may belong to a transaction that has ended.
    last_marker_offset: i64,
}

impl Default for GroupShard {
    fn default() -> Self {
        GroupShard {
            offsets: HashMap::new(),
            groups: HashMap::new(),
            pending: HashMap::new(),
            open_by_group: HashMap::new(),
            last_marker_offset: -1,
        }
    }
}

impl GroupShard {
    /// The committed (never a pending transactional) offset.
    pub fn offset(&self, group: &str, tp: &TopicPartition) -> Option<&OffsetAndMetadata> {
        self.offsets.get(group)?.get(tp).map(|c| &c.value)
    }

    /// The group's committed offsets, sorted by partition (none when the group has none).
    pub fn offsets(
        &self,
        group: &str,
    ) -> impl Iterator<Item = (&TopicPartition, &OffsetAndMetadata)> {
        self.offsets
            .get(group)
            .into_iter()
            .flat_map(|m| m.iter().map(|(tp, c)| (tp, &c.value)))
    }

    /// Whether an open transaction has staged an offset of this group for `tp`.
    pub fn has_pending_offset(&self, group: &str, tp: &TopicPartition) -> bool {
        self.open_by_group.get(group).is_some_and(|pids| {
            pids.iter().any(|pid| {
                self.pending
                    .get(pid)
                    .and_then(|staged| staged.get(group))
                    .is_some_and(|m| m.contains_key(tp))
            })
        })
    }

    /// The partitions of the group with an offset staged by an open transaction, sorted.
    pub fn pending_partitions(&self, group: &str) -> BTreeSet<&TopicPartition> {
        self.open_by_group
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|pid| self.pending.get(pid)?.get(group))
            .flat_map(|m| m.keys())
            .collect()
    }

    /// The offset `producer_id`'s open transaction staged for the group's `tp`.
    pub fn pending_offset(
        &self,
        producer_id: i64,
        group: &str,
        tp: &TopicPartition,
    ) -> Option<&OffsetAndMetadata> {
        self.pending
            .get(&producer_id)?
            .get(group)?
            .get(tp)
            .map(|c| &c.value)
    }

    /// Whether `producer_id` has a transaction open in this partition (records written, no marker yet).
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.pending.contains_key(&producer_id)
    }

    /// The log offset of the last end-transaction marker replayed, -1 before any.
    pub fn last_marker_offset(&self) -> i64 {
        self.last_marker_offset
    }

    /// Groups with at least one committed offset or one staged by an open transaction (Kafka keeps such
    /// a group as a simple group, and never expires it while a transaction is open).
    pub fn groups_with_offsets(&self) -> impl Iterator<Item = &String> {
        self.offsets.keys().chain(
            self.open_by_group
                .keys()
                .filter(|g| !self.offsets.contains_key(*g)),
        )
    }

    /// Groups whose metadata is stored.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &StoredGroup)> {
        self.groups.iter()
    }

    /// Applies one record at `offset`: later records win, a null value removes (a tombstone also removes
    /// the offsets open transactions staged for the partition, as Kafka's). A commit from a producer's batch
    /// is staged for that producer's transaction.
    fn apply(
        &mut self,
        offset: i64,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        match decode_key(key)? {
            GroupRecordKey::OffsetCommit { group, tp } => match value {
                Some(v) => {
                    let committed = Committed {
                        value: decode_offset_commit_value(v)?,
                        record_offset: offset,
                    };
                    if producer_id < 0 {
                        self.offsets.entry(group).or_default().insert(tp, committed);
                    } else {
                        self.open_by_group
                            .entry(group.clone())
                            .or_default()
                            .insert(producer_id);
                        self.pending
                            .entry(producer_id)
                            .or_default()
                            .entry(group)
                            .or_default()
                            .insert(tp, committed);
                    }
                }
                None => self.remove_offset(&group, &tp),
            },
            GroupRecordKey::GroupMetadata { group } => match value {
                Some(v) => {
                    let g = decode_group_metadata_value(v)?;
                    self.groups.insert(group, g);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
            GroupRecordKey::Other { version } => {
                tracing::debug!(version, "ignoring group record of a newer coordinator");
            }
        }
        Ok(())
    }

    /// A tombstone: the committed offset and every staged one of the partition go.
    fn remove_offset(&mut self, group: &str, tp: &TopicPartition) {
        if let Some(map) = self.offsets.get_mut(group) {
            map.remove(tp);
            if map.is_empty() {
                self.offsets.remove(group);
            }
        }
        let Some(pids) = self.open_by_group.get_mut(group) else {
            return;
        };
        pids.retain(|pid| {
            let Some(staged) = self.pending.get_mut(pid) else {
                return false;
            };
            let Some(map) = staged.get_mut(group) else {
                return false;
            };
            map.remove(tp);
            if map.is_empty() {
                staged.remove(group);
                return false;
            }
            true
        });
        if pids.is_empty() {
            self.open_by_group.remove(group);
        }
    }
}

impl CoordinatorShard for GroupShard {
    fn replay(&mut self, offset: i64, producer_id: i64, record: &CoordinatorRecord) {
        if let Err(e) = self.apply(offset, producer_id, &record.key, record.value.as_deref()) {
            tracing::warn!(offset, error = %e, "skipping undecodable group record");
        }
    }

    /// Kafka's `replayEndTransactionMarker`: COMMIT materialises each offset the producer staged unless a
    /// later record (by log offset) already committed that partition; ABORT drops them.
    fn replay_end_transaction(&mut self, offset: i64, producer_id: i64, commit: bool) {
        self.last_marker_offset = self.last_marker_offset.max(offset);
        let Some(staged) = self.pending.remove(&producer_id) else {
            return;
        };
        for (group, partitions) in staged {
            if let Some(pids) = self.open_by_group.get_mut(&group) {
                pids.remove(&producer_id);
                if pids.is_empty() {
                    self.open_by_group.remove(&group);
                }
            }
            if !commit {
                continue;
            }
            for (tp, c) in partitions {
                let existing = self.offsets.get(&group).and_then(|m| m.get(&tp));
                if existing.is_some_and(|e| e.record_offset >= c.record_offset) {
                    tracing::debug!(producer_id, partition = %tp,
                        "a later commit of the partition wins over the transaction's");
                    continue;
                }
                self.offsets.entry(group.clone()).or_default().insert(tp, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::{
        encode_group_metadata_key, encode_group_metadata_value, encode_offset_commit_key,
        encode_offset_commit_value,
    };

    fn record(key: bytes::Bytes, value: Option<bytes::Bytes>) -> CoordinatorRecord {
        CoordinatorRecord {
            key: key.to_vec(),
            value: value.map(|v| v.to_vec()),
        }
    }

    fn om(offset: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
        }
    }

    #[test]
    fn replays_commits_metadata_and_tombstones() {
        let mut shard = GroupShard::default();
        let tp = TopicPartition::new("t", 0);
        let key = encode_offset_commit_key("g", &tp).unwrap();
        shard.replay(
            0,
            -1,
            &record(
                key.clone(),
                Some(encode_offset_commit_value(&om(5)).unwrap()),
            ),
        );
        shard.replay(
            1,
            -1,
            &record(
                key.clone(),
                Some(encode_offset_commit_value(&om(9)).unwrap()),
            ),
        );
        assert_eq!(shard.offset("g", &tp), Some(&om(9)));
        let stored = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            current_state_timestamp_ms: -1,
            members: vec![],
        };
        let gkey = encode_group_metadata_key("g").unwrap();
        shard.replay(
            2,
            -1,
            &record(
                gkey.clone(),
                Some(encode_group_metadata_value(&stored).unwrap()),
            ),
        );
        assert_eq!(shard.groups().count(), 1);
        shard.replay(3, -1, &record(key, None));
        shard.replay(4, -1, &record(gkey, None));
        assert_eq!(shard.offsets("g").count(), 0);
        assert_eq!(shard.groups_with_offsets().count(), 0);
        assert_eq!(shard.groups().count(), 0);
        // Undecodable records and newer record types are skipped, not fatal.
        shard.replay(
            5,
            -1,
            &CoordinatorRecord {
                key: vec![0xff],
                value: None,
            },
        );
        shard.replay(
            6,
            -1,
            &CoordinatorRecord {
                key: vec![0, 9, 1],
                value: Some(vec![1]),
            },
        );
        assert_eq!(shard.groups().count(), 0);
    }

    fn commit_record(group: &str, tp: &TopicPartition, offset: i64) -> CoordinatorRecord {
        record(
            encode_offset_commit_key(group, tp).unwrap(),
            Some(encode_offset_commit_value(&om(offset)).unwrap()),
        )
    }

    fn tombstone(group: &str, tp: &TopicPartition) -> CoordinatorRecord {
        record(encode_offset_commit_key(group, tp).unwrap(), None)
    }

    #[test]
    fn transactional_offsets_are_pending_until_the_commit_marker() {
        let mut shard = GroupShard::default();
        let tp = TopicPartition::new("t", 0);
        shard.replay(0, -1, &commit_record("g", &tp, 5));
        // Records of producer 7's batch are staged, not committed.
        shard.replay(1, 7, &commit_record("g", &tp, 10));
        shard.replay(2, 7, &commit_record("g", &TopicPartition::new("t", 1), 11));
        assert_eq!(shard.offset("g", &tp), Some(&om(5)));
        assert!(shard.has_pending_offset("g", &tp));
        assert!(!shard.has_pending_offset("other", &tp));
        assert_eq!(shard.pending_offset(7, "g", &tp), Some(&om(10)));
        assert_eq!(shard.pending_partitions("g").len(), 2);
        assert!(shard.has_open_transaction(7));
        // A retried commit in the same transaction: the last value wins.
        shard.replay(3, 7, &commit_record("g", &tp, 12));
        assert_eq!(shard.pending_offset(7, "g", &tp), Some(&om(12)));
        // Another producer's marker leaves producer 7's transaction open.
        shard.replay_end_transaction(4, 8, true);
        assert!(shard.has_pending_offset("g", &tp));
        assert_eq!(shard.last_marker_offset(), 4);
        shard.replay_end_transaction(5, 7, true);
        assert_eq!(shard.offset("g", &tp), Some(&om(12)));
        assert_eq!(
            shard.offset("g", &TopicPartition::new("t", 1)),
            Some(&om(11))
        );
        assert!(!shard.has_pending_offset("g", &tp));
        assert!(!shard.has_open_transaction(7));
        assert!(shard.pending_partitions("g").is_empty());
        assert_eq!(shard.last_marker_offset(), 5);
    }

    #[test]
    fn abort_drops_the_staged_offsets() {
        let mut shard = GroupShard::default();
        let tp = TopicPartition::new("t", 0);
        shard.replay(0, 3, &commit_record("fresh", &tp, 10));
        assert_eq!(shard.groups_with_offsets().collect::<Vec<_>>(), ["fresh"]);
        shard.replay_end_transaction(1, 3, false);
        assert_eq!(shard.offset("fresh", &tp), None);
        assert!(!shard.has_pending_offset("fresh", &tp));
        assert_eq!(shard.groups_with_offsets().count(), 0);
        // The next transaction of the same producer starts with nothing staged.
        shard.replay(
            2,
            3,
            &commit_record("fresh", &TopicPartition::new("t", 1), 1),
        );
        shard.replay_end_transaction(3, 3, true);
        assert_eq!(shard.offset("fresh", &tp), None);
        assert_eq!(shard.offsets("fresh").count(), 1);
    }

    #[test]
    fn the_latest_commit_by_log_offset_wins() {
        let mut shard = GroupShard::default();
        let tp = TopicPartition::new("t", 0);
        // Staged at 0, then a plain commit at 1: the transaction's COMMIT must not go back to its value.
        shard.replay(0, 7, &commit_record("g", &tp, 10));
        shard.replay(1, -1, &commit_record("g", &tp, 20));
        shard.replay_end_transaction(2, 7, true);
        assert_eq!(shard.offset("g", &tp), Some(&om(20)));
        // A plain commit first, then the staged one: the transaction's wins.
        shard.replay(3, -1, &commit_record("g", &tp, 30));
        shard.replay(4, 7, &commit_record("g", &tp, 40));
        assert_eq!(shard.offset("g", &tp), Some(&om(30)));
        shard.replay_end_transaction(5, 7, true);
        assert_eq!(shard.offset("g", &tp), Some(&om(40)));
    }

    #[test]
    fn a_tombstone_removes_staged_offsets_too() {
        let mut shard = GroupShard::default();
        let tp = TopicPartition::new("t", 0);
        shard.replay(0, -1, &commit_record("g", &tp, 1));
        shard.replay(1, 7, &commit_record("g", &tp, 2));
        shard.replay(2, 8, &commit_record("g", &tp, 3));
        shard.replay(3, -1, &tombstone("g", &tp));
        assert_eq!(shard.offset("g", &tp), None);
        assert!(!shard.has_pending_offset("g", &tp));
        assert_eq!(shard.groups_with_offsets().count(), 0);
        // The transactions stay open until their markers, which then commit nothing.
        assert!(shard.has_open_transaction(7) && shard.has_open_transaction(8));
        shard.replay_end_transaction(4, 7, true);
        shard.replay_end_transaction(5, 8, true);
        assert_eq!(shard.offset("g", &tp), None);
        assert!(!shard.has_open_transaction(7));
    }
}
