//! The controller's whole state (Kafka's QuorumController managers' timeline data): brokers, topics with their
//! partitions, configs, the producer id counter and the cluster id. It changes only by replaying
//! [`MetadataRecord`]s; [`ControllerState::apply`] decides a command into records, replays each as it is
//! written, and returns the response with the [`MetadataDelta`] the broker's image needs.
//!
//! Deterministic: ordered maps only, no clock, no randomness but the placer's, seeded from the log index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{ApiError, ControllerCommand, ControllerResponse};
use super::records::{BrokerEndpoint, LeaderRecoveryState, MetadataRecord};
use crate::cluster::dynamic_config::DynamicConfigs;
use crate::cluster::image::{self, MetadataDelta, MetadataImage, TopicDelta, TopicImage};

/// Kafka's "no leader".
pub const NO_LEADER: i32 = -1;

/// A registered broker (Kafka's `BrokerRegistration` in ClusterControlManager).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredBroker {
    pub id: i32,
    pub incarnation_id: Uuid,
    pub epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl RegisteredBroker {
    /// May lead and join ISRs: unfenced and not shutting down (Kafka's `isActive`).
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// One partition (Kafka's `PartitionRegistration`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub leader: i32,
    pub leader_recovery_state: LeaderRecoveryState,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// KIP-966 eligible leader replicas: out of the ISR, yet holding every committed record (they left it
    /// while it was below min ISR, when the high watermark could not move). Snapshots of older brooks lack it.
    #[serde(default)]
    pub elr: Vec<i32>,
    /// KIP-966 `LastKnownElr`: the last leader once the ISR emptied, until the partition has a leader again.
    #[serde(default)]
    pub last_known_elr: Vec<i32>,
}

impl PartitionState {
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    fn to_image(&self) -> image::PartitionRegistration {
        image::PartitionRegistration {
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            adding_replicas: self.adding_replicas.clone(),
            removing_replicas: self.removing_replicas.clone(),
            leader_recovery_state: self.leader_recovery_state,
            elr: self.elr.clone(),
            last_known_elr: self.last_known_elr.clone(),
        }
    }
}

/// One topic (Kafka's `TopicControlInfo`); its configs live with the other configs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub name: String,
    pub id: Uuid,
    /// By partition id, dense from 0.
    pub partitions: Vec<PartitionState>,
}

/// The replicated state of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    pub(super) cluster_id: Option<String>,
    /// The index of the last command applied.
    pub(super) last_applied: u64,
    pub(super) brokers: BTreeMap<i32, RegisteredBroker>,
    pub(super) topics: BTreeMap<Uuid, TopicState>,
    pub(super) topics_by_name: BTreeMap<String, Uuid>,
    pub(super) topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// By resource name: a broker id, or "" for the cluster default.
    pub(super) broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    pub(super) group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The first id of the next producer id block.
    pub(super) next_producer_id: i64,
    /// `min.insync.replicas` and `unclean.leader.election.enable` from the quorum leader's `server.properties`
    /// (see `controller_config`); snapshots of older brooks lack it.
    #[serde(default)]
    pub(super) controller_static_configs: BTreeMap<String, String>,
}

/// What the records replayed for one command touched, to build its [`MetadataDelta`].
#[derive(Default)]
pub(super) struct Changes {
    /// Topics in the order first touched, with their image before the command (`None`: created by it).
    topics: Vec<(Uuid, Option<Arc<TopicImage>>)>,
    touched_topics: BTreeSet<Uuid>,
    brokers: Vec<i32>,
    removed_brokers: Vec<i32>,
    broker_configs_changed: bool,
}

/// The outcome of one applied command.
#[derive(Debug)]
pub struct Applied {
    pub response: ControllerResponse,
    /// The records written, in order (what Kafka would append to `__cluster_metadata`).
    pub records: Vec<MetadataRecord>,
    /// What changed for the broker's image.
    pub delta: MetadataDelta,
}

/// Writes records for one command: each is replayed at once, so later decisions of the same command see it.
pub(super) struct Writer<'a> {
    pub(super) state: &'a mut ControllerState,
    pub(super) index: u64,
    changes: Changes,
    records: Vec<MetadataRecord>,
}

impl Writer<'_> {
    pub(super) fn write(&mut self, record: MetadataRecord) {
        self.state.replay(&record, &mut self.changes);
        self.records.push(record);
    }
}

impl ControllerState {
    pub fn new() -> ControllerState {
        ControllerState::default()
    }

    /// Decides `command` at log `index` into records, replays them, and answers. Deterministic: every node
    /// applying the same commands at the same indexes reaches the same state and answers.
    pub fn apply(&mut self, index: u64, command: &ControllerCommand) -> Applied {
        assert!(
            index > self.last_applied || (index == 0 && self.last_applied == 0),
            "invariant: commands apply in log order ({index} after {})",
            self.last_applied
        );
        self.last_applied = index;
        let mut writer = Writer {
            state: self,
            index,
            changes: Changes::default(),
            records: Vec::new(),
        };
        let response = writer.execute(command);
        let Writer {
            changes, records, ..
        } = writer;
        let delta = self.delta(changes);
        Applied {
            response,
            records,
            delta,
        }
    }

