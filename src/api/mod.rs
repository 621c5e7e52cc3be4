//! One module per Kafka API: each turns a decoded request into calls on the log and the metadata store and
//! builds the response. Nothing here touches a file or a socket directly.

pub mod api_versions;
pub mod error;
pub mod fetch;
pub mod find_coordinator;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod produce_legacy;
pub mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::cluster::{MetadataError, MetadataStore, TopicMetadata};
use crate::config::{Config, Endpoint};
use crate::log::{LogConfig, LogManager, PartitionLog, TopicPartition};

/// The single node's leader epoch. Constant until leadership can move (design.md section 6).
pub const LEADER_EPOCH: i32 = 0;

/// Everything a request handler needs: the broker's identity, its topics and its logs.
pub struct Apis {
    pub config: Config,
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised: Endpoint,
    pub metadata: Arc<MetadataStore>,
    pub logs: Arc<LogManager>,
    /// Fetch requests waiting in a long poll right now.
    pub parked_fetches: Arc<AtomicUsize>,
    /// Flips to true when the broker begins a clean shutdown: parked long polls answer at once instead of
    /// holding the shutdown until their deadline.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// A partition that cannot serve requests, with the error code Kafka would answer.
pub type PartitionResult = Result<Arc<PartitionLog>, ResponseError>;

impl Apis {
    /// The partition's log, or the error to answer for it.
    pub fn partition(&self, topic: &str, partition: i32) -> PartitionResult {
        let Some(meta) = self.metadata.topic(topic) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        if partition < 0 || partition >= meta.partitions {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        self.logs
            .get(&TopicPartition {
                topic: topic.to_string(),
                partition,
            })
            // The topic exists but its log could not be loaded: the partition is offline.
            .ok_or(ResponseError::KafkaStorageError)
    }

    /// Resolves a topic named either by name or, in newer versions, by topic id.
    pub fn resolve_topic(&self, name: &str, id: Uuid) -> Result<Arc<TopicMetadata>, ResponseError> {
        if !id.is_nil() {
            return self
                .metadata
                .topic_by_id(id)
                .ok_or(ResponseError::UnknownTopicId);
        }
        self.metadata
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition)
    }

    /// Creates a topic and its partition logs. Partitions whose log cannot be created stay offline and are
    /// reported as KAFKA_STORAGE_ERROR by the APIs, as in Kafka.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        let topic = self.metadata.create_topic(name, partitions, configs)?;
        open_partitions(&self.logs, &self.config.log, &topic);
        tracing::info!(topic = name, partitions, id = %topic.id, "created topic");
        Ok(topic)
    }

    /// Deletes a topic: first from the metadata (clients stop seeing it), then its logs.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicMetadata>, MetadataError> {
        let topic = self.metadata.delete_topic(name)?;
        for partition in 0..topic.partitions {
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition,
            };
            if let Err(e) = self.logs.delete(&tp) {
                tracing::error!(partition = %tp, error = %e, "could not delete partition log");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Auto-creates a topic on first use when `auto.create.topics.enable` allows it.
    pub fn auto_create(&self, name: &str) -> Result<Arc<TopicMetadata>, ResponseError> {
        match self.create_topic(name, self.config.num_partitions, BTreeMap::new()) {
            Ok(topic) => Ok(topic),
            // Lost a race with another client creating the same topic: use theirs.
            Err(MetadataError::TopicExists(_)) => self
                .metadata
                .topic(name)
                .ok_or(ResponseError::UnknownTopicOrPartition),
            Err(MetadataError::InvalidTopic(_)) => Err(ResponseError::InvalidTopicException),
            Err(e) => {
                tracing::error!(topic = name, error = %e, "auto-creation failed");
                Err(ResponseError::KafkaStorageError)
            }
        }
    }
}

/// The log settings for a topic: broker defaults with the topic's overrides on top.
pub fn topic_log_config(defaults: &LogConfig, topic: &TopicMetadata) -> LogConfig {
    let mut config = defaults.clone();
    for (key, value) in &topic.configs {
        // Values were validated when the topic was created.
        if let Err(e) = topics::apply_topic_config(&mut config, key, value) {
            tracing::warn!(topic = %topic.name, key, error = %e, "ignoring stored topic config");
        }
    }
    config
}

/// Opens (loading or creating) every partition log of a topic. A partition that cannot be opened stays
/// offline; the others serve.
pub fn open_partitions(logs: &LogManager, defaults: &LogConfig, topic: &TopicMetadata) {
    let config = topic_log_config(defaults, topic);
    for partition in 0..topic.partitions {
        let tp = TopicPartition {
            topic: topic.name.clone(),
            partition,
        };
        if let Err(e) = logs.get_or_create(&tp, config.clone()) {
            tracing::error!(partition = %tp, error = %e, "partition is offline");
        }
    }
}
