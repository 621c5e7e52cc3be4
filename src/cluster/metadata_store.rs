//! The single node's metadata store: topics (name, topic id (KIP-516), partitions with their leader epochs,
//! topic configs) kept in one JSON file, rewritten atomically on every change (temp file, fsync, rename, fsync
//! of the directory). Every change is a [`MetadataDelta`]: persisted, then published as the next
//! [`MetadataImage`] and handed to the publishers. The replicated metadata log of a cluster will produce the
//! same deltas. Reads go to the published image and never touch the disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dynamic_config::{BrokerScope, DynamicConfigStore, DynamicConfigs};
use super::group_config::GroupConfigStore;
use super::image::{
    BrokerRegistration, MetadataDelta, MetadataImage, PartitionRegistration, TopicDelta, TopicImage,
};
use super::producer_ids::ProducerIdManager;
use super::topic_name;

pub const FILE_NAME: &str = "brook-topics.json";

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("{0}")]
    Limit(String),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("metadata I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The cluster's controller refused or could not decide the change: Kafka's error code and message.
    #[error("{message}")]
    Controller {
        error: kafka_protocol::ResponseError,
        message: String,
    },
}

impl MetadataError {
    /// The Kafka error a client sees for this failure.
    pub fn response_error(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError;
        match self {
            MetadataError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            MetadataError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            MetadataError::Limit(_) => ResponseError::PolicyViolation,
            MetadataError::Corrupt(_) | MetadataError::Io(_) => ResponseError::KafkaStorageError,
            MetadataError::Controller { error, .. } => *error,
        }
    }
}

/// A change to the cluster's metadata, as the broker asks for it. On a single node the store decides and
/// persists it itself; in a cluster a [`MetadataWriter`] commits it through the metadata quorum.
#[derive(Clone, Debug)]
pub enum MetadataChange {
    CreateTopic {
        name: String,
        /// Resolved by the caller (never -1).
        partitions: i32,
        /// -1: the cluster's `default.replication.factor`, resolved by the writer.
        replication_factor: i16,
        /// Manual assignment, one replica list per partition; empty to let the controller place them.
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    SetPartitions {
        name: String,
        partitions: i32,
        assignments: Vec<Vec<i32>>,
    },
    BumpLeaderEpoch {
        name: String,
        partition: i32,
    },
    BrokerConfigs {
        /// None: the cluster-wide default; Some(id): that broker's.
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    },
    GroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
}

impl MetadataChange {
    /// The topic the change is about; None for broker and group configs.
    pub fn topic(&self) -> Option<&str> {
        match self {
            MetadataChange::CreateTopic { name, .. }
            | MetadataChange::DeleteTopic { name }
            | MetadataChange::SetTopicConfigs { name, .. }
            | MetadataChange::SetPartitions { name, .. }
            | MetadataChange::BumpLeaderEpoch { name, .. } => Some(name),
            MetadataChange::BrokerConfigs { .. } | MetadataChange::GroupConfigs { .. } => None,
        }
    }
}

/// Commits metadata changes through the cluster's metadata quorum (the controller).
pub trait MetadataWriter: Send + Sync {
    /// Commits `change` and returns once this broker's image holds it (the store's publishers have run).
    /// Blocks the calling thread: API handlers call the store synchronously.
    fn write(&self, change: MetadataChange) -> Result<(), MetadataError>;
    /// A block of producer ids `[start, start + len)` no other broker will hand out.
    fn allocate_producer_ids(&self) -> Result<(i64, i64), MetadataError>;
}

/// One topic as stored in `brook-topics.json` (the file's format since the first release).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    /// Topic-level overrides by Kafka property name (`segment.bytes`, ...).
    #[serde(default)]
    configs: BTreeMap<String, String>,
    /// Each partition's leader epoch. Absent (all 0) in files written before epochs moved; written only once
    /// one is not 0, so the file stays as earlier brooks wrote it until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leader_epochs: Vec<i32>,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredMetadata {
    version: u32,
    topics: Vec<StoredTopic>,
}

/// Receives every delta with the image it produced, in commit order (Kafka's `MetadataPublisher`): the
/// replica manager reconciles the logs with it, coordinators learn which partitions they lead.
pub trait MetadataPublisher: Send + Sync {
    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>);
}