    /// [`Self::apply`] over bytes, as the quorum hands commands over: returns the encoded response.
    pub fn apply_bytes(&mut self, index: u64, command: &[u8]) -> (Vec<u8>, MetadataDelta) {
        let (response, delta) = match serde_json::from_slice::<ControllerCommand>(command) {
            Ok(command) => {
                let applied = self.apply(index, &command);
                (applied.response, applied.delta)
            }
            Err(e) => {
                self.last_applied = self.last_applied.max(index);
                (
                    ControllerResponse::Undecodable(ApiError::new(
                        kafka_protocol::ResponseError::InvalidRequest,
                        format!("Undecodable controller command: {e}"),
                    )),
                    MetadataDelta::default(),
                )
            }
        };
        (encode(&response), delta)
    }

    /// The delta the changes made, against the images they recorded before.
    fn delta(&self, changes: Changes) -> MetadataDelta {
        let mut delta = MetadataDelta::default();
        for (id, before) in changes.topics {
            let after = self.topic_image(id).map(Arc::new);
            match (before, after) {
                (None, Some(after)) => delta.topics.push(TopicDelta::Created(after)),
                (Some(before), Some(after)) if before != after => {
                    delta.topics.push(TopicDelta::Changed { before, after })
                }
                (Some(before), None) => delta.topics.push(TopicDelta::Deleted(before)),
                _ => {}
            }
        }
        delta.brokers = changes
            .brokers
            .iter()
            .filter_map(|id| self.brokers.get(id))
            .map(|b| Arc::new(broker_image(b)))
            .collect();
        delta.removed_brokers = changes.removed_brokers;
        delta.broker_configs_changed = changes.broker_configs_changed;
        delta
    }

