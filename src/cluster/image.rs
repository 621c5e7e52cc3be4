//! The metadata image: an immutable snapshot of the cluster (brokers, topics, partitions with their replicas,
//! leader, leader epoch and in-sync replicas, topic configs), replaced whole by applying a [`MetadataDelta`]
//! (Kafka's `MetadataImage` / `MetadataDelta`).
//!
//! One writer produces deltas (the metadata store today; the replicated metadata log in a cluster) and
//! publishes the next image; readers hold an `Arc<MetadataImage>` and never see a half-applied change or
//! touch the writer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

/// Kafka's "no leader" broker id.
pub const NO_LEADER: i32 = -1;

/// The names of the topics the broker keeps for itself. Clients may read them, never write or delete them.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's state (`__transaction_state`).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// KIP-704's `LeaderRecoveryState`: a leader elected uncleanly is RECOVERING until it tells the controller
/// (AlterPartition) it has recovered; its ISR may not grow meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LeaderRecoveryState {
    #[default]
    Recovered,
    Recovering,
}

/// Where one partition lives (Kafka's `PartitionRegistration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionRegistration {
    /// Brokers holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// The leader's broker id, or [`NO_LEADER`].
    pub leader: i32,
    /// Grows by one every time leadership changes; stamped into every batch the leader appends.
    pub leader_epoch: i32,
    /// Grows with every change of this registration (leader, replicas or ISR).
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (already in `replicas`), and removing (still in `replicas`).
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub leader_recovery_state: LeaderRecoveryState,
    /// KIP-966 eligible leader replicas: not in sync, yet holding every committed record.
    pub elr: Vec<i32>,
    /// KIP-966 `LastKnownElr`: the last leader of a partition left without ISR and ELR.
    pub last_known_elr: Vec<i32>,
}

/// One topic as the image knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    /// By partition index.
    pub partitions: Vec<PartitionRegistration>,
    /// Topic-level overrides by Kafka property name (`segment.bytes`, ...).
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn partition_count(&self) -> i32 {
        // Bounded by the metadata store's partition limit, far below i32::MAX.
        i32::try_from(self.partitions.len()).expect("invariant: partition count fits an i32")
    }

    /// The registration of partition `index`, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&PartitionRegistration> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Topics the broker keeps for itself (`__consumer_offsets`, `__transaction_state`): clients may read them, never write or delete.
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// True for the names of the broker's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// One listener of a broker, as clients reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub listener: String,
    pub security_protocol: String,
    pub host: String,
    pub port: u16,
}

/// A broker of the cluster (Kafka's `BrokerRegistration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: i32,
    /// The metadata log offset of its registration (Kafka's broker epoch); 0 on a single node.
    pub epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not offered to clients.
    pub fenced: bool,
    /// The broker asked to stop: its leaderships are moving away.
    pub in_controlled_shutdown: bool,
}

/// What changed about one topic.
#[derive(Clone, Debug)]
pub enum TopicDelta {
    Created(Arc<TopicImage>),
    /// Partitions added, registrations or configs changed; `before` is what the previous image held.
    Changed {
        before: Arc<TopicImage>,
        after: Arc<TopicImage>,
    },
    Deleted(Arc<TopicImage>),
}

/// The difference between two images, in the order the writer made the changes.
#[derive(Clone, Debug, Default)]
pub struct MetadataDelta {
    pub topics: Vec<TopicDelta>,
    /// Brokers registered or changed.
    pub brokers: Vec<Arc<BrokerRegistration>>,
    /// Brokers unregistered (UnregisterBroker): gone from the image, their ids free for a new broker.
    pub removed_brokers: Vec<i32>,
    /// The dynamic broker configs changed: every partition's derived config must be re-applied.
    pub broker_configs_changed: bool,
    /// The whole image as loaded at start-up, not a change: its topics' logs exist and must be opened, not
    /// created afresh.
    pub from_snapshot: bool,
}

impl MetadataDelta {
    /// The delta that builds `image` from an empty one (what a broker applies at start).
    pub fn from_image(image: &MetadataImage) -> MetadataDelta {
        MetadataDelta {
            topics: image
                .topics()
                .into_iter()
                .map(TopicDelta::Created)
                .collect(),
            brokers: image.brokers.values().cloned().collect(),
            removed_brokers: Vec::new(),
            broker_configs_changed: false,
            from_snapshot: true,
        }
    }
}

impl MetadataDelta {
    /// The delta that turns `before` into `after` (a node that installed a metadata snapshot): topics
    /// created, changed (registrations, partition count or configs) and deleted, brokers that differ or left.
    /// A topic whose id changed under the same name was deleted and created again.
    pub fn between(before: &MetadataImage, after: &MetadataImage) -> MetadataDelta {
        let mut topics = Vec::new();
        for old in before.topics() {
            if !after.by_id.contains_key(&old.id) {
                topics.push(TopicDelta::Deleted(old));
            }
        }
        for new in after.topics() {
            match before.by_id.get(&new.id) {
                None => topics.push(TopicDelta::Created(new)),
                Some(old) if **old != *new => topics.push(TopicDelta::Changed {
                    before: old.clone(),
                    after: new,
                }),
                Some(_) => {}
            }
        }
        let brokers = after
            .brokers
            .values()
            .filter(|b| before.brokers.get(&b.id) != Some(*b))
            .cloned()
            .collect();
        let removed_brokers = before
            .brokers
            .keys()
            .filter(|id| !after.brokers.contains_key(id))
            .copied()
            .collect();
        MetadataDelta {
            topics,
            brokers,
            removed_brokers,
            broker_configs_changed: true,
            from_snapshot: false,
        }
    }
}