/// The single node's metadata: the source of deltas until the replicated metadata log replaces it.
pub struct MetadataStore {
    path: PathBuf,
    /// This broker: the only replica, leader and in-sync replica of every partition.
    node_id: i32,
    /// The published image; readers clone the Arc and never wait for a writer's I/O.
    image: RwLock<Arc<MetadataImage>>,
    /// Serialises writers: build the delta, persist, publish the image, run the publishers.
    writer: std::sync::Mutex<()>,
    publishers: RwLock<Vec<Arc<dyn MetadataPublisher>>>,
    /// Dynamic broker configs, kept next to the topics (their own file).
    broker_configs: DynamicConfigStore,
    /// Group configs (KIP-848), their own file too.
    group_configs: GroupConfigStore,
    /// Producer id blocks (their own file): the cluster's to allocate, as Kafka's controller does.
    producer_ids: ProducerIdManager,
    /// Serialises read-modify-write admin changes (alter configs, create partitions), as Kafka's single
    /// controller does, so two concurrent alters cannot lose one another's update.
    admin_lock: std::sync::Mutex<()>,
    /// In a cluster: the metadata quorum, which decides every change (set once, right after start).
    quorum: std::sync::OnceLock<Arc<dyn MetadataWriter>>,
}

impl MetadataStore {
    /// Loads `<dir>/brook-topics.json`, or starts empty when there is none. `node_id` leads every partition.
    pub fn open(dir: &Path, node_id: i32) -> Result<MetadataStore, MetadataError> {
        let path = dir.join(FILE_NAME);
        let stored: StoredMetadata = load_json(&path)?;
        let mut delta = MetadataDelta::default();
        for topic in stored.topics {
            if topic.partitions < 0 || topic.leader_epochs.len() > topic.partitions as usize {
                return Err(MetadataError::Corrupt(format!(
                    "{}: topic {} has {} partitions and {} leader epochs",
                    path.display(),
                    topic.name,
                    topic.partitions,
                    topic.leader_epochs.len()
                )));
            }
            delta
                .topics
                .push(TopicDelta::Created(Arc::new(to_image(node_id, topic))));
        }
        Ok(MetadataStore {
            path,
            node_id,
            image: RwLock::new(Arc::new(MetadataImage::default().apply(&delta))),
            writer: std::sync::Mutex::new(()),
            publishers: RwLock::new(Vec::new()),
            broker_configs: DynamicConfigStore::open(dir)?,
            group_configs: GroupConfigStore::open(dir)?,
            producer_ids: ProducerIdManager::open(dir)?,
            admin_lock: std::sync::Mutex::new(()),
            quorum: std::sync::OnceLock::new(),
        })
    }

    /// The store of a cluster member: empty until the metadata quorum publishes what it committed
    /// ([`Self::publish_delta`], [`Self::mirror_configs`]); every change goes to `writer`. Nothing is read
    /// from or written to this node's JSON files.
    pub fn replicated(node_id: i32) -> MetadataStore {
        MetadataStore {
            path: PathBuf::new(),
            node_id,
            image: RwLock::new(Arc::new(MetadataImage::default())),
            writer: std::sync::Mutex::new(()),
            quorum: std::sync::OnceLock::new(),
            publishers: RwLock::new(Vec::new()),
            broker_configs: DynamicConfigStore::in_memory(),
            group_configs: GroupConfigStore::in_memory(),
            producer_ids: ProducerIdManager::in_memory(),
            admin_lock: std::sync::Mutex::new(()),
        }
    }

    /// Hands every later change to the metadata quorum. Once only.
    pub fn set_writer(&self, writer: Arc<dyn MetadataWriter>) {
        if self.quorum.set(writer.clone()).is_err() {
            tracing::error!("the metadata writer was set twice; keeping the first");
        }
        self.producer_ids.set_allocator(writer);
    }

    /// The metadata quorum, when this broker is a cluster member.
    pub fn quorum(&self) -> Option<&Arc<dyn MetadataWriter>> {
        self.quorum.get()
    }

