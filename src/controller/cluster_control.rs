//! Brokers joining, fencing, shutting down and leaving (Kafka's `ClusterControlManager` and the broker
//! handlers of `ReplicationControlManager`). Liveness (heartbeats, session timeouts) is soft state of the
//! active controller, not here: it proposes FenceBroker / UnfenceBroker / BeginControlledShutdown when a
//! broker's session expires, catches up, or asks to stop.

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::command::{ApiError, BrokerRegistered, ControlledShutdown};
use super::partition_change::{Election, PartitionChangeBuilder};
use super::records::{
    BrokerEndpoint, BrokerRegistrationChangeRecord, ClusterIdRecord, MetadataRecord,
    RegisterBrokerRecord, UnregisterBrokerRecord,
};
use super::state::{NO_LEADER, Writer};

/// Most listeners one broker may register.
pub const MAX_ENDPOINTS: usize = 64;
/// Most brokers one cluster may register: every broker is in memory on every node.
pub const MAX_BROKERS: usize = 10_000;

/// Which partitions a leader and ISR update looks at.
#[derive(Clone, Copy)]
enum Partitions {
    /// Those with this broker in the ISR.
    WithInIsr(i32),
    /// Those with this broker in the ISR or among the eligible leader replicas.
    WithInIsrOrElr(i32),
    /// Those without a leader.
    Leaderless,
}

