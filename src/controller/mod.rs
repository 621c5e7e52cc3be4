//! The cluster's replicated state machine (Kafka's QuorumController and its managers): pure and
//! deterministic, no I/O, no clock, no raft. The quorum hands it each committed command with its log index
//! ([`ControllerState::apply`] / [`ControllerState::apply_bytes`]); it decides the command into Kafka's
//! metadata records ([`records`]), replays them into its state, answers with Kafka's error codes, and
//! returns the [`crate::cluster::MetadataDelta`] the broker's image needs. Snapshots are the whole state.
//!
//! - `replay`: records into the state, the only way it changes
//! - `cluster_control`: broker registration, fencing, controlled shutdown (ClusterControlManager)
//! - `replication_control`: topics and partitions (ReplicationControlManager)
//! - `election`, `reassignment`: ElectLeaders, Alter/ListPartitionReassignments (ReplicationControlManager)
//! - `change`: the broker store's `MetadataChange`s as commands, answers as the store's results
//! - `alter_partition`: a leader's ISR changes, completing reassignments (AlterPartition)
//! - `partition_change`: one partition's change and leader election (PartitionChangeBuilder)
//! - `placement`: where replicas go (StripedReplicaPlacer)
//! - `config_control`: topic, broker and group configs, single-node migration (ConfigurationControlManager)
//! - `state_machine`: the quorum's view: bytes in and out, deltas published, state shared with readers
//! - `heartbeat`: which command a broker's heartbeat calls for (BrokerHeartbeatManager's state machine)
//! - `producer_id_control`: producer id blocks (ProducerIdControlManager)
//! - `quorum_controller`: this broker's handle on the quorum (commits, heartbeats, session expiry)
//! - `broker_sessions`: the active controller's soft state about brokers (sessions, applied offsets)
//! - `broker_lifecycle`: this broker's registration, heartbeats and controlled shutdown
//! - `leader_balancer`: the active controller's periodic preferred leader elections (auto.leader.rebalance.enable)

mod alter_partition;
pub mod alter_partition_manager;
pub mod broker_lifecycle;
pub mod broker_sessions;
mod change;
mod cluster_control;
pub mod command;
mod config_control;
mod election;
pub mod heartbeat;
pub mod leader_balancer;
pub mod member;
pub mod partition_change;
pub mod placement;
mod producer_id_control;
pub mod quorum_controller;
mod reassignment;
pub mod records;
mod replay;
mod replication_control;
pub mod state;
pub mod state_machine;

#[cfg(test)]
mod tests;

pub use cluster_control::{MAX_BROKERS, MAX_ENDPOINTS};
pub use command::{ApiError, ControllerCommand, ControllerResponse};
pub use config_control::UNCLEAN_LEADER_ELECTION_ENABLE;
pub use records::MetadataRecord;
pub use replication_control::{
    MAX_CONFIGS_PER_RESOURCE, MAX_PARTITIONS_PER_REQUEST, MAX_TOPICS_PER_REQUEST,
};
pub use state::{Applied, ControllerState, PartitionState, RegisteredBroker, TopicState};
pub use state_machine::{ControllerReader, ControllerStateMachine, DeltaPublisher};