    /// The dynamic broker and group configs the quorum committed (this broker's scope and the cluster's),
    /// set before the delta that says they changed is published.
    pub fn mirror_configs(
        &self,
        broker: DynamicConfigs,
        groups: BTreeMap<String, BTreeMap<String, String>>,
    ) {
        self.broker_configs.mirror(broker);
        self.group_configs.mirror(groups);
    }

    /// Replaces one scope of the dynamic broker configs and tells the publishers.
    pub fn replace_broker_configs(
        &self,
        scope: BrokerScope,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        if let Some(writer) = self.quorum() {
            let broker = match scope {
                BrokerScope::Broker => Some(self.node_id),
                BrokerScope::ClusterDefault => None,
            };
            return writer.write(MetadataChange::BrokerConfigs { broker, configs });
        }
        self.broker_configs.replace(scope, configs)?;
        self.broker_configs_changed();
        Ok(())
    }

    /// Replaces one group's config overrides (empty forgets them).
    pub fn replace_group_configs(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        if let Some(writer) = self.quorum() {
            return writer.write(MetadataChange::GroupConfigs {
                group: group.to_string(),
                configs,
            });
        }
        self.group_configs.replace(group, configs)
    }

    /// Held across an admin change's read, validation and write (see `admin_lock`).
    pub fn admin_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The dynamic broker configs (AlterConfigs on a BROKER resource).
    pub fn broker_configs(&self) -> &DynamicConfigStore {
        &self.broker_configs
    }

    /// The group configs (AlterConfigs on a GROUP resource).
    pub fn group_configs(&self) -> &GroupConfigStore {
        &self.group_configs
    }

    pub fn producer_ids(&self) -> &ProducerIdManager {
        &self.producer_ids
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Registers a publisher and hands it the whole current image as one delta, under the writer lock so
    /// that it misses no change and sees none twice.
    pub fn add_publisher(&self, publisher: Arc<dyn MetadataPublisher>) {
        let _writer = self.writer();
        let image = self.image();
        publisher.publish(&MetadataDelta::from_image(&image), &image);
        self.publishers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(publisher);
    }

    /// Waits until the change being published (if any) has reached every publisher. The image is visible to
    /// readers before its publishers run, so a reader that found a new topic and needs what a publisher
    /// builds for it (open logs, a loaded coordinator shard) waits here rather than failing.
    pub fn await_publishers(&self) {
        drop(self.writer());
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicImage>> {
        self.image().topic(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<TopicImage>> {
        self.image().topic_by_id(id).cloned()
    }

    /// Every topic, sorted by name so responses are stable.
    pub fn topics(&self) -> Vec<Arc<TopicImage>> {
        self.image().topics()
    }

    /// Checks that `name` could be created now, without creating it (CreateTopics validate_only).
    pub fn check_new_topic(&self, name: &str) -> Result<(), MetadataError> {
        Self::check_new_topic_in(&self.image(), name)
    }

    fn check_new_topic_in(image: &MetadataImage, name: &str) -> Result<(), MetadataError> {
        topic_name::validate(name).map_err(MetadataError::InvalidTopic)?;
        if image.topic(name).is_some() {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        let key = topic_name::collision_key(name);
        if let Some(other) = image
            .topic_names()
            .find(|n| topic_name::collision_key(n) == key)
        {
            return Err(MetadataError::InvalidTopic(format!(
                "Topic '{name}' collides with existing topic: {other}"
            )));
        }
        Ok(())
    }

    /// Records a new topic durably, publishes it and returns it. Fails if it exists or its name is illegal.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        self.create_topic_with(name, partitions, -1, Vec::new(), configs)
    }

    /// [`Self::create_topic`] with a replication factor (-1: the cluster's default) or a manual assignment
    /// (one replica list per partition), which only a cluster can honour.
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        if let Some(quorum) = self.quorum() {
            Self::check_new_topic_in(&self.image(), name)?;
            quorum.write(MetadataChange::CreateTopic {
                name: name.to_string(),
                partitions,
                replication_factor,
                assignments,
                configs,
            })?;
            return self.committed_topic(name);
        }
        // Checked under the writer lock: two clients may auto-create the same topic at once.
        let _writer = self.writer();
        let image = self.image();
        Self::check_new_topic_in(&image, name)?;
        let topic = Arc::new(to_image(
            self.node_id,
            StoredTopic {
                name: name.to_string(),
                id: new_topic_id(&image),
                partitions,
                configs,
                leader_epochs: Vec::new(),
            },
        ));
        self.commit(
            &image,
            MetadataDelta {
                topics: vec![TopicDelta::Created(topic.clone())],
                ..Default::default()
            },
        )?;
        Ok(topic)
    }

    /// Replaces a topic's config overrides durably and returns the updated topic.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        if let Some(quorum) = self.quorum() {
            quorum.write(MetadataChange::SetTopicConfigs {
                name: name.to_string(),
                configs,
            })?;
            return self.committed_topic(name);
        }
        self.update_topic(name, |t| t.configs = configs)
    }

    /// The topic as this broker's image holds it once a quorum write of it returned.
    fn committed_topic(&self, name: &str) -> Result<Arc<TopicImage>, MetadataError> {
        self.topic(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))
    }