/// An immutable snapshot of the cluster's metadata.
#[derive(Clone, Debug, Default)]
pub struct MetadataImage {
    by_name: HashMap<String, Arc<TopicImage>>,
    by_id: HashMap<Uuid, Arc<TopicImage>>,
    brokers: BTreeMap<i32, Arc<BrokerRegistration>>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.by_name.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.by_id.get(&id)
    }

    /// Every topic, sorted by name so responses are stable.
    pub fn topics(&self) -> Vec<Arc<TopicImage>> {
        let mut topics: Vec<_> = self.by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    pub fn topic_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn contains_topic_id(&self, id: Uuid) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn broker(&self, id: i32) -> Option<&Arc<BrokerRegistration>> {
        self.brokers.get(&id)
    }

    /// Every registered broker, fenced ones included, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &Arc<BrokerRegistration>> {
        self.brokers.values()
    }

    /// Unfenced brokers by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &Arc<BrokerRegistration>> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The next image: this one with `delta` applied. A delta is built against the image it applies to, so
    /// a created topic is new here and a changed or deleted one is present.
    pub fn apply(&self, delta: &MetadataDelta) -> MetadataImage {
        let mut next = self.clone();
        for change in &delta.topics {
            match change {
                TopicDelta::Created(topic) | TopicDelta::Changed { after: topic, .. } => {
                    if let TopicDelta::Changed { before, .. } = change {
                        debug_assert_eq!(before.id, topic.id, "a change keeps the topic id");
                        for (old, new) in before.partitions.iter().zip(&topic.partitions) {
                            assert!(
                                new.leader_epoch >= old.leader_epoch,
                                "invariant: leader epochs only grow ({} -> {} in {})",
                                old.leader_epoch,
                                new.leader_epoch,
                                topic.name
                            );
                        }
                    }
                    next.by_id.insert(topic.id, topic.clone());
                    next.by_name.insert(topic.name.clone(), topic.clone());
                }
                TopicDelta::Deleted(topic) => {
                    next.by_name.remove(&topic.name);
                    next.by_id.remove(&topic.id);
                }
            }
        }
        for id in &delta.removed_brokers {
            next.brokers.remove(id);
        }
        for broker in &delta.brokers {
            next.brokers.insert(broker.id, broker.clone());
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, epochs: &[i32]) -> Arc<TopicImage> {
        Arc::new(TopicImage {
            name: name.into(),
            id: Uuid::from_u128(name.len() as u128 + 1),
            partitions: epochs
                .iter()
                .map(|&leader_epoch| PartitionRegistration {
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch,
                    partition_epoch: 0,
                    ..Default::default()
                })
                .collect(),
            configs: BTreeMap::new(),
        })
    }

    #[test]
    fn applying_a_delta_leaves_the_old_image_untouched() {
        let empty = MetadataImage::default();
        let created = topic("orders", &[0, 0]);
        let one = empty.apply(&MetadataDelta {
            topics: vec![TopicDelta::Created(created.clone())],
            ..Default::default()
        });
        assert!(empty.topic("orders").is_none());
        assert_eq!(one.topic("orders"), Some(&created));
        assert_eq!(one.topic_by_id(created.id), Some(&created));

        let grown = topic("orders", &[0, 3, 0]);
        let two = one.apply(&MetadataDelta {
            topics: vec![TopicDelta::Changed {
                before: created.clone(),
                after: grown.clone(),
            }],
            ..Default::default()
        });
        assert_eq!(one.topic("orders").unwrap().partition_count(), 2);
        assert_eq!(two.topic("orders").unwrap().partition_count(), 3);
        assert_eq!(
            two.topic("orders")
                .unwrap()
                .partition(1)
                .unwrap()
                .leader_epoch,
            3
        );

        let three = two.apply(&MetadataDelta {
            topics: vec![TopicDelta::Deleted(grown)],
            ..Default::default()
        });
        assert!(three.topics().is_empty());
        assert!(!three.contains_topic_id(created.id));
        assert_eq!(MetadataDelta::from_image(&two).topics.len(), 1);
    }

    #[test]
    #[should_panic(expected = "leader epochs only grow")]
    fn a_delta_that_lowers_a_leader_epoch_is_a_bug() {
        let before = topic("orders", &[2]);
        let image = MetadataImage::default().apply(&MetadataDelta {
            topics: vec![TopicDelta::Created(before.clone())],
            ..Default::default()
        });
        image.apply(&MetadataDelta {
            topics: vec![TopicDelta::Changed {
                before,
                after: topic("orders", &[1]),
            }],
            ..Default::default()
        });
    }
}
