//! [`GroupShard`]: the committed offsets and stored group metadata of one `__consumer_offsets` partition,
//! rebuilt by replaying Kafka's offset-commit and group-metadata records (a null value is a tombstone).

use std::collections::{BTreeMap, HashMap};

use crate::coordinator::{CoordinatorRecord, CoordinatorShard};
use crate::log::TopicPartition;

use super::records::{
    GroupRecordKey, RecordError, decode_group_metadata_value, decode_key,
    decode_offset_commit_value,
};
use super::{OffsetAndMetadata, StoredGroup};

/// The groups of one partition of `__consumer_offsets`, as its log says.
#[derive(Debug, Default)]
pub struct GroupShard {
    offsets: HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>,
    groups: HashMap<String, StoredGroup>,
}

impl GroupShard {
    pub fn offset(&self, group: &str, tp: &TopicPartition) -> Option<&OffsetAndMetadata> {
        self.offsets.get(group)?.get(tp)
    }

    /// The group's committed offsets, sorted by partition.
    pub fn offsets(&self, group: &str) -> Option<&BTreeMap<TopicPartition, OffsetAndMetadata>> {
        self.offsets.get(group)
    }

    /// Groups with at least one committed offset.
    pub fn groups_with_offsets(&self) -> impl Iterator<Item = &String> {
        self.offsets.keys()
    }

    /// Groups whose metadata is stored.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &StoredGroup)> {
        self.groups.iter()
    }

    /// Applies one record: later records win, a null value removes.
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        match decode_key(key)? {
            GroupRecordKey::OffsetCommit { group, tp } => match value {
                Some(v) => {
                    let om = decode_offset_commit_value(v)?;
                    self.offsets.entry(group).or_default().insert(tp, om);
                }
                None => {
                    if let Some(map) = self.offsets.get_mut(&group) {
                        map.remove(&tp);
                        if map.is_empty() {
                            self.offsets.remove(&group);
                        }
                    }
                }
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
}

impl CoordinatorShard for GroupShard {
    fn replay(&mut self, offset: i64, _producer_id: i64, record: &CoordinatorRecord) {
        if let Err(e) = self.apply(&record.key, record.value.as_deref()) {
            tracing::warn!(offset, error = %e, "skipping undecodable group record");
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
        assert!(shard.offsets("g").is_none());
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
}
