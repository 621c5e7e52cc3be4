//! What a node proposes to the controller ([`ControllerCommand`]) and what the state machine answers
//! ([`ControllerResponse`]), both serde so they cross the quorum as bytes. Proposers resolve defaults
//! (-1 partitions or replication factor) and check config values; the state machine checks everything that
//! depends on the state and answers with Kafka's error codes and messages.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::BrokerEndpoint;

/// A Kafka error code with its message (Kafka's `ApiError`); code 0 is success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error_code: i16,
    pub message: Option<String>,
}

impl ApiError {
    pub const NONE: ApiError = ApiError {
        error_code: 0,
        message: None,
    };

    pub fn new(error: ResponseError, message: impl Into<String>) -> ApiError {
        ApiError {
            error_code: error.code(),
            message: Some(message.into()),
        }
    }

    /// The error with the default message Kafka gives it (`Errors.X.message()`).
    pub fn of(error: ResponseError) -> ApiError {
        let message = match error {
            ResponseError::UnknownTopicOrPartition => {
                "This server does not host this topic-partition."
            }
            ResponseError::UnknownTopicId => "This server does not host this topic ID.",
            ResponseError::ElectionNotNeeded => "Leader election not needed for topic partition.",
            ResponseError::PreferredLeaderNotAvailable => "The preferred leader was not available.",
            ResponseError::EligibleLeadersNotAvailable => {
                "Eligible topic partition leaders are not available."
            }
            ResponseError::NoReassignmentInProgress => "No partition reassignment is in progress.",
            _ => return ApiError::new(error, error.to_string()),
        };
        ApiError::new(error, message)
    }

    /// The message a response carries: only for a failure (Kafka sends null with NONE).
    pub fn failure_message(self) -> Option<String> {
        self.message.filter(|_| self.error_code != 0)
    }

    pub fn is_ok(&self) -> bool {
        self.error_code == 0
    }

    /// The protocol's error, `None` on success.
    pub fn error(&self) -> Option<ResponseError> {
        ResponseError::try_from_code(self.error_code)
    }
}

/// A topic named by name or by id (DeleteTopics v6 takes either).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// A manual assignment of one partition's replicas, the preferred leader first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAssignment {
    pub partition_index: i32,
    pub broker_ids: Vec<i32>,
}

/// One topic of a CreateTopics (Kafka's `CreatableTopic` with its defaults resolved and its id chosen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// Chosen by the proposer (random there, so the state machine stays deterministic); never nil.
    pub topic_id: Uuid,
    /// Ignored (and must be -1) when `assignments` is not empty.
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Empty: the placer decides.
    pub assignments: Vec<ReplicaAssignment>,
    pub configs: BTreeMap<String, String>,
}

/// One topic of a CreatePartitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPartitions {
    pub topic: String,
    /// The new total partition count.
    pub count: i32,
    /// One replica list per new partition, or the placer decides.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// Whose dynamic broker configs an AlterBrokerConfigs replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerConfigScope {
    /// The cluster-wide default (resource name "").
    ClusterDefault,
    Broker(i32),
}

/// ElectLeaders' election type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

/// Partitions of one topic named by a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// One partition of an AlterPartitionReassignments: the target replicas, or `None` to cancel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignablePartition {
    pub partition_index: i32,
    pub replicas: Option<Vec<i32>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignableTopic {
    pub name: String,
    pub partitions: Vec<ReassignablePartition>,
}

/// A topic of the single-node store being migrated into a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedTopic {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    /// By partition; missing ones are 0.
    pub leader_epochs: Vec<i32>,
}