    /// Records a larger partition count durably (CreatePartitions) and returns the updated topic.
    pub fn set_partitions(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        self.set_partitions_with(name, partitions, Vec::new())
    }

    /// [`Self::set_partitions`] with the new partitions' replicas given (only a cluster honours them).
    pub fn set_partitions_with(
        &self,
        name: &str,
        partitions: i32,
        assignments: Vec<Vec<i32>>,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        if let Some(quorum) = self.quorum() {
            quorum.write(MetadataChange::SetPartitions {
                name: name.to_string(),
                partitions,
                assignments,
            })?;
            return self.committed_topic(name);
        }
        let node_id = self.node_id;
        self.update_topic(name, |t| {
            let count = usize::try_from(partitions).unwrap_or(0);
            t.partitions.truncate(count);
            while t.partitions.len() < count {
                t.partitions.push(local_registration(node_id, 0));
            }
        })
    }

    /// Starts a new leader epoch for one partition (Kafka bumps it at every leadership change): the leader
    /// stamps it into the batches it appends from now on and fences requests that name an older one.
    pub fn bump_leader_epoch(
        &self,
        name: &str,
        partition: i32,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        if let Some(quorum) = self.quorum() {
            quorum.write(MetadataChange::BumpLeaderEpoch {
                name: name.to_string(),
                partition,
            })?;
            return self.committed_topic(name);
        }
        let index =
            usize::try_from(partition).map_err(|_| MetadataError::UnknownTopic(name.into()))?;
        let mut found = false;
        let topic = self.update_topic(name, |t| {
            if let Some(p) = t.partitions.get_mut(index) {
                p.leader_epoch += 1;
                p.partition_epoch += 1;
                found = true;
            }
        })?;
        if !found {
            return Err(MetadataError::UnknownTopic(format!("{name}-{partition}")));
        }
        Ok(topic)
    }

    /// Tells the publishers that the dynamic broker configs changed (after `broker_configs().update`).
    pub fn broker_configs_changed(&self) {
        let _writer = self.writer();
        let image = self.image();
        self.run_publishers(
            &MetadataDelta {
                broker_configs_changed: true,
                ..Default::default()
            },
            &image,
        );
    }

    /// Publishes a delta that another source made durable (the cluster's replicated metadata log): the
    /// image moves on and the publishers run, nothing is written here. Returns the new image.
    pub fn publish_delta(&self, delta: &MetadataDelta) -> Arc<MetadataImage> {
        let _writer = self.writer();
        let next = Arc::new(self.image().apply(delta));
        self.publish(delta, next.clone());
        next
    }

    /// Tests: publishes `topic`-`partition` led by `leader` with `replicas` and `isr` at the next leader and
    /// partition epochs, as a cluster's metadata log would.
    #[cfg(test)]
    pub(crate) fn lead_for_test(
        &self,
        topic: &str,
        partition: i32,
        leader: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> Arc<MetadataImage> {
        let before = self.topic(topic).expect("the topic exists");
        let mut after = (*before).clone();
        let current = after.partitions[partition as usize].clone();
        after.partitions[partition as usize] = PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: current.leader_epoch + 1,
            partition_epoch: current.partition_epoch + 1,
            ..current
        };
        self.publish_delta(&MetadataDelta {
            topics: vec![TopicDelta::Changed {
                before,
                after: Arc::new(after),
            }],
            ..Default::default()
        })
    }

