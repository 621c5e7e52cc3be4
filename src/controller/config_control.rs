//! Configs of topics, brokers and groups (Kafka's `ConfigurationControlManager`), and the migration of a
//! single-node data directory into an empty cluster state. The proposer checks names and values (it knows
//! the broker's config table); a command replaces one resource's whole set and is written as one
//! `ConfigRecord` per key that changes.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::command::{ApiError, BrokerConfigScope, ImportedTopic};
use super::records::{
    ConfigRecord, ConfigResourceType, ControllerStaticConfigsRecord, LeaderRecoveryState,
    MetadataRecord, PartitionRecord, ProducerIdsRecord, TopicRecord,
};
use super::replication_control::{MAX_PARTITIONS_PER_REQUEST, check_config_count};
use super::state::{ControllerState, Writer};
use crate::cluster::group_config::MAX_GROUPS_WITH_CONFIGS;
use crate::cluster::topic_config::render;
use crate::log::LogConfig;

/// The topic config that allows electing a leader from outside the ISR.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";
/// The topic config (and dynamic cluster default) that decides when replicas leaving the ISR become eligible
/// leader replicas.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The `server.properties` values the controller decides with, as the quorum leader sets them.
pub const CONTROLLER_STATIC_CONFIGS: [&str; 2] =
    [MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION_ENABLE];
/// The longest value of one of them a command may carry (an integer or a boolean).
const MAX_STATIC_CONFIG_VALUE: usize = 32;

/// The values of [`CONTROLLER_STATIC_CONFIGS`] in `log` (a node's static config) that differ from Kafka's
/// defaults: what this node writes as the controller's static configs while it leads the quorum.
pub fn controller_static_configs_of(log: &LogConfig) -> BTreeMap<String, String> {
    let defaults = LogConfig::default();
    CONTROLLER_STATIC_CONFIGS
        .iter()
        .filter_map(|&name| {
            let value = render(log, name)?;
            (Some(&value) != render(&defaults, name).as_ref()).then(|| (name.to_string(), value))
        })
        .collect()
}

/// Most topics, and partitions in all, one migration may bring (a single node holds far fewer in
/// practice): the command and its records stay bounded.
pub const MAX_IMPORTED_TOPICS: usize = 100_000;
pub const MAX_IMPORTED_PARTITIONS: u64 = 1_000_000;