/// A state-changing request to the controller; each is applied at one index of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// The first one sets the cluster id; later ones change nothing and answer the id in force.
    InitializeCluster {
        cluster_id: String,
    },
    /// Migrates a single-node data directory (`brook-topics.json`, broker and group configs, the producer id
    /// block), possibly over several commands: accepted only before any broker has registered, for topics
    /// that are new; configs are added, never removed, and the producer id counter only moves forward.
    ImportSingleNode {
        node_id: i32,
        topics: Vec<ImportedTopic>,
        /// Per-broker overrides of `node_id`, and the cluster default.
        broker_configs: BTreeMap<String, String>,
        cluster_default_broker_configs: BTreeMap<String, String>,
        group_configs: BTreeMap<String, BTreeMap<String, String>>,
        next_producer_id: i64,
    },
    RegisterBroker {
        broker_id: i32,
        incarnation_id: Uuid,
        cluster_id: String,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
        /// BrokerRegistration v3's `previous_broker_epoch`: the epoch this broker held when it last stopped
        /// cleanly, -1 when it does not know (a crash, a new disk; commands of older brooks lack it).
        #[serde(default = "unknown_broker_epoch")]
        previous_broker_epoch: i64,
    },
    FenceBroker {
        broker_id: i32,
        broker_epoch: i64,
    },
    UnfenceBroker {
        broker_id: i32,
        broker_epoch: i64,
    },
    BeginControlledShutdown {
        broker_id: i32,
        broker_epoch: i64,
    },
    UnregisterBroker {
        broker_id: i32,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        topics: Vec<TopicRef>,
    },
    CreatePartitions {
        topics: Vec<NewPartitions>,
        validate_only: bool,
    },
    /// Replaces the topic's whole set of overrides.
    AlterTopicConfigs {
        topic: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces one scope's whole set of dynamic broker configs.
    AlterBrokerConfigs {
        scope: BrokerConfigScope,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the group's whole set of configs (empty: the group has none).
    AlterGroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    AllocateProducerIds {
        broker_id: i32,
        broker_epoch: i64,
    },
    ElectLeaders {
        election_type: ElectionType,
        /// `None`: every partition.
        partitions: Option<Vec<TopicPartitions>>,
    },
    AlterPartitionReassignments {
        topics: Vec<ReassignableTopic>,
        allow_replication_factor_change: bool,
    },
    /// Starts a new leader epoch with the same leader.
    BumpLeaderEpoch {
        topic: String,
        partition: i32,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition v2+, by topic id), which may complete a
    /// reassignment.
    AlterPartition {
        broker_id: i32,
        broker_epoch: i64,
        topics: Vec<AlterPartitionTopic>,
    },
    /// The quorum leader's static `min.insync.replicas` and `unclean.leader.election.enable` (only those set
    /// to other than Kafka's defaults), written when it starts leading and they differ from the state's:
    /// what the controller decides with below topic overrides and cluster-wide dynamic defaults.
    SetControllerStaticConfigs {
        configs: BTreeMap<String, String>,
    },
}

/// A registered broker's epoch (BrokerRegistration's answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistered {
    pub broker_epoch: i64,
}

/// What a broker entering controlled shutdown still leads (0: it may stop now).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlledShutdown {
    pub remaining_leaderships: u32,
}

/// A created (or, validate_only, creatable) topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatableTopicResult {
    pub name: String,
    pub result: Result<CreatedTopic, ApiError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletableTopicResult {
    /// Known when the request named it or the topic was found.
    pub name: Option<String>,
    /// Nil when the request named the topic by a name that does not exist.
    pub topic_id: Uuid,
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePartitionsTopicResult {
    pub name: String,
    pub error: ApiError,
}

/// A block of producer ids for one broker (Kafka's `ProducerIdsBlock`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdsBlock {
    pub assigned_broker_id: i32,
    pub first_producer_id: i64,
    pub size: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionResult {
    pub partition_id: i32,
    pub error: ApiError,
}

/// One topic's answers to ElectLeaders or AlterPartitionReassignments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitionResults {
    pub topic: String,
    pub partitions: Vec<PartitionResult>,
}

/// The answer to each [`ControllerCommand`], by the same name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    InitializeCluster {
        cluster_id: String,
    },
    ImportSingleNode(Result<(), ApiError>),
    RegisterBroker(Result<BrokerRegistered, ApiError>),
    FenceBroker(Result<(), ApiError>),
    UnfenceBroker(Result<(), ApiError>),
    BeginControlledShutdown(Result<ControlledShutdown, ApiError>),
    UnregisterBroker(Result<(), ApiError>),
    CreateTopics(Vec<CreatableTopicResult>),
    DeleteTopics(Vec<DeletableTopicResult>),
    CreatePartitions(Vec<CreatePartitionsTopicResult>),
    AlterTopicConfigs(Result<(), ApiError>),
    AlterBrokerConfigs(Result<(), ApiError>),
    AlterGroupConfigs(Result<(), ApiError>),
    AllocateProducerIds(Result<ProducerIdsBlock, ApiError>),
    ElectLeaders(Vec<TopicPartitionResults>),
    AlterPartitionReassignments(Vec<TopicPartitionResults>),
    /// The new leader epoch.
    BumpLeaderEpoch(Result<i32, ApiError>),
    AlterPartition(Result<Vec<AlterPartitionTopicResult>, ApiError>),
    SetControllerStaticConfigs(Result<(), ApiError>),
    /// The command's bytes did not decode (a proposer of another version, or a bug).
    Undecodable(ApiError),
}