    /// Registers (or re-registers) a broker: today the local one, with the endpoints it listens on.
    pub fn register_broker(&self, broker: BrokerRegistration) {
        let _writer = self.writer();
        let image = self.image();
        let delta = MetadataDelta {
            brokers: vec![Arc::new(broker)],
            ..Default::default()
        };
        // Nothing to persist: a broker registers itself at every start.
        let next = Arc::new(image.apply(&delta));
        self.publish(&delta, next);
    }

    fn update_topic(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicImage),
    ) -> Result<Arc<TopicImage>, MetadataError> {
        let _writer = self.writer();
        let image = self.image();
        let before = image
            .topic(name)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let mut after = (*before).clone();
        change(&mut after);
        let after = Arc::new(after);
        self.commit(
            &image,
            MetadataDelta {
                topics: vec![TopicDelta::Changed {
                    before,
                    after: after.clone(),
                }],
                ..Default::default()
            },
        )?;
        Ok(after)
    }

    /// Forgets a topic durably and returns what it was.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, MetadataError> {
        if let Some(quorum) = self.quorum() {
            let topic = self.committed_topic(name)?;
            quorum.write(MetadataChange::DeleteTopic {
                name: name.to_string(),
            })?;
            return Ok(topic);
        }
        let _writer = self.writer();
        let image = self.image();
        let topic = image
            .topic(name)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.commit(
            &image,
            MetadataDelta {
                topics: vec![TopicDelta::Deleted(topic.clone())],
                ..Default::default()
            },
        )?;
        Ok(topic)
    }

    /// Persists the image `delta` makes of `image`, then publishes it. Under the writer lock. A failed write
    /// changes nothing anyone can see.
    fn commit(&self, image: &MetadataImage, delta: MetadataDelta) -> Result<(), MetadataError> {
        let next = Arc::new(image.apply(&delta));
        self.persist(&next)?;
        self.publish(&delta, next);
        Ok(())
    }

    fn publish(&self, delta: &MetadataDelta, next: Arc<MetadataImage>) {
        *self
            .image
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next.clone();
        self.run_publishers(delta, &next);
    }

    fn run_publishers(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        let publishers = self
            .publishers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for publisher in publishers {
            publisher.publish(delta, image);
        }
    }

    fn persist(&self, image: &MetadataImage) -> Result<(), MetadataError> {
        let topics = image.topics().iter().map(|t| to_stored(t)).collect();
        store_json(&self.path, &StoredMetadata { version: 1, topics })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A partition of the single node: this broker is its only replica and its leader.
fn local_registration(node_id: i32, leader_epoch: i32) -> PartitionRegistration {
    PartitionRegistration {
        replicas: vec![node_id],
        isr: vec![node_id],
        leader: node_id,
        leader_epoch,
        partition_epoch: leader_epoch,
        ..Default::default()
    }
}

fn to_image(node_id: i32, stored: StoredTopic) -> TopicImage {
    let partitions = (0..stored.partitions.max(0) as usize)
        .map(|i| local_registration(node_id, stored.leader_epochs.get(i).copied().unwrap_or(0)))
        .collect();
    TopicImage {
        name: stored.name,
        id: stored.id,
        partitions,
        configs: stored.configs,
    }
}

fn to_stored(topic: &TopicImage) -> StoredTopic {
    let epochs: Vec<i32> = topic.partitions.iter().map(|p| p.leader_epoch).collect();
    StoredTopic {
        name: topic.name.clone(),
        id: topic.id,
        partitions: topic.partition_count(),
        configs: topic.configs.clone(),
        leader_epochs: if epochs.iter().all(|&e| e == 0) {
            Vec::new()
        } else {
            epochs
        },
    }
}

/// A topic id is never the nil UUID (Kafka reserves it for "no id") and never reused while the topic exists.
fn new_topic_id(image: &MetadataImage) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !id.is_nil() && !image.contains_topic_id(id) {
            return id;
        }
    }
}

