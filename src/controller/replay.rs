//! Replaying records into the state (Kafka's managers' `replay` methods): the only way the state changes.
//! A record that does not fit the state is a bug of whoever wrote it (records are written only by
//! [`ControllerState::apply`], which checks first), so misfits are asserted, not answered.

use super::records::{
    BrokerRegistrationChangeRecord, ConfigRecord, ConfigResourceType, MetadataRecord,
    NO_LEADER_CHANGE, PartitionChangeRecord, PartitionRecord, RegisterBrokerRecord,
};
use super::state::{Changes, ControllerState, PartitionState, RegisteredBroker, TopicState};

impl ControllerState {
    /// Applies one record, noting in `changes` what it touched for the command's delta.
    pub(super) fn replay(&mut self, record: &MetadataRecord, changes: &mut Changes) {
        match record {
            MetadataRecord::ClusterId(r) => {
                assert!(
                    self.cluster_id.is_none(),
                    "invariant: the cluster id is set once"
                );
                self.cluster_id = Some(r.cluster_id.clone());
            }
            MetadataRecord::RegisterBroker(r) => self.replay_register_broker(r, changes),
            MetadataRecord::UnregisterBroker(r) => {
                let removed = self.brokers.remove(&r.broker_id);
                assert!(
                    removed.is_some_and(|b| b.epoch == r.broker_epoch),
                    "invariant: unregistered broker {} was registered at epoch {}",
                    r.broker_id,
                    r.broker_epoch
                );
                changes.broker_removed(r.broker_id);
            }
            MetadataRecord::BrokerRegistrationChange(r) => {
                self.replay_registration_change(r, changes)
            }
            MetadataRecord::Topic(r) => {
                assert!(
                    !self.topics.contains_key(&r.topic_id)
                        && !self.topics_by_name.contains_key(&r.name),
                    "invariant: topic {} ({}) is new",
                    r.name,
                    r.topic_id
                );
                changes.topic(self, r.topic_id);
                self.topics.insert(
                    r.topic_id,
                    TopicState {
                        name: r.name.clone(),
                        id: r.topic_id,
                        partitions: Vec::new(),
                    },
                );
                self.topics_by_name.insert(r.name.clone(), r.topic_id);
            }
            MetadataRecord::Partition(r) => self.replay_partition(r, changes),
            MetadataRecord::PartitionChange(r) => self.replay_partition_change(r, changes),
            MetadataRecord::RemoveTopic(r) => {
                changes.topic(self, r.topic_id);
                let topic = self
                    .topics
                    .remove(&r.topic_id)
                    .expect("invariant: a removed topic exists");
                self.topics_by_name.remove(&topic.name);
                self.topic_configs.remove(&topic.name);
            }
            MetadataRecord::Config(r) => self.replay_config(r, changes),
            MetadataRecord::ProducerIds(r) => {
                assert!(
                    r.next_producer_id > self.next_producer_id,
                    "invariant: producer id blocks only move forward ({} after {})",
                    r.next_producer_id,
                    self.next_producer_id
                );
                self.next_producer_id = r.next_producer_id;
            }
            MetadataRecord::ControllerStaticConfigs(r) => {
                self.controller_static_configs = r.configs.clone();
            }
        }
    }

    fn replay_register_broker(&mut self, r: &RegisterBrokerRecord, changes: &mut Changes) {
        changes.broker(r.broker_id);
        self.brokers.insert(
            r.broker_id,
            RegisteredBroker {
                id: r.broker_id,
                incarnation_id: r.incarnation_id,
                epoch: r.broker_epoch,
                endpoints: r.end_points.clone(),
                rack: r.rack.clone(),
                fenced: r.fenced,
                in_controlled_shutdown: r.in_controlled_shutdown,
            },
        );
    }

    fn replay_registration_change(
        &mut self,
        r: &BrokerRegistrationChangeRecord,
        changes: &mut Changes,
    ) {
        let broker = self
            .brokers
            .get_mut(&r.broker_id)
            .filter(|b| b.epoch == r.broker_epoch)
            .expect("invariant: a registration change names a registered broker epoch");
        if let Some(fenced) = r.fenced {
            broker.fenced = fenced;
        }
        if let Some(shutting_down) = r.in_controlled_shutdown {
            broker.in_controlled_shutdown = shutting_down;
        }
        changes.broker(r.broker_id);
    }

    fn replay_partition(&mut self, r: &PartitionRecord, changes: &mut Changes) {
        changes.topic(self, r.topic_id);
        let topic = self
            .topics
            .get_mut(&r.topic_id)
            .expect("invariant: a partition record names an existing topic");
        assert_eq!(
            usize::try_from(r.partition_id).ok(),
            Some(topic.partitions.len()),
            "invariant: partitions are created in order"
        );
        topic.partitions.push(PartitionState {
            replicas: r.replicas.clone(),
            isr: r.isr.clone(),
            removing_replicas: r.removing_replicas.clone(),
            adding_replicas: r.adding_replicas.clone(),
            leader: r.leader,
            leader_recovery_state: r.leader_recovery_state,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            elr: r.eligible_leader_replicas.clone(),
            last_known_elr: r.last_known_elr.clone(),
        });
    }

    /// Any leader value starts a new leader epoch; every change starts a new partition epoch.
    fn replay_partition_change(&mut self, r: &PartitionChangeRecord, changes: &mut Changes) {
        changes.topic(self, r.topic_id);
        let partition = self
            .topics
            .get_mut(&r.topic_id)
            .and_then(|t| t.partitions.get_mut(usize::try_from(r.partition_id).ok()?))
            .expect("invariant: a partition change names an existing partition");
        let (leader_epoch, partition_epoch) = (partition.leader_epoch, partition.partition_epoch);
        if r.leader != NO_LEADER_CHANGE {
            partition.leader = r.leader;
            partition.leader_epoch += 1;
        }
        if let Some(isr) = &r.isr {
            partition.isr = isr.clone();
        }
        if let Some(replicas) = &r.replicas {
            partition.replicas = replicas.clone();
        }
        if let Some(removing) = &r.removing_replicas {
            partition.removing_replicas = removing.clone();
        }
        if let Some(adding) = &r.adding_replicas {
            partition.adding_replicas = adding.clone();
        }
        if let Some(state) = r.leader_recovery_state {
            partition.leader_recovery_state = state;
        }
        if let Some(elr) = &r.eligible_leader_replicas {
            partition.elr = elr.clone();
        }
        if let Some(last_known) = &r.last_known_elr {
            partition.last_known_elr = last_known.clone();
        }
        partition.partition_epoch += 1;
        assert!(
            partition.leader_epoch >= leader_epoch && partition.partition_epoch > partition_epoch,
            "invariant: epochs only grow"
        );
    }

    fn replay_config(&mut self, r: &ConfigRecord, changes: &mut Changes) {
        let map = match r.resource_type {
            ConfigResourceType::Topic => {
                if let Some(&id) = self.topics_by_name.get(&r.resource_name) {
                    changes.topic(self, id);
                }
                &mut self.topic_configs
            }
            ConfigResourceType::Broker => {
                changes.broker_configs_changed();
                &mut self.broker_configs
            }
            ConfigResourceType::Group => &mut self.group_configs,
        };
        match &r.value {
            Some(value) => {
                map.entry(r.resource_name.clone())
                    .or_default()
                    .insert(r.name.clone(), value.clone());
            }
            None => {
                if let Some(configs) = map.get_mut(&r.resource_name) {
                    configs.remove(&r.name);
                    if configs.is_empty() {
                        map.remove(&r.resource_name);
                    }
                }
            }
        }
    }
}