/// One partition's ongoing reassignment (ListPartitionReassignments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OngoingPartitionReassignment {
    pub partition_index: i32,
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OngoingTopicReassignment {
    pub name: String,
    pub partitions: Vec<OngoingPartitionReassignment>,
}

/// One ISR member with the broker epoch its fetches carried (AlterPartition v3, KIP-903); -1: unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

/// One partition of an AlterPartition: the ISR its leader wants, at the epochs it knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionData {
    pub partition_index: i32,
    pub leader_epoch: i32,
    pub new_isr_with_epochs: Vec<BrokerState>,
    pub leader_recovery_state: super::records::LeaderRecoveryState,
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionTopic {
    pub topic_id: Uuid,
    pub partitions: Vec<AlterPartitionData>,
}

/// A partition's state after an AlterPartition (what the leader adopts), or why it was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionResult {
    pub partition_index: i32,
    pub error_code: i16,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub leader_recovery_state: super::records::LeaderRecoveryState,
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionTopicResult {
    pub topic_id: Uuid,
    pub partitions: Vec<AlterPartitionResult>,
}

impl ControllerCommand {
    /// The migration of a single node's metadata (topics with their ids, configs and leader epochs, dynamic
    /// broker configs, group configs, the producer id counter), in as few commands as fit
    /// `max_command_bytes` each (the quorum's limit on one command): the first carries the broker configs
    /// and the producer id counter, every one some topics and group configs (one larger than the limit alone
    /// gets a command of its own, which the quorum will refuse).
    pub fn import_single_node(
        node_id: i32,
        store: &crate::cluster::MetadataStore,
        max_command_bytes: usize,
    ) -> Vec<ControllerCommand> {
        let dynamic = store.broker_configs().get();
        let empty = |broker_configs, cluster_default_broker_configs, next_producer_id| {
            ControllerCommand::ImportSingleNode {
                node_id,
                topics: Vec::new(),
                broker_configs,
                cluster_default_broker_configs,
                group_configs: BTreeMap::new(),
                next_producer_id,
            }
        };
        let mut commands = vec![empty(
            dynamic.broker,
            dynamic.cluster_default,
            store.producer_ids().next_block_start(),
        )];
        let mut used = encoded_len(&commands[0]);
        let mut add = |commands: &mut Vec<ControllerCommand>, bytes: usize, item: ImportItem| {
            if used + bytes > max_command_bytes && !commands.last().is_some_and(is_empty_import) {
                commands.push(empty(BTreeMap::new(), BTreeMap::new(), 0));
                used = encoded_len(commands.last().expect("just pushed"));
            }
            used += bytes;
            if let Some(ControllerCommand::ImportSingleNode {
                topics,
                group_configs,
                ..
            }) = commands.last_mut()
            {
                match item {
                    ImportItem::Topic(topic) => topics.push(topic),
                    ImportItem::Group(group, configs) => {
                        group_configs.insert(group, configs);
                    }
                }
            }
        };
        for t in store.topics() {
            let topic = ImportedTopic {
                name: t.name.clone(),
                topic_id: t.id,
                partitions: t.partition_count(),
                configs: t.configs.clone(),
                leader_epochs: t.partitions.iter().map(|p| p.leader_epoch).collect(),
            };
            let bytes = encoded_len(&topic);
            add(&mut commands, bytes, ImportItem::Topic(topic));
        }
        for (group, configs) in store.group_configs().all() {
            let bytes = encoded_len(&(group.as_str(), &configs));
            add(&mut commands, bytes, ImportItem::Group(group, configs));
        }
        commands
    }
}

/// One piece of a single node's metadata being split over import commands.
enum ImportItem {
    Topic(ImportedTopic),
    Group(String, BTreeMap<String, String>),
}

/// An import command carrying no topic and no group config yet.
fn is_empty_import(command: &ControllerCommand) -> bool {
    matches!(command, ControllerCommand::ImportSingleNode { topics, group_configs, .. }
        if topics.is_empty() && group_configs.is_empty())
}

/// A value's encoded size, with a separator (to split an import under the quorum's command limit).
fn encoded_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len()) + 1
}

/// Kafka's "no previous broker epoch" (`previous_broker_epoch` = -1).
fn unknown_broker_epoch() -> i64 {
    -1
}