impl Writer<'_> {
    pub(super) fn alter_topic_configs(
        &mut self,
        topic: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        if self.state.topic(topic).is_none() {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{topic}' does not exist."),
            ));
        }
        check_config_count(configs)?;
        self.replace_configs(ConfigResourceType::Topic, topic, configs);
        Ok(())
    }

    pub(super) fn alter_broker_configs(
        &mut self,
        scope: BrokerConfigScope,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let name = match scope {
            BrokerConfigScope::ClusterDefault => String::new(),
            BrokerConfigScope::Broker(id) if id >= 0 => id.to_string(),
            BrokerConfigScope::Broker(id) => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Invalid broker id {id}"),
                ));
            }
        };
        check_config_count(configs)?;
        if !self.state.broker_configs.contains_key(&name)
            && self.state.broker_configs.len() > super::cluster_control::MAX_BROKERS
        {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Too many brokers have dynamic configs.",
            ));
        }
        self.replace_configs(ConfigResourceType::Broker, &name, configs);
        Ok(())
    }

    pub(super) fn alter_group_configs(
        &mut self,
        group: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        check_config_count(configs)?;
        if !configs.is_empty()
            && !self.state.group_configs.contains_key(group)
            && self.state.group_configs.len() >= MAX_GROUPS_WITH_CONFIGS
        {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("at most {MAX_GROUPS_WITH_CONFIGS} groups may have configs"),
            ));
        }
        self.replace_configs(ConfigResourceType::Group, group, configs);
        Ok(())
    }

    /// Replaces the static configs the controller decides with (the quorum leader's own, written when it
    /// starts leading): only the names it decides with, each at most [`MAX_STATIC_CONFIG_VALUE`] bytes.
    pub(super) fn set_controller_static_configs(
        &mut self,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        if let Some((name, _)) = configs.iter().find(|(name, value)| {
            !CONTROLLER_STATIC_CONFIGS.contains(&name.as_str())
                || value.len() > MAX_STATIC_CONFIG_VALUE
        }) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "{name}: the controller's static configs are {} only, each at most \
                     {MAX_STATIC_CONFIG_VALUE} bytes",
                    CONTROLLER_STATIC_CONFIGS.join(" and ")
                ),
            ));
        }
        if *configs != self.state.controller_static_configs {
            self.write(MetadataRecord::ControllerStaticConfigs(
                ControllerStaticConfigsRecord {
                    configs: configs.clone(),
                },
            ));
        }
        Ok(())
    }

    /// Writes the records that turn the resource's configs into `configs`: deletions, then sets.
    fn replace_configs(
        &mut self,
        resource_type: ConfigResourceType,
        resource_name: &str,
        configs: &BTreeMap<String, String>,
    ) {
        let current = self
            .state
            .configs_of(resource_type)
            .get(resource_name)
            .cloned()
            .unwrap_or_default();
        let record = |name: &str, value: Option<&String>| {
            MetadataRecord::Config(ConfigRecord {
                resource_type,
                resource_name: resource_name.to_string(),
                name: name.to_string(),
                value: value.cloned(),
            })
        };
        for name in current.keys().filter(|k| !configs.contains_key(*k)) {
            self.write(record(name, None));
        }
        for (name, value) in configs {
            if current.get(name) != Some(value) {
                self.write(record(name, Some(value)));
            }
        }
    }

    /// Brings a single node's metadata into the cluster before any broker has registered: its topics keep
    /// their ids and leader epochs, with `node_id` as their only replica, ISR and leader (the node registers
    /// afterwards and finds its partitions as it left them). A large store comes in several commands
    /// ([`ControllerCommand::import_single_node`]): each adds topics that are new and configs (never
    /// removing one), and moves the producer id counter forward only.
    pub(super) fn import_single_node(
        &mut self,
        node_id: i32,
        topics: &[ImportedTopic],
        broker_configs: &BTreeMap<String, String>,
        cluster_default_broker_configs: &BTreeMap<String, String>,
        group_configs: &BTreeMap<String, BTreeMap<String, String>>,
        next_producer_id: i64,
    ) -> Result<(), ApiError> {
        self.state
            .check_import(node_id, topics, group_configs, next_producer_id)?;
        for configs in [broker_configs, cluster_default_broker_configs]
            .into_iter()
            .chain(group_configs.values())
        {
            check_config_count(configs)?;
        }
        for topic in topics {
            self.write(MetadataRecord::Topic(TopicRecord {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
            }));
            self.merge_configs(ConfigResourceType::Topic, &topic.name, &topic.configs);
            for partition_id in 0..topic.partitions {
                let epoch = topic
                    .leader_epochs
                    .get(partition_id as usize)
                    .copied()
                    .unwrap_or(0);
                self.write(MetadataRecord::Partition(PartitionRecord {
                    partition_id,
                    topic_id: topic.topic_id,
                    replicas: vec![node_id],
                    isr: vec![node_id],
                    removing_replicas: Vec::new(),
                    adding_replicas: Vec::new(),
                    leader: node_id,
                    leader_recovery_state: LeaderRecoveryState::Recovered,
                    leader_epoch: epoch,
                    // As the single-node store counts it: one partition change per leader epoch.
                    partition_epoch: epoch,
                    eligible_leader_replicas: Vec::new(),
                    last_known_elr: Vec::new(),
                }));
            }
        }
        let node = node_id.to_string();
        self.merge_configs(ConfigResourceType::Broker, &node, broker_configs);
        self.merge_configs(
            ConfigResourceType::Broker,
            "",
            cluster_default_broker_configs,
        );
        for (group, configs) in group_configs {
            self.merge_configs(ConfigResourceType::Group, group, configs);
        }
        if next_producer_id > self.state.next_producer_id {
            self.write(MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: node_id,
                broker_epoch: -1,
                next_producer_id,
            }));
        }
        Ok(())
    }

    /// Writes the records that set `configs` on the resource, leaving its other configs alone.
    fn merge_configs(
        &mut self,
        resource_type: ConfigResourceType,
        resource_name: &str,
        configs: &BTreeMap<String, String>,
    ) {
        let mut merged = self
            .state
            .configs_of(resource_type)
            .get(resource_name)
            .cloned()
            .unwrap_or_default();
        merged.extend(configs.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.replace_configs(resource_type, resource_name, &merged);
    }
}

impl ControllerState {
    pub(super) fn configs_of(
        &self,
        resource_type: ConfigResourceType,
    ) -> &BTreeMap<String, BTreeMap<String, String>> {
        match resource_type {
            ConfigResourceType::Topic => &self.topic_configs,
            ConfigResourceType::Broker => &self.broker_configs,
            ConfigResourceType::Group => &self.group_configs,
        }
    }