    /// One topic as the broker's image shows it, configs included.
    pub fn topic_image(&self, id: Uuid) -> Option<TopicImage> {
        let topic = self.topics.get(&id)?;
        Some(TopicImage {
            name: topic.name.clone(),
            id,
            partitions: topic
                .partitions
                .iter()
                .map(PartitionState::to_image)
                .collect(),
            configs: self
                .topic_configs
                .get(&topic.name)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The whole image (a node that restored a snapshot starts from it).
    pub fn image(&self) -> MetadataImage {
        let delta = MetadataDelta {
            topics: self
                .topics
                .keys()
                .filter_map(|&id| self.topic_image(id))
                .map(|t| TopicDelta::Created(Arc::new(t)))
                .collect(),
            brokers: self
                .brokers
                .values()
                .map(|b| Arc::new(broker_image(b)))
                .collect(),
            from_snapshot: true,
            ..Default::default()
        };
        MetadataImage::default().apply(&delta)
    }

    /// The whole state, encoded (the quorum's snapshot).
    pub fn snapshot(&self) -> Vec<u8> {
        encode(self)
    }

    /// The state a [`Self::snapshot`] holds, the quorum's log covering it up to `index` (which may be past
    /// the last command: the quorum's own entries have indexes too).
    pub fn restore(index: u64, snapshot: &[u8]) -> Result<ControllerState, String> {
        let state: ControllerState = serde_json::from_slice(snapshot)
            .map_err(|e| format!("corrupt controller snapshot: {e}"))?;
        if state.last_applied > index {
            return Err(format!(
                "controller snapshot has applied index {}, past its own index {index}",
                state.last_applied
            ));
        }
        let by_name: BTreeMap<String, Uuid> = state
            .topics
            .values()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        if by_name != state.topics_by_name {
            return Err("corrupt controller snapshot: topic names and ids disagree".into());
        }
        Ok(state)
    }

    /// What changes from this state's image to `next`'s (a node installing a snapshot while running).
    pub fn delta_to(&self, next: &ControllerState) -> MetadataDelta {
        MetadataDelta {
            broker_configs_changed: self.broker_configs != next.broker_configs,
            ..MetadataDelta::between(&self.image(), &next.image())
        }
    }

    /// Every topic by id.
    pub fn topics(&self) -> impl Iterator<Item = &TopicState> {
        self.topics.values()
    }

    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    pub fn broker(&self, id: i32) -> Option<&RegisteredBroker> {
        self.brokers.get(&id)
    }

    pub fn brokers(&self) -> impl Iterator<Item = &RegisteredBroker> {
        self.brokers.values()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicState> {
        self.topics.get(&id)
    }

    /// The dynamic broker configs as broker `node_id` applies them: its own overrides and the cluster default.
    pub fn dynamic_configs(&self, node_id: i32) -> DynamicConfigs {
        DynamicConfigs {
            broker: self
                .broker_configs
                .get(&node_id.to_string())
                .cloned()
                .unwrap_or_default(),
            cluster_default: self.broker_configs.get("").cloned().unwrap_or_default(),
        }
    }

    /// Every group's configs, by group.
    pub fn all_group_configs(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.group_configs
    }

    /// A group's configs (empty when it has none).
    pub fn group_configs(&self, group: &str) -> BTreeMap<String, String> {
        self.group_configs.get(group).cloned().unwrap_or_default()
    }

    /// The first producer id the next block will hand out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// True while `id` is registered, unfenced and not shutting down.
    pub(super) fn is_active(&self, id: i32) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(RegisteredBroker::is_active)
    }
}

impl Changes {
    pub(super) fn topic(&mut self, state: &ControllerState, id: Uuid) {
        if self.touched_topics.insert(id) {
            self.topics.push((id, state.topic_image(id).map(Arc::new)));
        }
    }

    pub(super) fn broker(&mut self, id: i32) {
        if !self.brokers.contains(&id) {
            self.brokers.push(id);
        }
    }

    pub(super) fn broker_removed(&mut self, id: i32) {
        self.brokers.retain(|&b| b != id);
        self.removed_brokers.push(id);
    }

    pub(super) fn broker_configs_changed(&mut self) {
        self.broker_configs_changed = true;
    }
}

fn broker_image(broker: &RegisteredBroker) -> image::BrokerRegistration {
    image::BrokerRegistration {
        id: broker.id,
        epoch: broker.epoch,
        endpoints: broker
            .endpoints
            .iter()
            .map(|e| image::BrokerEndpoint {
                listener: e.name.clone(),
                security_protocol: e.security_protocol.clone(),
                host: e.host.clone(),
                port: e.port,
            })
            .collect(),
        rack: broker.rack.clone(),
        fenced: broker.fenced,
        in_controlled_shutdown: broker.in_controlled_shutdown,
    }
}

/// JSON of a value that is always encodable (no maps with non-string keys, no floats).
pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("invariant: controller values encode as JSON")
}

impl Writer<'_> {
    /// Decides one command (each manager's method writes its records) and answers it.
    fn execute(&mut self, command: &ControllerCommand) -> ControllerResponse {
        use ControllerCommand as C;
        use ControllerResponse as R;
        match command {
            C::InitializeCluster { cluster_id } => R::InitializeCluster {
                cluster_id: self.initialize_cluster(cluster_id),
            },
            C::ImportSingleNode {
                node_id,
                topics,
                broker_configs,
                cluster_default_broker_configs,
                group_configs,
                next_producer_id,
            } => R::ImportSingleNode(self.import_single_node(
                *node_id,
                topics,
                broker_configs,
                cluster_default_broker_configs,
                group_configs,
                *next_producer_id,
            )),
            C::RegisterBroker {
                broker_id,
                incarnation_id,
                cluster_id,
                endpoints,
                rack,
                previous_broker_epoch,
            } => R::RegisterBroker(self.register_broker(
                *broker_id,
                *incarnation_id,
                cluster_id,
                endpoints,
                rack,
                *previous_broker_epoch,
            )),
            C::FenceBroker {
                broker_id,
                broker_epoch,
            } => R::FenceBroker(self.fence_broker(*broker_id, *broker_epoch)),
            C::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => R::UnfenceBroker(self.unfence_broker(*broker_id, *broker_epoch)),
            C::BeginControlledShutdown {
                broker_id,
                broker_epoch,
            } => R::BeginControlledShutdown(
                self.begin_controlled_shutdown(*broker_id, *broker_epoch),
            ),
            C::UnregisterBroker { broker_id } => {
                R::UnregisterBroker(self.unregister_broker(*broker_id))
            }
            C::CreateTopics {
                topics,
                validate_only,
            } => R::CreateTopics(self.create_topics(topics, *validate_only)),
            C::DeleteTopics { topics } => R::DeleteTopics(self.delete_topics(topics)),
            C::CreatePartitions {
                topics,
                validate_only,
            } => R::CreatePartitions(self.create_partitions(topics, *validate_only)),
            C::AlterTopicConfigs { topic, configs } => {
                R::AlterTopicConfigs(self.alter_topic_configs(topic, configs))
            }
            C::AlterBrokerConfigs { scope, configs } => {
                R::AlterBrokerConfigs(self.alter_broker_configs(*scope, configs))
            }
            C::AlterGroupConfigs { group, configs } => {
                R::AlterGroupConfigs(self.alter_group_configs(group, configs))
            }
            C::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => R::AllocateProducerIds(self.allocate_producer_ids(*broker_id, *broker_epoch)),
            C::ElectLeaders {
                election_type,
                partitions,
            } => R::ElectLeaders(self.elect_leaders(*election_type, partitions.as_deref())),
            C::AlterPartitionReassignments {
                topics,
                allow_replication_factor_change,
            } => R::AlterPartitionReassignments(
                self.alter_partition_reassignments(topics, *allow_replication_factor_change),
            ),
            C::BumpLeaderEpoch { topic, partition } => {
                R::BumpLeaderEpoch(self.bump_leader_epoch(topic, *partition))
            }
            C::AlterPartition {
                broker_id,
                broker_epoch,
                topics,
            } => R::AlterPartition(self.alter_partition(*broker_id, *broker_epoch, topics)),
            C::SetControllerStaticConfigs { configs } => {
                R::SetControllerStaticConfigs(self.set_controller_static_configs(configs))
            }
        }
    }
}
