//! The broker's record of its topics: name, topic id (KIP-516), partition count and topic configs.
//!
//! Kept in one JSON file, rewritten atomically on every change (temp file, fsync, rename, fsync of the
//! directory), until the replicated metadata log of design.md section 6 replaces it. Reads go to an
//! in-memory copy and never touch the disk.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dynamic_config::DynamicConfigStore;
use super::group_config::GroupConfigStore;
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
}

/// What the broker knows about one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides by Kafka property name (`segment.bytes`, ...).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

impl TopicMetadata {
    /// Topics the broker keeps for itself (`__consumer_offsets`): clients may read them, never write or delete.
    pub fn is_internal(&self) -> bool {
        self.name == crate::group::OFFSETS_TOPIC
    }
}

#[derive(Serialize, Deserialize, Default)]
struct StoredMetadata {
    version: u32,
    topics: Vec<TopicMetadata>,
}

#[derive(Default)]
struct State {
    by_name: HashMap<String, Arc<TopicMetadata>>,
    by_id: HashMap<Uuid, Arc<TopicMetadata>>,
}

pub struct MetadataStore {
    path: PathBuf,
    state: RwLock<State>,
    /// Dynamic broker configs, kept next to the topics (their own file).
    broker_configs: DynamicConfigStore,
    /// Group configs (KIP-848), their own file too.
    group_configs: GroupConfigStore,
    /// Serialises read-modify-write admin changes (alter configs, create partitions), as Kafka's single
    /// controller does, so two concurrent alters cannot lose one another's update.
    admin_lock: std::sync::Mutex<()>,
}

impl MetadataStore {
    /// Loads `<dir>/brook-topics.json`, or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<MetadataStore, MetadataError> {
        let path = dir.join(FILE_NAME);
        let stored: StoredMetadata = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| MetadataError::Corrupt(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredMetadata::default(),
            Err(e) => return Err(e.into()),
        };
        let mut state = State::default();
        for topic in stored.topics {
            let topic = Arc::new(topic);
            state.by_id.insert(topic.id, topic.clone());
            state.by_name.insert(topic.name.clone(), topic);
        }
        Ok(MetadataStore {
            path,
            state: RwLock::new(state),
            broker_configs: DynamicConfigStore::open(dir)?,
            group_configs: GroupConfigStore::open(dir)?,
            admin_lock: std::sync::Mutex::new(()),
        })
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

    pub fn topic(&self, name: &str) -> Option<Arc<TopicMetadata>> {
        self.read().by_name.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<TopicMetadata>> {
        self.read().by_id.get(&id).cloned()
    }

    /// Every topic, sorted by name so responses are stable.
    pub fn topics(&self) -> Vec<Arc<TopicMetadata>> {
        let mut topics: Vec<_> = self.read().by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Checks that `name` could be created now, without creating it (CreateTopics validate_only).
    pub fn check_new_topic(&self, name: &str) -> Result<(), MetadataError> {
        Self::check_new_topic_in(&self.read(), name)
    }

    fn check_new_topic_in(state: &State, name: &str) -> Result<(), MetadataError> {
        topic_name::validate(name).map_err(MetadataError::InvalidTopic)?;
        if state.by_name.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        let key = topic_name::collision_key(name);
        if let Some(other) = state
            .by_name
            .keys()
            .find(|n| topic_name::collision_key(n) == key)
        {
            return Err(MetadataError::InvalidTopic(format!(
                "Topic '{name}' collides with existing topic: {other}"
            )));
        }
        Ok(())
    }

    /// Records a new topic durably and returns it. Fails if it exists or its name is illegal.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        // Checked under the write lock: two clients may auto-create the same topic at once.
        let mut state = self.write();
        Self::check_new_topic_in(&state, name)?;
        let topic = Arc::new(TopicMetadata {
            name: name.to_string(),
            id: new_topic_id(&state),
            partitions,
            configs,
        });
        let mut next: Vec<TopicMetadata> = state.by_name.values().map(|t| (**t).clone()).collect();
        next.push((*topic).clone());
        self.persist(next)?;
        state.by_id.insert(topic.id, topic.clone());
        state.by_name.insert(topic.name.clone(), topic.clone());
        Ok(topic)
    }

    /// Replaces a topic's config overrides durably and returns the updated topic.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        self.update_topic(name, |t| t.configs = configs)
    }