    /// An import fits: no broker has registered yet, its topics are new and well formed, and the totals
    /// stay bounded.
    fn check_import(
        &self,
        node_id: i32,
        topics: &[ImportedTopic],
        group_configs: &BTreeMap<String, BTreeMap<String, String>>,
        next_producer_id: i64,
    ) -> Result<(), ApiError> {
        let invalid = |m: String| Err(ApiError::new(ResponseError::InvalidRequest, m));
        if !self.brokers.is_empty() {
            return invalid(
                "A single node's metadata can only be imported before any broker registers.".into(),
            );
        }
        if node_id < 0 || next_producer_id < 0 {
            return invalid(format!(
                "Invalid node id {node_id} or next producer id {next_producer_id}"
            ));
        }
        let partitions = self
            .topics
            .values()
            .map(|t| t.partitions.len() as u64)
            .chain(
                topics
                    .iter()
                    .map(|t| u64::try_from(t.partitions).unwrap_or(0)),
            )
            .fold(0u64, u64::saturating_add);
        if self.topics.len() + topics.len() > MAX_IMPORTED_TOPICS
            || partitions > MAX_IMPORTED_PARTITIONS
            || self.group_configs.len() + group_configs.len() > MAX_GROUPS_WITH_CONFIGS
        {
            return invalid("Too many topics or group configs to import.".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        for topic in topics {
            let partitions = usize::try_from(topic.partitions).unwrap_or(usize::MAX);
            if crate::cluster::topic_name::validate(&topic.name).is_err()
                || topic.topic_id.is_nil()
                || self.topics_by_name.contains_key(&topic.name)
                || self.topics.contains_key(&topic.topic_id)
                || !names.insert(topic.name.as_str())
                || !ids.insert(topic.topic_id)
                || partitions == 0
                || partitions > MAX_PARTITIONS_PER_REQUEST as usize
                || topic.leader_epochs.len() > partitions
                || topic.leader_epochs.iter().any(|&e| e < 0)
            {
                return invalid(format!(
                    "Cannot import topic {} ({})",
                    topic.name, topic.topic_id
                ));
            }
            check_config_count(&topic.configs)?;
        }
        Ok(())
    }

    /// Kafka's `uncleanLeaderElectionEnabledForTopic`: the topic's override, else the cluster-wide dynamic
    /// default, else the quorum leader's `server.properties` ([`Self::controller_config`]), else false.
    pub fn unclean_election_enabled(&self, topic: &str) -> bool {
        self.controller_config(topic, UNCLEAN_LEADER_ELECTION_ENABLE)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A topic config the controller decides with, as Kafka's `ConfigurationControlManager` resolves it: the
    /// topic's override, the cluster-wide dynamic default, then the static config of the controller in force
    /// (here the value the current quorum leader wrote with [`ControllerCommand::SetControllerStaticConfigs`],
    /// so that every node decides alike).
    ///
    /// [`ControllerCommand::SetControllerStaticConfigs`]: super::ControllerCommand::SetControllerStaticConfigs
    fn controller_config(&self, topic: &str, name: &str) -> Option<&String> {
        self.topic_configs
            .get(topic)
            .and_then(|c| c.get(name))
            .or_else(|| self.broker_configs.get("").and_then(|c| c.get(name)))
            .or_else(|| self.controller_static_configs.get(name))
    }

    /// The static configs the quorum leader last wrote (empty: Kafka's defaults).
    pub fn controller_static_configs(&self) -> &BTreeMap<String, String> {
        &self.controller_static_configs
    }

    /// [`Self::effective_min_isr`] of a topic, by its replication factor (its first partition's, as Kafka).
    pub(super) fn min_isr(&self, topic: &super::state::TopicState) -> usize {
        let factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
        self.effective_min_isr(&topic.name, factor)
    }

    /// Kafka's `getTopicEffectiveMinIsr`: the topic's `min.insync.replicas`, else the cluster-wide dynamic
    /// default, else the quorum leader's `server.properties`, else Kafka's default 1; at most the replication
    /// factor.
    pub fn effective_min_isr(&self, topic: &str, replication_factor: usize) -> usize {
        let configured = self
            .controller_config(topic, MIN_INSYNC_REPLICAS)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        configured.min(replication_factor.max(1))
    }
}
