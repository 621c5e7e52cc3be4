//! The records of the metadata log (Kafka's `__cluster_metadata` records, `metadata/src/main/resources/common/
//! metadata/*.json`), with Kafka's names and fields. A command is decided into records against the current
//! state; the records are then replayed into the state, the only way the state changes (as Kafka's
//! controller does), so deciding and replaying are tested apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `PartitionChangeRecord.Leader`: the leader does not change.
pub const NO_LEADER_CHANGE: i32 = -2;

/// One listener of a broker as registered (`RegisterBrokerRecord.EndPoints`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's `SecurityProtocol` by name (`PLAINTEXT`, `SASL_SSL`, ...).
    pub security_protocol: String,
}

/// A broker's registration (`RegisterBrokerRecord`, api key 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    /// The log index of the registration that started this incarnation.
    pub broker_epoch: i64,
    pub end_points: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

/// `UnregisterBrokerRecord` (api key 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterBrokerRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

/// `TopicRecord` (api key 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: Uuid,
}

pub use crate::cluster::image::LeaderRecoveryState;

/// A new partition, whole (`PartitionRecord`, api key 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub partition_id: i32,
    pub topic_id: Uuid,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub leader: i32,
    pub leader_recovery_state: LeaderRecoveryState,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// KIP-966 `EligibleLeaderReplicas` (PartitionRecord v2): replicas that left the ISR while it was below
    /// min ISR, so they hold every committed record. Absent in records and snapshots of older brooks.
    #[serde(default)]
    pub eligible_leader_replicas: Vec<i32>,
    /// KIP-966 `LastKnownElr`: the last leader, kept while the partition has neither ISR nor ELR.
    #[serde(default)]
    pub last_known_elr: Vec<i32>,
}

/// Which kind of resource a [`ConfigRecord`] configures (Kafka's `ConfigResource.Type` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResourceType {
    Topic = 2,
    Broker = 4,
    Group = 32,
}

/// One config set or (value `None`) deleted (`ConfigRecord`, api key 4). A broker resource is named by its
/// id, the cluster default by "".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub resource_type: ConfigResourceType,
    pub resource_name: String,
    pub name: String,
    pub value: Option<String>,
}

/// A change of an existing partition (`PartitionChangeRecord`, api key 5): every field left `None` (the
/// leader at [`NO_LEADER_CHANGE`]) is unchanged. Any leader value, the current one included, starts a new
/// leader epoch; every record starts a new partition epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub partition_id: i32,
    pub topic_id: Uuid,
    pub isr: Option<Vec<i32>>,
    pub leader: i32,
    pub replicas: Option<Vec<i32>>,
    pub removing_replicas: Option<Vec<i32>>,
    pub adding_replicas: Option<Vec<i32>>,
    pub leader_recovery_state: Option<LeaderRecoveryState>,
    /// KIP-966 (PartitionChangeRecord v2); `None` leaves it as it is.
    #[serde(default)]
    pub eligible_leader_replicas: Option<Vec<i32>>,
    #[serde(default)]
    pub last_known_elr: Option<Vec<i32>>,
}

impl PartitionChangeRecord {
    /// A record that changes nothing yet.
    pub fn new(topic_id: Uuid, partition_id: i32) -> PartitionChangeRecord {
        PartitionChangeRecord {
            partition_id,
            topic_id,
            isr: None,
            leader: NO_LEADER_CHANGE,
            replicas: None,
            removing_replicas: None,
            adding_replicas: None,
            leader_recovery_state: None,
            eligible_leader_replicas: None,
            last_known_elr: None,
        }
    }

    /// True when replaying it would change nothing but the partition epoch (Kafka does not write those).
    pub fn is_no_op(&self) -> bool {
        self.isr.is_none()
            && self.leader == NO_LEADER_CHANGE
            && self.replicas.is_none()
            && self.removing_replicas.is_none()
            && self.adding_replicas.is_none()
            && self.leader_recovery_state.is_none()
            && self.eligible_leader_replicas.is_none()
            && self.last_known_elr.is_none()
    }
}

/// `RemoveTopicRecord` (api key 9): the topic, its partitions and its configs go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveTopicRecord {
    pub topic_id: Uuid,
}

/// The next producer id block starts at `next_producer_id` (`ProducerIdsRecord`, api key 15); the block
/// before it went to `broker_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdsRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub next_producer_id: i64,
}

/// `BrokerRegistrationChangeRecord.Fenced` / `InControlledShutdown` as tri-states (Kafka encodes them as
/// -1/0/1 bytes): `None` leaves the flag as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistrationChangeRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub fenced: Option<bool>,
    pub in_controlled_shutdown: Option<bool>,
}

/// The cluster's id, written once (brook's own record: Kafka keeps the cluster id in `meta.properties`, set
/// by `kafka-storage format`; a brook cluster agrees on it through the log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdRecord {
    pub cluster_id: String,
}

/// The static configs the controller decides with (brook's own record: Kafka's active controller reads its
/// own `server.properties`; a brook node decides from the log, so the quorum leader writes its values here
/// when it starts leading).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerStaticConfigsRecord {
    pub configs: BTreeMap<String, String>,
}

/// Every record the controller writes, tagged by Kafka's record name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    ClusterId(ClusterIdRecord),
    RegisterBroker(RegisterBrokerRecord),
    UnregisterBroker(UnregisterBrokerRecord),
    Topic(TopicRecord),
    Partition(PartitionRecord),
    Config(ConfigRecord),
    PartitionChange(PartitionChangeRecord),
    RemoveTopic(RemoveTopicRecord),
    ProducerIds(ProducerIdsRecord),
    BrokerRegistrationChange(BrokerRegistrationChangeRecord),
    ControllerStaticConfigs(ControllerStaticConfigsRecord),
}