    /// Records a larger partition count durably (CreatePartitions) and returns the updated topic.
    pub fn set_partitions(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        self.update_topic(name, |t| t.partitions = partitions)
    }

    fn update_topic(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicMetadata),
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        let mut state = self.write();
        let mut topic = state
            .by_name
            .get(name)
            .map(|t| (**t).clone())
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        change(&mut topic);
        let topic = Arc::new(topic);
        let next: Vec<TopicMetadata> = state
            .by_name
            .values()
            .map(|t| {
                if t.name == name {
                    (*topic).clone()
                } else {
                    (**t).clone()
                }
            })
            .collect();
        self.persist(next)?;
        state.by_id.insert(topic.id, topic.clone());
        state.by_name.insert(topic.name.clone(), topic.clone());
        Ok(topic)
    }

    /// Forgets a topic durably and returns what it was.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicMetadata>, MetadataError> {
        let mut state = self.write();
        let topic = state
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let next: Vec<TopicMetadata> = state
            .by_name
            .values()
            .filter(|t| t.name != name)
            .map(|t| (**t).clone())
            .collect();
        self.persist(next)?;
        state.by_name.remove(name);
        state.by_id.remove(&topic.id);
        Ok(topic)
    }

    fn persist(&self, mut topics: Vec<TopicMetadata>) -> Result<(), MetadataError> {
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let stored = StoredMetadata { version: 1, topics };
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| MetadataError::Corrupt(format!("cannot encode metadata: {e}")))?;
        write_atomically(&self.path, &bytes)?;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A topic id is never the nil UUID (Kafka reserves it for "no id") and never reused while the topic exists.
fn new_topic_id(state: &State) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !id.is_nil() && !state.by_id.contains_key(&id) {
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
/// ([`store_json`]) before readers see it, and a failed write leaves both copies as they were.
pub struct JsonState<T> {
    path: PathBuf,
    state: RwLock<T>,
}

impl<T: Serialize + serde::de::DeserializeOwned + Default + Clone> JsonState<T> {
    /// Loads `path`, or starts from `T::default()` when there is no such file.
    pub fn open(path: PathBuf) -> Result<Self, MetadataError> {
        let state = load_json(&path)?;
        Ok(JsonState {
            path,
            state: RwLock::new(state),
        })
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
        store_json(&self.path, &next)?;
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
        let store = MetadataStore::open(dir.path()).unwrap();
        let created = store.create_topic("orders", 4, BTreeMap::new()).unwrap();
        assert!(matches!(
            store.create_topic("orders", 1, BTreeMap::new()),
            Err(MetadataError::TopicExists(_))
        ));
        assert!(matches!(
            store.create_topic("bad name", 1, BTreeMap::new()),
            Err(MetadataError::InvalidTopic(_))
        ));
        let reopened = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(reopened.topic("orders").unwrap(), created);
        assert_eq!(reopened.topic_by_id(created.id).unwrap().name, "orders");
        reopened.delete_topic("orders").unwrap();
        assert!(
            MetadataStore::open(dir.path())
                .unwrap()
                .topic("orders")
                .is_none()
        );
    }

    #[test]
    fn topic_creation_on_a_full_disk_fails_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
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
            MetadataStore::open(dir.path())
                .unwrap()
                .topic("orders")
                .is_some()
        );
    }

    #[test]
    fn dot_and_underscore_names_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        store.create_topic("a.b", 1, BTreeMap::new()).unwrap();
        let err = store.create_topic("a_b", 1, BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("collides"), "{err}");
    }

    #[test]
    fn corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(matches!(
            MetadataStore::open(dir.path()),
            Err(MetadataError::Corrupt(_))
        ));
    }
}