impl Writer<'_> {
    pub(super) fn initialize_cluster(&mut self, cluster_id: &str) -> String {
        if self.state.cluster_id.is_none() {
            self.write(MetadataRecord::ClusterId(ClusterIdRecord {
                cluster_id: cluster_id.to_string(),
            }));
        }
        self.state
            .cluster_id
            .clone()
            .expect("invariant: the cluster id was just set")
    }

    /// Kafka's `registerBroker`: the epoch is the log index of the registration that starts an incarnation;
    /// the same incarnation registering again keeps its epoch and flags. A new incarnation starts fenced and
    /// leaves every ISR it was in. If its previous epoch is not the one registered, its last stop was not
    /// clean (or its disk is new): it may have lost what it had not flushed, so it leaves every ELR too
    /// (`handleBrokerUncleanShutdown`). A clean restart keeps its eligibility.
    pub(super) fn register_broker(
        &mut self,
        broker_id: i32,
        incarnation_id: Uuid,
        cluster_id: &str,
        endpoints: &[BrokerEndpoint],
        rack: &Option<String>,
        previous_broker_epoch: i64,
    ) -> Result<BrokerRegistered, ApiError> {
        let expected = self.state.cluster_id.as_deref().unwrap_or("");
        if expected != cluster_id {
            return Err(ApiError::new(
                ResponseError::InconsistentClusterId,
                format!("Expected cluster ID {expected}, but got cluster ID {cluster_id}"),
            ));
        }
        if broker_id < 0 {
            return Err(ApiError::new(
                ResponseError::InvalidRegistration,
                format!("Invalid broker id {broker_id}"),
            ));
        }
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(ApiError::new(
                ResponseError::InvalidRegistration,
                format!("At most {MAX_ENDPOINTS} listeners may be registered"),
            ));
        }
        let existing = self.state.brokers.get(&broker_id).cloned();
        if existing.is_none() && self.state.brokers.len() >= MAX_BROKERS {
            return Err(ApiError::new(
                ResponseError::InvalidRegistration,
                format!("At most {MAX_BROKERS} brokers may be registered"),
            ));
        }
        let (epoch, fenced, in_controlled_shutdown) = match &existing {
            Some(b) if b.incarnation_id == incarnation_id => {
                (b.epoch, b.fenced, b.in_controlled_shutdown)
            }
            _ => (self.broker_epoch(), true, false),
        };
        // A first registration (or one after an unregistration) has no ISR or ELR to leave. (A node whose
        // single-node metadata was imported leads its partitions as they were.)
        if let Some(old) = existing.filter(|b| b.incarnation_id != incarnation_id) {
            if old.epoch == previous_broker_epoch {
                // The old incarnation stopped cleanly: it leads nothing and leaves the ISRs as a fenced
                // broker does, staying eligible where the ISR was below min ISR.
                self.update_leaders_and_isrs(
                    Some(broker_id),
                    None,
                    Partitions::WithInIsr(broker_id),
                );
            } else {
                self.update_leaders_and_isrs(
                    Some(broker_id),
                    Some(broker_id),
                    Partitions::WithInIsrOrElr(broker_id),
                );
            }
        }
        self.write(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id,
            incarnation_id,
            broker_epoch: epoch,
            end_points: endpoints.to_vec(),
            rack: rack.clone(),
            fenced,
            in_controlled_shutdown,
        }));
        Ok(BrokerRegistered {
            broker_epoch: epoch,
        })
    }

    /// A broker epoch is the index of the registration's log entry: positive, and new for each incarnation.
    fn broker_epoch(&self) -> i64 {
        i64::try_from(self.index).expect("invariant: log indexes fit an i64")
    }

    /// Kafka's `checkBrokerEpoch`.
    pub(super) fn check_broker_epoch(
        &self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ApiError> {
        match self.state.brokers.get(&broker_id) {
            None => Err(ApiError::new(
                ResponseError::StaleBrokerEpoch,
                format!("No broker registration found for broker id {broker_id}"),
            )),
            Some(b) if b.epoch != broker_epoch => Err(ApiError::new(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Expected broker epoch {}, but got broker epoch {broker_epoch}",
                    b.epoch
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Kafka's `handleBrokerFenced`: fenced, then out of every ISR, its leaderships elsewhere.
    pub(super) fn fence_broker(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ApiError> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        if !self.state.brokers[&broker_id].fenced {
            self.write(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id,
                    broker_epoch,
                    fenced: Some(true),
                    in_controlled_shutdown: None,
                },
            ));
        }
        self.update_leaders_and_isrs(Some(broker_id), None, Partitions::WithInIsr(broker_id));
        Ok(())
    }

    /// Kafka's `handleBrokerUnfenced`: unfenced, then every leaderless partition it can lead gets a leader.
    pub(super) fn unfence_broker(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ApiError> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        if self.state.brokers[&broker_id].fenced {
            self.write(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id,
                    broker_epoch,
                    fenced: Some(false),
                    in_controlled_shutdown: None,
                },
            ));
        }
        self.update_leaders_and_isrs(None, None, Partitions::Leaderless);
        Ok(())
    }

    /// Kafka's `handleBrokerInControlledShutdown`: marked, then out of every ISR (the last member stays, the
    /// partition leaderless), its leaderships elsewhere. Answers how many it still leads.
    pub(super) fn begin_controlled_shutdown(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<ControlledShutdown, ApiError> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        if !self.state.brokers[&broker_id].in_controlled_shutdown {
            self.write(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id,
                    broker_epoch,
                    fenced: None,
                    in_controlled_shutdown: Some(true),
                },
            ));
        }
        self.update_leaders_and_isrs(Some(broker_id), None, Partitions::WithInIsr(broker_id));
        let remaining = self
            .state
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader == broker_id)
            .count();
        Ok(ControlledShutdown {
            remaining_leaderships: u32::try_from(remaining).unwrap_or(u32::MAX),
        })
    }

    /// Kafka's `unregisterBroker`: out of every ISR, then forgotten.
    pub(super) fn unregister_broker(&mut self, broker_id: i32) -> Result<(), ApiError> {
        let Some(broker) = self.state.brokers.get(&broker_id) else {
            return Err(ApiError::new(
                ResponseError::BrokerIdNotRegistered,
                format!("Broker ID {broker_id} is not currently registered"),
            ));
        };
        let broker_epoch = broker.epoch;
        self.update_leaders_and_isrs(Some(broker_id), None, Partitions::WithInIsr(broker_id));
        self.write(MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id,
            broker_epoch,
        }));
        Ok(())
    }

    /// Kafka's `generateLeaderAndIsrUpdates`: `remove` leaves the ISRs and may not lead; every other broker
    /// may lead when active. (A broker being unfenced is already unfenced here: its record came first. One
    /// still in controlled shutdown stays ineligible, as Kafka's heartbeat manager never unfences it.)
    /// `unclean` (the same broker as `remove`) shut down uncleanly: it leaves the ELRs too.
    fn update_leaders_and_isrs(
        &mut self,
        remove: Option<i32>,
        unclean: Option<i32>,
        which: Partitions,
    ) {
        let targets: Vec<(uuid::Uuid, i32)> = self
            .state
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().enumerate().filter_map(move |(i, p)| {
                    let wanted = match which {
                        Partitions::WithInIsr(b) => p.isr.contains(&b),
                        Partitions::WithInIsrOrElr(b) => p.isr.contains(&b) || p.elr.contains(&b),
                        Partitions::Leaderless => p.leader == NO_LEADER,
                    };
                    wanted.then_some((t.id, i as i32))
                })
            })
            .collect();
        for (topic_id, partition_id) in targets {
            let record = {
                let state = &*self.state;
                let topic = &state.topics[&topic_id];
                let partition = &topic.partitions[partition_id as usize];
                let acceptable = |r: i32| Some(r) != remove && state.is_active(r);
                let isr: Vec<i32> = partition
                    .isr
                    .iter()
                    .copied()
                    .filter(|&r| Some(r) != remove)
                    .collect();
                let election = if state.unclean_election_enabled(&topic.name) {
                    Election::Unclean
                } else {
                    Election::Online
                };
                let builder = PartitionChangeBuilder::new(
                    partition,
                    topic_id,
                    partition_id,
                    &acceptable,
                    state.min_isr(topic),
                )
                .election(election)
                .target_isr(isr);
                match unclean {
                    Some(broker) => builder.unclean_shutdown(broker),
                    None => builder,
                }
                .build()
            };
            if let Some(record) = record {
                self.write(MetadataRecord::PartitionChange(record));
            }
        }
    }
}
