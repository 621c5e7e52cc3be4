//! The controller as the metadata quorum drives it: committed commands in as bytes with their log index,
//! responses out as bytes, each change's [`MetadataDelta`] handed to the broker's publish path, and the
//! state shared with readers (the API layer's cluster id, configs, reassignment listings).
//!
//! The quorum calls it from one task at a time; readers take the read lock briefly and never wait for I/O
//! (there is none here).

use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::state::ControllerState;
use crate::cluster::MetadataDelta;

/// Receives each delta in log order, with the state it leads to (read-locked: the publisher may read
/// through a [`ControllerReader`] too). The broker mirrors the configs from the state, then publishes the
/// delta (`MetadataStore::mirror_configs`, `MetadataStore::publish_delta`).
pub type DeltaPublisher = Box<dyn FnMut(&ControllerState, &MetadataDelta) + Send>;

/// A shared, read-only view of the controller's state.
#[derive(Clone)]
pub struct ControllerReader(Arc<RwLock<ControllerState>>);

impl ControllerReader {
    /// The state as of the last applied command. Hold the guard briefly: the quorum waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ControllerState> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct ControllerStateMachine {
    state: Arc<RwLock<ControllerState>>,
    publish: DeltaPublisher,
}

impl ControllerStateMachine {
    /// An empty state; every delta from now on goes to `publish`.
    pub fn new(publish: DeltaPublisher) -> ControllerStateMachine {
        ControllerStateMachine {
            state: Arc::new(RwLock::new(ControllerState::new())),
            publish,
        }
    }

    pub fn reader(&self) -> ControllerReader {
        ControllerReader(self.state.clone())
    }

    /// Applies one committed command (the quorum's `StateMachine::apply`) and publishes its delta.
    pub fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let (response, delta) = self.write().apply_bytes(index, command);
        self.publish(&delta);
        response
    }

    /// The whole state (the quorum's `StateMachine::snapshot`).
    pub fn snapshot(&self) -> Vec<u8> {
        self.reader().read().snapshot()
    }

    /// Replaces the state with a snapshot taken at `index` and publishes what that changed.
    pub fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String> {
        let next = ControllerState::restore(index, snapshot)?;
        let delta = {
            let mut state = self.write();
            let delta = state.delta_to(&next);
            *state = next;
            delta
        };
        self.publish(&delta);
        Ok(())
    }

    /// Hands a non-empty delta to the publisher under the read lock: the state cannot move meanwhile (only
    /// this machine writes it, and the quorum calls it one command at a time).
    fn publish(&mut self, delta: &MetadataDelta) {
        if is_empty(delta) {
            return;
        }
        let state = self.state.clone();
        let state = state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (self.publish)(&state, delta);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ControllerState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn is_empty(delta: &MetadataDelta) -> bool {
    delta.topics.is_empty()
        && delta.brokers.is_empty()
        && delta.removed_brokers.is_empty()
        && !delta.broker_configs_changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MetadataImage;
    use crate::controller::command::{ControllerCommand, NewTopic, TopicRef};
    use crate::controller::records::BrokerEndpoint;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use uuid::Uuid;

    fn bytes(command: &ControllerCommand) -> Vec<u8> {
        serde_json::to_vec(command).unwrap()
    }

    fn commands() -> Vec<ControllerCommand> {
        let topic = |name: &str, id: u128| NewTopic {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
            num_partitions: 2,
            replication_factor: 1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        };
        vec![
            ControllerCommand::InitializeCluster {
                cluster_id: "c".into(),
            },
            ControllerCommand::RegisterBroker {
                broker_id: 1,
                incarnation_id: Uuid::from_u128(1),
                cluster_id: "c".into(),
                endpoints: vec![BrokerEndpoint {
                    name: "PLAINTEXT".into(),
                    host: "localhost".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: None,
                previous_broker_epoch: -1,
            },
            ControllerCommand::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 2,
            },
            ControllerCommand::CreateTopics {
                topics: vec![topic("a", 10), topic("b", 11)],
                validate_only: false,
            },
            ControllerCommand::DeleteTopics {
                topics: vec![TopicRef::Name("a".into())],
            },
            ControllerCommand::CreateTopics {
                topics: vec![topic("c", 12)],
                validate_only: false,
            },
        ]
    }

    /// A state machine whose deltas build an image, as the broker's publish path does.
    fn machine() -> (ControllerStateMachine, Arc<Mutex<MetadataImage>>) {
        let image = Arc::new(Mutex::new(MetadataImage::default()));
        let sink = image.clone();
        let machine = ControllerStateMachine::new(Box::new(move |state, delta| {
            let mut image = sink.lock().unwrap();
            *image = image.apply(delta);
            // The publisher sees the state the delta leads to.
            assert_eq!(image.topics().len(), state.topics().count());
        }));
        (machine, image)
    }

    #[test]
    fn a_lagging_node_installing_a_snapshot_publishes_what_changed() {
        let (mut leader, leader_image) = machine();
        let (mut lagging, lagging_image) = machine();
        for (i, command) in commands().iter().enumerate() {
            leader.apply(i as u64 + 1, &bytes(command));
            if i < 4 {
                lagging.apply(i as u64 + 1, &bytes(command));
            }
        }
        assert!(lagging_image.lock().unwrap().topic("a").is_some());
        // The snapshot's index may be past the last command (the quorum's own entries).
        lagging.restore(9, &leader.snapshot()).unwrap();
        assert_eq!(*lagging.reader().read(), *leader.reader().read());
        let (a, b) = (lagging_image.lock().unwrap(), leader_image.lock().unwrap());
        assert_eq!(a.topics(), b.topics());
        assert!(a.topic("a").is_none());
        assert_eq!(a.brokers().count(), 1);
        assert_eq!(lagging.reader().read().cluster_id(), Some("c"));
    }
}