/// Reads a JSON state file, or the empty state when there is none yet.
pub fn load_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<T, MetadataError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| MetadataError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

/// A small state kept whole in memory and in one JSON file: a change is written durably
/// ([`store_json`]) before readers see it, and a failed write leaves both copies as they were. In a cluster
/// the state is a mirror of what the metadata quorum committed, and there is no file.
pub struct JsonState<T> {
    path: Option<PathBuf>,
    state: RwLock<T>,
}

impl<T: Serialize + serde::de::DeserializeOwned + Default + Clone> JsonState<T> {
    /// Loads `path`, or starts from `T::default()` when there is no such file.
    pub fn open(path: PathBuf) -> Result<Self, MetadataError> {
        let state = load_json(&path)?;
        Ok(JsonState {
            path: Some(path),
            state: RwLock::new(state),
        })
    }

    /// A state with no file behind it (a mirror of the cluster's metadata log).
    pub fn in_memory() -> Self {
        JsonState {
            path: None,
            state: RwLock::new(T::default()),
        }
    }

    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Applies `change` to a copy, stores the copy, then publishes it; nothing changes when `change`
    /// refuses or the write fails.
    pub fn update(
        &self,
        change: impl FnOnce(&mut T) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = state.clone();
        change(&mut next)?;
        if let Some(path) = &self.path {
            store_json(path, &next)?;
        }
        *state = next;
        Ok(())
    }
}

/// Writes a JSON state file atomically (see [`write_atomically`]).
pub fn store_json<T: Serialize>(path: &Path, state: &T) -> Result<(), MetadataError> {
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| MetadataError::Corrupt(format!("cannot encode {}: {e}", path.display())))?;
    write_atomically(path, &bytes)?;
    Ok(())
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // A full disk, typically: the old file is untouched; do not leave the partial copy behind.
        if let Err(cleanup) = std::fs::remove_file(&tmp)
            && cleanup.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %tmp.display(), error = %cleanup, "could not remove a partial file");
        }
        return Err(e);
    }
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_reopen_with_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), 1).unwrap();
        let created = store.create_topic("orders", 4, BTreeMap::new()).unwrap();
        assert!(matches!(
            store.create_topic("orders", 1, BTreeMap::new()),
            Err(MetadataError::TopicExists(_))
        ));
        assert!(matches!(
            store.create_topic("bad name", 1, BTreeMap::new()),
            Err(MetadataError::InvalidTopic(_))
        ));
        let reopened = MetadataStore::open(dir.path(), 1).unwrap();
        assert_eq!(reopened.topic("orders").unwrap(), created);
        assert_eq!(reopened.topic_by_id(created.id).unwrap().name, "orders");
        reopened.delete_topic("orders").unwrap();
        assert!(
            MetadataStore::open(dir.path(), 1)
                .unwrap()
                .topic("orders")
                .is_none()
        );
    }

    #[test]
    fn topic_creation_on_a_full_disk_fails_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), 1).unwrap();
        store.create_topic("kept", 1, BTreeMap::new()).unwrap();
        let before = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        // The temp file is /dev/full: its writes fail with ENOSPC, as on a full disk.
        let tmp = dir.path().join(FILE_NAME).with_extension("tmp");
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let err = store
            .create_topic("orders", 1, BTreeMap::new())
            .unwrap_err();
        assert!(
            matches!(&err, MetadataError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC)),
            "{err}"
        );
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert!(store.topic("orders").is_none(), "not created in memory");
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), before);
        assert!(
            std::fs::symlink_metadata(&tmp).is_err(),
            "temp file removed"
        );
        store.create_topic("orders", 1, BTreeMap::new()).unwrap();
        assert!(
            MetadataStore::open(dir.path(), 1)
                .unwrap()
                .topic("orders")
                .is_some()
        );
    }

    #[test]
    fn dot_and_underscore_names_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), 1).unwrap();
        store.create_topic("a.b", 1, BTreeMap::new()).unwrap();
        let err = store.create_topic("a_b", 1, BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("collides"), "{err}");
    }

    #[test]
    fn corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(matches!(
            MetadataStore::open(dir.path(), 1),
            Err(MetadataError::Corrupt(_))
        ));
    }
}
