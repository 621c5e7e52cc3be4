//! The state machine's behaviour, command by command, as a cluster would drive it.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::command::*;
use super::records::BrokerEndpoint;
use super::state::{Changes, ControllerState, NO_LEADER, PartitionState};
use super::{Applied, MetadataRecord};
use crate::cluster::{MetadataImage, TopicDelta};

const CLUSTER: &str = "brook-cluster-1";

/// A controller driven command by command, the image kept up to date from the deltas alone.
struct Harness {
    state: ControllerState,
    index: u64,
    image: MetadataImage,
    records: Vec<MetadataRecord>,
    epochs: BTreeMap<i32, i64>,
}

impl Harness {
    fn new() -> Harness {
        let mut h = Harness {
            state: ControllerState::new(),
            index: 0,
            image: MetadataImage::default(),
            records: Vec::new(),
            epochs: BTreeMap::new(),
        };
        h.apply(ControllerCommand::InitializeCluster {
            cluster_id: CLUSTER.into(),
        });
        h
    }

    /// A cluster of unfenced brokers, with racks when given.
    fn with_brokers(brokers: &[(i32, Option<&str>)]) -> Harness {
        let mut h = Harness::new();
        for &(id, rack) in brokers {
            h.register(id, rack);
            h.unfence(id);
        }
        h
    }

    fn apply(&mut self, command: ControllerCommand) -> Applied {
        self.index += 1;
        let applied = self.state.apply(self.index, &command);
        self.image = self.image.apply(&applied.delta);
        self.records.extend(applied.records.iter().cloned());
        applied
    }

    fn register(&mut self, id: i32, rack: Option<&str>) -> i64 {
        self.register_incarnation(id, Uuid::from_u128(id as u128 + 1), rack)
    }

    fn register_incarnation(&mut self, id: i32, incarnation: Uuid, rack: Option<&str>) -> i64 {
        self.register_with_previous_epoch(id, incarnation, rack, -1)
    }

    /// A registration that says which epoch the broker held when it last stopped cleanly (-1: unknown).
    fn register_with_previous_epoch(
        &mut self,
        id: i32,
        incarnation: Uuid,
        rack: Option<&str>,
        previous_broker_epoch: i64,
    ) -> i64 {
        let ControllerResponse::RegisterBroker(Ok(registered)) = self
            .apply(ControllerCommand::RegisterBroker {
                broker_id: id,
                incarnation_id: incarnation,
                cluster_id: CLUSTER.into(),
                endpoints: vec![BrokerEndpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092 + id as u16,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: rack.map(str::to_string),
                previous_broker_epoch,
            })
            .response
        else {
            panic!("broker {id} did not register");
        };
        self.epochs.insert(id, registered.broker_epoch);
        registered.broker_epoch
    }

    fn epoch(&self, id: i32) -> i64 {
        self.epochs[&id]
    }

    fn unfence(&mut self, id: i32) -> ControllerResponse {
        let broker_epoch = self.epoch(id);
        self.apply(ControllerCommand::UnfenceBroker {
            broker_id: id,
            broker_epoch,
        })
        .response
    }

    fn fence(&mut self, id: i32) -> ControllerResponse {
        let broker_epoch = self.epoch(id);
        self.apply(ControllerCommand::FenceBroker {
            broker_id: id,
            broker_epoch,
        })
        .response
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> Result<CreatedTopic, ApiError> {
        self.create_topic(new_topic(name, partitions, rf))
    }

    fn create_topic(&mut self, topic: NewTopic) -> Result<CreatedTopic, ApiError> {
        let ControllerResponse::CreateTopics(mut results) = self
            .apply(ControllerCommand::CreateTopics {
                topics: vec![topic],
                validate_only: false,
            })
            .response
        else {
            panic!("not a CreateTopics answer");
        };
        results.remove(0).result
    }

    fn create_assigned(
        &mut self,
        name: &str,
        assignments: &[&[i32]],
    ) -> Result<CreatedTopic, ApiError> {
        let mut topic = new_topic(name, -1, -1);
        topic.assignments = assignments
            .iter()
            .enumerate()
            .map(|(i, replicas)| ReplicaAssignment {
                partition_index: i as i32,
                broker_ids: replicas.to_vec(),
            })
            .collect();
        self.create_topic(topic)
    }

    fn partition(&self, name: &str, index: usize) -> PartitionState {
        self.state.topic(name).unwrap().partitions[index].clone()
    }

    fn elect(
        &mut self,
        election_type: ElectionType,
        partitions: Option<Vec<TopicPartitions>>,
    ) -> Vec<TopicPartitionResults> {
        let ControllerResponse::ElectLeaders(results) = self
            .apply(ControllerCommand::ElectLeaders {
                election_type,
                partitions,
            })
            .response
        else {
            panic!("not an ElectLeaders answer");
        };
        results
    }

    fn elect_one(&mut self, election_type: ElectionType, topic: &str, partition: i32) -> ApiError {
        let results = self.elect(
            election_type,
            Some(vec![TopicPartitions {
                topic: topic.into(),
                partitions: vec![partition],
            }]),
        );
        results[0].partitions[0].error.clone()
    }

    fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
        allow_rf_change: bool,
    ) -> ApiError {
        let ControllerResponse::AlterPartitionReassignments(results) = self
            .apply(ControllerCommand::AlterPartitionReassignments {
                topics: vec![ReassignableTopic {
                    name: topic.into(),
                    partitions: vec![ReassignablePartition {
                        partition_index: partition,
                        replicas: replicas.map(<[i32]>::to_vec),
                    }],
                }],
                allow_replication_factor_change: allow_rf_change,
            })
            .response
        else {
            panic!("not an AlterPartitionReassignments answer");
        };
        results[0].partitions[0].error.clone()
    }

    /// The image the deltas built equals the one the state builds whole.
    fn assert_image_matches_state(&self) {
        let whole = self.state.image();
        assert_eq!(self.image.topics(), whole.topics());
        let brokers = |i: &MetadataImage| i.brokers().cloned().collect::<Vec<_>>();
        assert_eq!(brokers(&self.image), brokers(&whole));
    }
}

fn new_topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
    NewTopic {
        name: name.into(),
        topic_id: Uuid::from_u128(0x1000 + crate_hash(name)),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
    }
}

fn crate_hash(name: &str) -> u128 {
    name.bytes()
        .fold(7u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b)))
}

fn code(error: &ApiError) -> Option<ResponseError> {
    error.error()
}

fn is(error: &ApiError, expected: ResponseError) -> bool {
    error.error_code == expected.code()
}

#[test]
fn the_same_commands_make_the_same_state_and_the_records_replay_to_it() {
    let run = || {
        let mut h = Harness::with_brokers(&[(1, Some("a")), (2, Some("b")), (3, Some("c"))]);
        h.create("orders", 6, 3).unwrap();
        h.create("events", 4, 2).unwrap();
        h.fence(2);
        h.elect(ElectionType::Preferred, None);
        h.unfence(2);
        h.reassign("events", 0, Some(&[3, 1]), true);
        h.apply(ControllerCommand::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: h.epoch(1),
        });
        h.apply(ControllerCommand::AlterTopicConfigs {
            topic: "orders".into(),
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        });
        h.apply(ControllerCommand::DeleteTopics {
            topics: vec![TopicRef::Name("events".into())],
        });
        h
    };
    let (a, b) = (run(), run());
    assert_eq!(a.state.snapshot(), b.state.snapshot());
    a.assert_image_matches_state();

    // Replaying the records alone (Kafka's replay path) reaches the same state.
    let mut replayed = ControllerState::new();
    for record in &a.records {
        replayed.replay(record, &mut Changes::default());
    }
    replayed.last_applied = a.state.last_applied;
    assert_eq!(replayed, a.state);
}

#[test]
fn topics_are_placed_over_racks_with_leaders_balanced() {
    let mut h = Harness::with_brokers(&[(1, Some("a")), (2, Some("b")), (3, Some("c"))]);
    let created = h.create("orders", 6, 3).unwrap();
    assert_eq!((created.num_partitions, created.replication_factor), (6, 3));
    let mut leaders = BTreeMap::new();
    for i in 0..6 {
        let p = h.partition("orders", i);
        assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(
            p.isr, p.replicas,
            "the ISR at creation is the placed replicas"
        );
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        *leaders.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    h.assert_image_matches_state();
    let image = h.image.topic("orders").unwrap();
    assert_eq!(
        image.partitions[0].replicas,
        h.partition("orders", 0).replicas
    );
}

#[test]
fn a_replication_factor_above_the_live_brokers_is_refused_with_kafkas_message() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None)]);
    h.fence(3);
    let error = h.create("orders", 1, 3).unwrap_err();
    assert_eq!(code(&error), Some(ResponseError::InvalidReplicationFactor));
    assert_eq!(
        error.message.as_deref(),
        Some(
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        )
    );
    assert!(h.state.topic("orders").is_none());
    let error = h.create("orders", 1, 0).unwrap_err();
    assert_eq!(code(&error), Some(ResponseError::InvalidReplicationFactor));
    let error = h.create("orders", 0, 1).unwrap_err();
    assert_eq!(code(&error), Some(ResponseError::InvalidPartitions));
}

#[test]
fn fencing_moves_leaderships_bumps_epochs_and_unfencing_reelects() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2], &[2, 1]]).unwrap();
    h.create_assigned("solo", &[&[1]]).unwrap();

    let fenced = h.apply(ControllerCommand::FenceBroker {
        broker_id: 1,
        broker_epoch: h.epoch(1),
    });
    assert_eq!(fenced.response, ControllerResponse::FenceBroker(Ok(())));
    let p0 = h.partition("orders", 0);
    assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
    assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
    let p1 = h.partition("orders", 1);
    assert_eq!((p1.leader, p1.isr.clone()), (2, vec![2]));
    assert_eq!(
        (p1.leader_epoch, p1.partition_epoch),
        (0, 1),
        "an ISR shrink keeps the leader epoch"
    );
    // Last replica standing: the ISR empties, broker 1 stays eligible (ELR), nobody leads.
    let solo = h.partition("solo", 0);
    assert_eq!(
        (
            solo.leader,
            solo.isr.clone(),
            solo.elr.clone(),
            solo.leader_epoch
        ),
        (NO_LEADER, vec![], vec![1], 1)
    );
    assert!(h.image.broker(1).unwrap().fenced);
    assert!(fenced.delta.brokers.iter().any(|b| b.id == 1 && b.fenced));
    assert_eq!(fenced.delta.topics.len(), 2, "both topics changed");
    assert!(matches!(fenced.delta.topics[0], TopicDelta::Changed { .. }));

    // Unfencing re-elects the leaderless partition; the others keep their leader until a preferred election.
    h.unfence(1);
    let solo = h.partition("solo", 0);
    assert_eq!(
        (
            solo.leader,
            solo.leader_epoch,
            solo.isr.clone(),
            solo.elr.clone()
        ),
        (1, 2, vec![1], vec![])
    );
    assert_eq!(h.partition("orders", 0).leader, 2);
    h.assert_image_matches_state();
}

#[test]
fn controlled_shutdown_moves_leaders_and_counts_what_is_left() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();
    h.create_assigned("solo", &[&[1]]).unwrap();
    let applied = h.apply(ControllerCommand::BeginControlledShutdown {
        broker_id: 1,
        broker_epoch: h.epoch(1),
    });
    assert_eq!(
        applied.response,
        ControllerResponse::BeginControlledShutdown(Ok(ControlledShutdown {
            remaining_leaderships: 0
        }))
    );
    assert!(h.state.broker(1).unwrap().in_controlled_shutdown);
    assert!(h.image.broker(1).unwrap().in_controlled_shutdown);
    let p0 = h.partition("orders", 0);
    assert_eq!(
        (p0.leader, p0.isr.clone(), p0.leader_epoch),
        (2, vec![2], 1)
    );
    let solo = h.partition("solo", 0);
    assert_eq!(
        (solo.leader, solo.isr.clone(), solo.elr.clone()),
        (NO_LEADER, vec![], vec![1]),
        "leaderless rather than blocking, the last member eligible"
    );
    // A broker in controlled shutdown gets no new replicas.
    let error = h.create("more", 1, 2).unwrap_err();
    assert_eq!(code(&error), Some(ResponseError::InvalidReplicationFactor));
    h.assert_image_matches_state();
}

#[test]
fn preferred_elections_answer_as_kafka_does() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2], &[2, 1]]).unwrap();
    assert!(is(
        &h.elect_one(ElectionType::Preferred, "orders", 0),
        ResponseError::ElectionNotNeeded
    ));

    h.fence(1);
    assert!(is(
        &h.elect_one(ElectionType::Preferred, "orders", 0),
        ResponseError::PreferredLeaderNotAvailable
    ));
    h.unfence(1);
    assert_eq!(h.partition("orders", 0).leader, 2);
    // Broker 1 is back but not in the ISR yet (the leader adds it through AlterPartition).
    assert!(is(
        &h.elect_one(ElectionType::Preferred, "orders", 0),
        ResponseError::PreferredLeaderNotAvailable
    ));

    // A restart (a new incarnation) moves leadership away; once the leader has taken the broker back into
    // the ISR, an election over every partition moves it back, and leaves out those needing none.
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2], &[2, 1]]).unwrap();
    h.apply(ControllerCommand::BeginControlledShutdown {
        broker_id: 1,
        broker_epoch: h.epoch(1),
    });
    h.register_incarnation(1, Uuid::from_u128(99), None);
    h.unfence(1);
    assert_eq!(h.partition("orders", 0).leader, 2);
    assert_eq!(h.alter_isr(2, "orders", 0, &[2, 1]).error_code, 0);
    let results = h.elect(ElectionType::Preferred, None);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].partitions.len(), 1, "{results:?}");
    assert_eq!(results[0].partitions[0].partition_id, 0);
    assert!(results[0].partitions[0].error.is_ok());
    assert_eq!(h.partition("orders", 0).leader, 1);

    let unknown = h.elect_one(ElectionType::Preferred, "nope", 0);
    assert!(is(&unknown, ResponseError::UnknownTopicOrPartition));
    assert_eq!(unknown.message.as_deref(), Some("No such topic as nope"));
    let unknown = h.elect_one(ElectionType::Preferred, "orders", 7);
    assert_eq!(
        unknown.message.as_deref(),
        Some("No such partition as orders-7")
    );
}

#[test]
fn unclean_elections_only_when_asked_or_configured() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();
    h.fence(2); // ISR [1]
    h.unfence(2);
    h.fence(1); // ISR stays [1], no leader: 2 is live but not in sync.
    assert_eq!(h.partition("orders", 0).leader, NO_LEADER);

    let error = h.elect_one(ElectionType::Unclean, "orders", 0);
    assert_eq!(code(&error), None, "{error:?}");
    let p = h.partition("orders", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    assert_eq!(
        p.leader_recovery_state,
        super::records::LeaderRecoveryState::Recovering
    );
    assert_eq!(
        h.image.topic("orders").unwrap().partitions[0].leader_recovery_state,
        super::records::LeaderRecoveryState::Recovering
    );
    assert!(is(
        &h.elect_one(ElectionType::Unclean, "orders", 0),
        ResponseError::ElectionNotNeeded
    ));
    // The new leader may not take others into the ISR before it has recovered, then says so.
    assert_eq!(
        h.alter_isr(2, "orders", 0, &[2, 1]).error_code,
        ResponseError::InvalidRequest.code(),
        "broker 1 is fenced: ineligible anyway, but RECOVERING with two members is refused first"
    );
    let mut recovered = h.partition("orders", 0);
    recovered.leader_recovery_state = super::records::LeaderRecoveryState::Recovered;
    let result = h.alter_partition(
        2,
        "orders",
        AlterPartitionData {
            partition_index: 0,
            leader_epoch: recovered.leader_epoch,
            new_isr_with_epochs: vec![super::command::BrokerState {
                broker_id: 2,
                broker_epoch: -1,
            }],
            leader_recovery_state: recovered.leader_recovery_state,
            partition_epoch: recovered.partition_epoch,
        },
    );
    assert_eq!(result.error_code, 0);
    assert_eq!(
        result.leader_recovery_state,
        super::records::LeaderRecoveryState::Recovered
    );

    h.fence(2);
    assert!(is(
        &h.elect_one(ElectionType::Unclean, "orders", 0),
        ResponseError::EligibleLeadersNotAvailable
    ));

    // With the topic config, fencing itself elects outside the ISR.
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    let mut topic = new_topic("lossy", -1, -1);
    topic.assignments = vec![ReplicaAssignment {
        partition_index: 0,
        broker_ids: vec![1, 2],
    }];
    topic.configs = BTreeMap::from([(super::UNCLEAN_LEADER_ELECTION_ENABLE.into(), "true".into())]);
    h.create_topic(topic).unwrap();
    h.fence(2);
    h.unfence(2);
    h.fence(1);
    assert_eq!(h.partition("lossy", 0).leader, 2);
}

#[test]
fn reassignments_add_complete_and_cancel() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();

    assert!(h.reassign("orders", 0, Some(&[2, 3]), false).is_ok());
    let p = h.partition("orders", 0);
    assert_eq!(p.replicas, vec![2, 3, 1]);
    assert_eq!(
        (p.adding_replicas.clone(), p.removing_replicas.clone()),
        (vec![3], vec![1])
    );
    assert_eq!(
        p.leader, 1,
        "the leader stays until the new replicas are in sync"
    );
    let listed = h.state.list_partition_reassignments(None);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].partitions[0].adding_replicas, vec![3]);
    assert_eq!(
        h.image.topic("orders").unwrap().partitions[0].adding_replicas,
        vec![3]
    );

    // Cancel: back to the original replicas, in the order the reassignment left them (Kafka's
    // `PartitionReassignmentRevert`: the replicas minus the adding ones).
    assert!(h.reassign("orders", 0, None, false).is_ok());
    let p = h.partition("orders", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2, 1], vec![1, 2], 1)
    );
    assert!(!p.is_reassigning());
    assert!(h.state.list_partition_reassignments(None).is_empty());
    let none = h.reassign("orders", 0, None, false);
    assert!(is(&none, ResponseError::NoReassignmentInProgress));

    // A reassignment the ISR already covers completes at once; dropping a replica bumps the leader epoch.
    let epoch = h.partition("orders", 0).leader_epoch;
    assert!(h.reassign("orders", 0, Some(&[2]), true).is_ok());
    let p = h.partition("orders", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2], vec![2], 2)
    );
    assert!(p.leader_epoch > epoch);

    let changed = h.reassign("orders", 0, Some(&[2, 3]), false);
    assert!(
        is(&changed, ResponseError::InvalidReplicationFactor),
        "{changed:?}"
    );
    let unknown = h.reassign("orders", 0, Some(&[9]), true);
    assert!(is(&unknown, ResponseError::InvalidReplicaAssignment));
    let twice = h.reassign("orders", 0, Some(&[3, 3]), true);
    assert!(is(&twice, ResponseError::InvalidReplicaAssignment));
    let missing = h.reassign("nope", 0, Some(&[1]), true);
    assert!(is(&missing, ResponseError::UnknownTopicOrPartition));
    h.assert_image_matches_state();
}

#[test]
fn producer_id_blocks_never_overlap_and_continue_after_the_migrated_value() {
    let mut h = Harness::new();
    h.apply(ControllerCommand::ImportSingleNode {
        node_id: 1,
        topics: Vec::new(),
        broker_configs: BTreeMap::new(),
        cluster_default_broker_configs: BTreeMap::new(),
        group_configs: BTreeMap::new(),
        next_producer_id: 3000,
    });
    h.register(1, None);
    h.register(2, None);
    let mut blocks = Vec::new();
    for broker in [1, 2, 1, 2] {
        let ControllerResponse::AllocateProducerIds(Ok(block)) = h
            .apply(ControllerCommand::AllocateProducerIds {
                broker_id: broker,
                broker_epoch: h.epoch(broker),
            })
            .response
        else {
            panic!("no block");
        };
        assert_eq!(block.assigned_broker_id, broker);
        blocks.push((
            block.first_producer_id,
            block.first_producer_id + i64::from(block.size),
        ));
    }
    assert_eq!(blocks[0].0, 3000);
    for pair in blocks.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "consecutive, never overlapping: {blocks:?}"
        );
    }
    let stale = h.apply(ControllerCommand::AllocateProducerIds {
        broker_id: 1,
        broker_epoch: h.epoch(1) + 1,
    });
    let ControllerResponse::AllocateProducerIds(Err(error)) = stale.response else {
        panic!("a stale epoch got a block");
    };
    assert_eq!(code(&error), Some(ResponseError::StaleBrokerEpoch));
    assert!(stale.records.is_empty());
}

#[test]
fn a_single_node_store_migrates_into_an_empty_cluster() {
    let mut h = Harness::new();
    let topic_id = Uuid::from_u128(42);
    let import = ControllerCommand::ImportSingleNode {
        node_id: 1,
        topics: vec![ImportedTopic {
            name: "orders".into(),
            topic_id,
            partitions: 3,
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            leader_epochs: vec![4, 0],
        }],
        broker_configs: BTreeMap::from([("log.retention.ms".into(), "5".into())]),
        cluster_default_broker_configs: BTreeMap::from([(
            "log.segment.bytes".into(),
            "1048576".into(),
        )]),
        group_configs: BTreeMap::from([(
            "g".into(),
            BTreeMap::from([("consumer.session.timeout.ms".into(), "50000".into())]),
        )]),
        next_producer_id: 2000,
    };
    let applied = h.apply(import.clone());
    assert_eq!(
        applied.response,
        ControllerResponse::ImportSingleNode(Ok(()))
    );
    assert!(applied.delta.broker_configs_changed);
    let topic = h.image.topic("orders").unwrap();
    assert_eq!(topic.id, topic_id);
    assert_eq!(topic.configs["cleanup.policy"], "compact");
    let epochs: Vec<i32> = topic.partitions.iter().map(|p| p.leader_epoch).collect();
    assert_eq!(epochs, vec![4, 0, 0]);
    assert!(
        topic
            .partitions
            .iter()
            .all(|p| p.leader == 1 && p.isr == vec![1])
    );
    assert_eq!(h.state.dynamic_configs(1).broker["log.retention.ms"], "5");
    assert_eq!(
        h.state.dynamic_configs(2).cluster_default["log.segment.bytes"],
        "1048576"
    );
    assert!(h.state.dynamic_configs(2).broker.is_empty());
    assert_eq!(
        h.state.group_configs("g")["consumer.session.timeout.ms"],
        "50000"
    );
    assert_eq!(h.state.next_producer_id(), 2000);

    // The node registers and unfences: its partitions are as it left them.
    h.register(1, None);
    h.unfence(1);
    assert_eq!(h.partition("orders", 0).leader_epoch, 4);
    assert_eq!(h.partition("orders", 0).leader, 1);

    let again = h.apply(import);
    let ControllerResponse::ImportSingleNode(Err(error)) = again.response else {
        panic!("imported twice");
    };
    assert_eq!(code(&error), Some(ResponseError::InvalidRequest));
    h.assert_image_matches_state();
}

#[test]
fn a_snapshot_restores_an_identical_state() {
    let mut h = Harness::with_brokers(&[(1, Some("a")), (2, Some("b")), (3, None)]);
    h.create("orders", 5, 2).unwrap();
    h.fence(3);
    h.apply(ControllerCommand::AlterGroupConfigs {
        group: "g".into(),
        configs: BTreeMap::from([("share.auto.offset.reset".into(), "earliest".into())]),
    });
    let snapshot = h.state.snapshot();
    let restored = ControllerState::restore(h.index, &snapshot).unwrap();
    assert_eq!(restored, h.state);
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.image().topics(), h.image.topics());
    assert!(ControllerState::restore(h.index - 1, &snapshot).is_err());
    assert_eq!(
        ControllerState::restore(h.index + 3, &snapshot).unwrap(),
        h.state
    );
    assert!(ControllerState::restore(h.index, b"{").is_err());

    // A restored node goes on exactly as the original.
    let mut restored = restored;
    let command = ControllerCommand::CreateTopics {
        topics: vec![new_topic("more", 4, 2)],
        validate_only: false,
    };
    h.index += 1;
    let a = h.state.apply(h.index, &command);
    let b = restored.apply(h.index, &command);
    assert_eq!(a.records, b.records);
    assert_eq!(restored, h.state);
}

#[test]
fn registration_epochs_follow_the_log_and_incarnations() {
    let mut h = Harness::new();
    let first = h.register(1, None);
    assert_eq!(
        first, h.index as i64,
        "the epoch is the registration's log index"
    );
    assert!(
        h.state.broker(1).unwrap().fenced,
        "a new registration starts fenced"
    );
    h.unfence(1);
    h.register(2, None);
    h.unfence(2);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();

    // The same incarnation again: same epoch, still unfenced.
    assert_eq!(h.register(1, None), first);
    assert!(!h.state.broker(1).unwrap().fenced);

    // A new incarnation: new epoch, fenced, out of the ISR, leadership moved.
    let second = h.register_incarnation(1, Uuid::from_u128(77), None);
    assert!(second > first);
    assert!(h.state.broker(1).unwrap().fenced);
    let p = h.partition("orders", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));

    let wrong = h.apply(ControllerCommand::RegisterBroker {
        broker_id: 3,
        incarnation_id: Uuid::from_u128(3),
        cluster_id: "other".into(),
        endpoints: Vec::new(),
        rack: None,
        previous_broker_epoch: -1,
    });
    let ControllerResponse::RegisterBroker(Err(error)) = wrong.response else {
        panic!("registered into the wrong cluster");
    };
    assert_eq!(code(&error), Some(ResponseError::InconsistentClusterId));
    assert_eq!(
        error.message.as_deref(),
        Some("Expected cluster ID brook-cluster-1, but got cluster ID other")
    );

    let stale = h.apply(ControllerCommand::UnfenceBroker {
        broker_id: 1,
        broker_epoch: first,
    });
    let ControllerResponse::UnfenceBroker(Err(error)) = stale.response else {
        panic!("a stale epoch unfenced");
    };
    assert_eq!(code(&error), Some(ResponseError::StaleBrokerEpoch));
    let ControllerResponse::FenceBroker(Err(error)) = h
        .apply(ControllerCommand::FenceBroker {
            broker_id: 9,
            broker_epoch: 1,
        })
        .response
    else {
        panic!("fenced an unknown broker");
    };
    assert_eq!(code(&error), Some(ResponseError::StaleBrokerEpoch));

    // Unregistering: out of the image, then unknown.
    let gone = h.apply(ControllerCommand::UnregisterBroker { broker_id: 2 });
    assert_eq!(gone.response, ControllerResponse::UnregisterBroker(Ok(())));
    assert_eq!(gone.delta.removed_brokers, vec![2]);
    assert!(h.image.broker(2).is_none());
    let ControllerResponse::UnregisterBroker(Err(error)) = h
        .apply(ControllerCommand::UnregisterBroker { broker_id: 2 })
        .response
    else {
        panic!("unregistered twice");
    };
    assert_eq!(code(&error), Some(ResponseError::BrokerIdNotRegistered));

    // The cluster id is set once.
    let ControllerResponse::InitializeCluster { cluster_id } = h
        .apply(ControllerCommand::InitializeCluster {
            cluster_id: "later".into(),
        })
        .response
    else {
        panic!("not an InitializeCluster answer");
    };
    assert_eq!(cluster_id, CLUSTER);
    h.assert_image_matches_state();
}

#[test]
fn topic_errors_use_kafkas_codes() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create("orders", 2, 2).unwrap();
    let exists = h.create("orders", 1, 1).unwrap_err();
    assert_eq!(code(&exists), Some(ResponseError::TopicAlreadyExists));
    assert_eq!(
        exists.message.as_deref(),
        Some("Topic 'orders' already exists.")
    );
    assert_eq!(
        code(&h.create("bad name", 1, 1).unwrap_err()),
        Some(ResponseError::InvalidTopicException)
    );
    h.create("a.b", 1, 1).unwrap();
    let collides = h.create("a_b", 1, 1).unwrap_err();
    assert_eq!(code(&collides), Some(ResponseError::InvalidTopicException));
    assert!(collides.message.unwrap().contains("collides"));

    for (assignment, why) in [
        (vec![vec![1, 9]], "no such broker"),
        (vec![vec![1, 1]], "more than once"),
        (vec![vec![]], "empty replica list"),
        (vec![vec![1, 2], vec![1]], "not consistent"),
    ] {
        let refs: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
        let error = h.create_assigned("manual", &refs).unwrap_err();
        assert_eq!(
            code(&error),
            Some(ResponseError::InvalidReplicaAssignment),
            "{why}"
        );
        assert!(error.message.unwrap().contains(why), "{why}");
    }
    let mut gap = new_topic("gap", -1, -1);
    gap.assignments = vec![ReplicaAssignment {
        partition_index: 1,
        broker_ids: vec![1],
    }];
    assert_eq!(
        code(&h.create_topic(gap).unwrap_err()),
        Some(ResponseError::InvalidReplicaAssignment)
    );

    let too_many = h
        .create("huge", (super::MAX_PARTITIONS_PER_REQUEST + 1) as i32, 1)
        .unwrap_err();
    assert_eq!(code(&too_many), Some(ResponseError::PolicyViolation));

    // validate_only answers without writing.
    let validated = h.apply(ControllerCommand::CreateTopics {
        topics: vec![new_topic("dry", 3, 2)],
        validate_only: true,
    });
    assert!(validated.records.is_empty());
    assert!(h.state.topic("dry").is_none());
}

#[test]
fn create_partitions_keeps_the_replication_factor_and_checks_the_count() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create("orders", 2, 2).unwrap();
    let grow = |h: &mut Harness, count: i32, assignments: Option<Vec<Vec<i32>>>| {
        let ControllerResponse::CreatePartitions(results) = h
            .apply(ControllerCommand::CreatePartitions {
                topics: vec![NewPartitions {
                    topic: "orders".into(),
                    count,
                    assignments,
                }],
                validate_only: false,
            })
            .response
        else {
            panic!("not a CreatePartitions answer");
        };
        results[0].error.clone()
    };
    assert!(grow(&mut h, 4, None).is_ok());
    assert_eq!(h.state.topic("orders").unwrap().partitions.len(), 4);
    assert_eq!(
        h.partition("orders", 3).replicas.len(),
        2,
        "the topic's replication factor"
    );
    let same = grow(&mut h, 4, None);
    assert_eq!(
        same.message.as_deref(),
        Some("Topic already has 4 partition(s).")
    );
    assert_eq!(
        code(&grow(&mut h, 3, None)),
        Some(ResponseError::InvalidPartitions)
    );
    assert_eq!(
        code(&grow(&mut h, 6, Some(vec![vec![1, 2]]))),
        Some(ResponseError::InvalidReplicaAssignment)
    );
    assert!(grow(&mut h, 5, Some(vec![vec![2, 1]])).is_ok());
    assert_eq!(h.partition("orders", 4).leader, 2);
    h.assert_image_matches_state();
}

#[test]
fn delete_topics_by_name_and_id() {
    let mut h = Harness::with_brokers(&[(1, None)]);
    h.create("orders", 2, 1).unwrap();
    h.create(crate::cluster::OFFSETS_TOPIC, 3, 1).unwrap();
    let ControllerResponse::DeleteTopics(results) = h
        .apply(ControllerCommand::DeleteTopics {
            topics: vec![TopicRef::Name(crate::cluster::OFFSETS_TOPIC.into())],
        })
        .response
    else {
        panic!("not a DeleteTopics answer");
    };
    assert_eq!(
        code(&results[0].error),
        Some(ResponseError::InvalidTopicException)
    );
    assert!(h.state.topic(crate::cluster::OFFSETS_TOPIC).is_some());

    let id = h.state.topic("orders").unwrap().id;
    let ControllerResponse::DeleteTopics(results) = h
        .apply(ControllerCommand::DeleteTopics {
            topics: vec![
                TopicRef::Id(id),
                TopicRef::Name("nope".into()),
                TopicRef::Id(Uuid::from_u128(5)),
            ],
        })
        .response
    else {
        panic!("not a DeleteTopics answer");
    };
    assert!(results[0].error.is_ok());
    assert_eq!(results[0].name.as_deref(), Some("orders"));
    assert_eq!(
        code(&results[1].error),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(code(&results[2].error), Some(ResponseError::UnknownTopicId));
    assert!(h.image.topic("orders").is_none());
    let ControllerResponse::BumpLeaderEpoch(Err(error)) = h
        .apply(ControllerCommand::BumpLeaderEpoch {
            topic: "orders".into(),
            partition: 0,
        })
        .response
    else {
        panic!("bumped a deleted topic");
    };
    assert_eq!(code(&error), Some(ResponseError::UnknownTopicOrPartition));
    h.assert_image_matches_state();
}

#[test]
fn configs_are_replaced_whole_and_reach_the_image() {
    let mut h = Harness::with_brokers(&[(1, None)]);
    h.create("orders", 1, 1).unwrap();
    let set = |h: &mut Harness, configs: &[(&str, &str)]| {
        h.apply(ControllerCommand::AlterTopicConfigs {
            topic: "orders".into(),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    };
    let applied = set(&mut h, &[("retention.ms", "1"), ("segment.bytes", "2048")]);
    assert!(matches!(
        applied.delta.topics[..],
        [TopicDelta::Changed { .. }]
    ));
    assert_eq!(h.image.topic("orders").unwrap().configs.len(), 2);
    set(&mut h, &[("retention.ms", "5")]);
    assert_eq!(
        h.image.topic("orders").unwrap().configs,
        BTreeMap::from([("retention.ms".to_string(), "5".to_string())])
    );
    let ControllerResponse::AlterTopicConfigs(Err(error)) = h
        .apply(ControllerCommand::AlterTopicConfigs {
            topic: "nope".into(),
            configs: BTreeMap::new(),
        })
        .response
    else {
        panic!("configured a missing topic");
    };
    assert_eq!(code(&error), Some(ResponseError::UnknownTopicOrPartition));

    let applied = h.apply(ControllerCommand::AlterBrokerConfigs {
        scope: BrokerConfigScope::ClusterDefault,
        configs: BTreeMap::from([("log.retention.ms".into(), "9".into())]),
    });
    assert!(applied.delta.broker_configs_changed);
    assert_eq!(
        h.state.dynamic_configs(1).cluster_default["log.retention.ms"],
        "9"
    );
    h.apply(ControllerCommand::AlterBrokerConfigs {
        scope: BrokerConfigScope::Broker(1),
        configs: BTreeMap::from([("log.retention.ms".into(), "3".into())]),
    });
    assert_eq!(h.state.dynamic_configs(1).broker["log.retention.ms"], "3");
    h.apply(ControllerCommand::AlterGroupConfigs {
        group: "g".into(),
        configs: BTreeMap::new(),
    });
    assert!(h.state.group_configs("g").is_empty());
    h.assert_image_matches_state();
}

#[test]
fn a_leader_epoch_bump_keeps_the_leader() {
    let mut h = Harness::with_brokers(&[(1, None)]);
    h.create("orders", 1, 1).unwrap();
    let applied = h.apply(ControllerCommand::BumpLeaderEpoch {
        topic: "orders".into(),
        partition: 0,
    });
    assert_eq!(applied.response, ControllerResponse::BumpLeaderEpoch(Ok(1)));
    let p = h.partition("orders", 0);
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 1, 1));
    assert_eq!(
        h.image.topic("orders").unwrap().partitions[0].leader_epoch,
        1
    );
}

#[test]
fn commands_cross_as_bytes_and_garbage_is_answered_not_applied() {
    let mut state = ControllerState::new();
    let command = serde_json::to_vec(&ControllerCommand::InitializeCluster {
        cluster_id: CLUSTER.into(),
    })
    .unwrap();
    let (response, _) = state.apply_bytes(1, &command);
    let response: ControllerResponse = serde_json::from_slice(&response).unwrap();
    assert_eq!(
        response,
        ControllerResponse::InitializeCluster {
            cluster_id: CLUSTER.into()
        }
    );
    let before = state.clone();
    let (response, delta) = state.apply_bytes(2, b"\xffnot a command");
    let response: ControllerResponse = serde_json::from_slice(&response).unwrap();
    assert!(
        matches!(response, ControllerResponse::Undecodable(ref e) if is(e, ResponseError::InvalidRequest))
    );
    assert!(delta.topics.is_empty());
    assert_eq!(state.cluster_id(), before.cluster_id());
    assert_eq!(state.last_applied(), 2);
}

impl Harness {
    /// The leader's AlterPartition for one partition, at the epochs the state has now.
    fn alter_isr(
        &mut self,
        leader: i32,
        topic: &str,
        partition: i32,
        isr: &[i32],
    ) -> AlterPartitionResult {
        let p = self.partition(topic, partition as usize);
        let data = AlterPartitionData {
            partition_index: partition,
            leader_epoch: p.leader_epoch,
            new_isr_with_epochs: isr
                .iter()
                .map(|&b| super::command::BrokerState {
                    broker_id: b,
                    broker_epoch: self.epochs.get(&b).copied().unwrap_or(-1),
                })
                .collect(),
            leader_recovery_state: p.leader_recovery_state,
            partition_epoch: p.partition_epoch,
        };
        self.alter_partition(leader, topic, data)
    }

    fn alter_partition(
        &mut self,
        leader: i32,
        topic: &str,
        data: AlterPartitionData,
    ) -> AlterPartitionResult {
        let topic_id = self
            .state
            .topic(topic)
            .map_or(Uuid::from_u128(404), |t| t.id);
        let ControllerResponse::AlterPartition(Ok(mut topics)) = self
            .apply(ControllerCommand::AlterPartition {
                broker_id: leader,
                broker_epoch: self.epoch(leader),
                topics: vec![AlterPartitionTopic {
                    topic_id,
                    partitions: vec![data],
                }],
            })
            .response
        else {
            panic!("AlterPartition refused whole");
        };
        topics.remove(0).partitions.remove(0)
    }
}

#[test]
fn alter_partition_expands_the_isr_and_a_preferred_election_follows() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();
    h.fence(1);
    h.unfence(1);
    let before = h.partition("orders", 0);
    assert_eq!((before.leader, before.isr.clone()), (2, vec![2]));

    let result = h.alter_isr(2, "orders", 0, &[2, 1]);
    assert_eq!(result.error_code, 0);
    assert_eq!((result.leader_id, result.isr.clone()), (2, vec![2, 1]));
    assert_eq!(result.partition_epoch, before.partition_epoch + 1);
    assert_eq!(
        result.leader_epoch, before.leader_epoch,
        "an ISR change keeps the leader epoch"
    );

    let imbalanced = h.state.imbalanced_partitions(100);
    assert_eq!(
        imbalanced,
        vec![TopicPartitions {
            topic: "orders".into(),
            partitions: vec![0]
        }]
    );
    assert!(h.elect_one(ElectionType::Preferred, "orders", 0).is_ok());
    assert_eq!(h.partition("orders", 0).leader, 1);
    assert!(h.state.imbalanced_partitions(100).is_empty());
    h.assert_image_matches_state();
}

#[test]
fn alter_partition_completes_a_reassignment_and_reports_the_new_leader() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();
    assert!(h.reassign("orders", 0, Some(&[2, 3]), false).is_ok());

    let result = h.alter_isr(1, "orders", 0, &[1, 2, 3]);
    assert_eq!(result.error_code, ResponseError::NewLeaderElected.code());
    let p = h.partition("orders", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2, 3], vec![2, 3], 2)
    );
    assert!(!p.is_reassigning());
    h.assert_image_matches_state();
}

#[test]
fn alter_partition_refusals_follow_kafkas_order() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None)]);
    h.create_assigned("orders", &[&[1, 2, 3]]).unwrap();
    h.alter_isr(1, "orders", 0, &[1, 2]); // epochs: leader 0, partition 1
    let p = h.partition("orders", 0);
    let data = |leader_epoch: i32, partition_epoch: i32, isr: &[i32]| AlterPartitionData {
        partition_index: 0,
        leader_epoch,
        new_isr_with_epochs: isr
            .iter()
            .map(|&b| super::command::BrokerState {
                broker_id: b,
                broker_epoch: -1,
            })
            .collect(),
        leader_recovery_state: super::records::LeaderRecoveryState::Recovered,
        partition_epoch,
    };
    let (le, pe) = (p.leader_epoch, p.partition_epoch);
    let cases = [
        (1, data(le + 1, pe, &[1]), ResponseError::NotController),
        (1, data(le, pe + 1, &[1]), ResponseError::NotController),
        (2, data(le, pe, &[2]), ResponseError::InvalidRequest),
        (
            1,
            data(le, pe - 1, &[1]),
            ResponseError::InvalidUpdateVersion,
        ),
        (1, data(le, pe, &[2, 3]), ResponseError::InvalidRequest),
        (1, data(le, pe, &[1, 9]), ResponseError::InvalidRequest),
        (1, data(le, pe, &[1, 1]), ResponseError::InvalidRequest),
    ];
    for (leader, request, expected) in cases {
        let result = h.alter_partition(leader, "orders", request.clone());
        assert_eq!(result.error_code, expected.code(), "{request:?}");
    }
    h.fence(3);
    let result = h.alter_partition(1, "orders", data(le, pe, &[1, 2, 3]));
    assert_eq!(result.error_code, ResponseError::IneligibleReplica.code());
    let mut stale = data(le, pe, &[1, 2]);
    stale.new_isr_with_epochs[1].broker_epoch = h.epoch(2) - 1;
    assert_eq!(
        h.alter_partition(1, "orders", stale).error_code,
        ResponseError::IneligibleReplica.code()
    );
    let result = h.alter_partition(1, "nope", data(0, 0, &[1]));
    assert_eq!(result.error_code, ResponseError::UnknownTopicId.code());

    // A fenced leader epoch: the partition moved on since.
    h.apply(ControllerCommand::BumpLeaderEpoch {
        topic: "orders".into(),
        partition: 0,
    });
    let result = h.alter_partition(1, "orders", data(le, pe + 1, &[1]));
    assert_eq!(result.error_code, ResponseError::FencedLeaderEpoch.code());

    let whole = h.apply(ControllerCommand::AlterPartition {
        broker_id: 1,
        broker_epoch: h.epoch(1) + 5,
        topics: Vec::new(),
    });
    let ControllerResponse::AlterPartition(Err(error)) = whole.response else {
        panic!("a stale broker epoch was accepted");
    };
    assert_eq!(code(&error), Some(ResponseError::StaleBrokerEpoch));
}

#[test]
fn a_reassignment_changed_midway_starts_from_the_current_replicas() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None), (4, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();
    assert!(h.reassign("orders", 0, Some(&[2, 3]), false).is_ok());
    // Now towards [2, 4]: 3 (still being added) and 1 leave, 4 joins.
    assert!(h.reassign("orders", 0, Some(&[2, 4]), false).is_ok());
    let p = h.partition("orders", 0);
    assert_eq!(p.replicas, vec![2, 4, 1, 3]);
    assert_eq!(
        (p.adding_replicas.clone(), p.removing_replicas.clone()),
        (vec![4], vec![1, 3])
    );
    // Back to where it started: the ISR covers it, so it completes at once.
    assert!(h.reassign("orders", 0, Some(&[1, 2]), false).is_ok());
    let p = h.partition("orders", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![1, 2], vec![1, 2], 1)
    );
    assert!(!p.is_reassigning());
    h.assert_image_matches_state();
}

/// Every partition's shape holds whatever happened: the ISR is within the replicas and empties only without
/// a leader, the ELR is within the replicas and apart from the ISR, the leader is active and in the ISR (or
/// there is none), reassignment lists are parts of the replicas.
fn assert_partition_invariants(state: &ControllerState) {
    for topic in state.topics() {
        for (i, p) in topic.partitions.iter().enumerate() {
            let at = format!("{}-{i}: {p:?}", topic.name);
            assert!(!p.isr.is_empty() || p.leader == NO_LEADER, "{at}");
            assert!(p.isr.iter().all(|r| p.replicas.contains(r)), "{at}");
            assert!(
                p.elr
                    .iter()
                    .all(|r| p.replicas.contains(r) && !p.isr.contains(r)),
                "{at}"
            );
            assert!(p.last_known_elr.len() <= 1, "{at}");
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), p.replicas.len(), "{at}");
            if p.leader != NO_LEADER {
                assert!(p.isr.contains(&p.leader), "{at}");
                assert!(
                    state.broker(p.leader).is_some_and(|b| b.is_active()),
                    "{at}"
                );
            }
            assert!(
                p.adding_replicas.iter().all(|r| p.replicas.contains(r)),
                "{at}"
            );
            assert!(
                p.removing_replicas.iter().all(|r| p.replicas.contains(r)),
                "{at}"
            );
            assert!(
                p.adding_replicas
                    .iter()
                    .all(|r| !p.removing_replicas.contains(r)),
                "{at}"
            );
        }
    }
}

/// A random but reproducible command for the state as it is.
fn random_command(h: &Harness, random: &mut super::placement::SplitMix64) -> ControllerCommand {
    const BROKERS: i32 = 5;
    let broker = 1 + random.below(BROKERS as usize) as i32;
    let epoch = h.state.broker(broker).map_or(0, |b| b.epoch);
    let topics: Vec<String> = h.state.topics().map(|t| t.name.clone()).collect();
    let topic = if topics.is_empty() || random.below(5) == 0 {
        format!("t{}", random.below(8))
    } else {
        topics[random.below(topics.len())].clone()
    };
    let partition = h
        .state
        .topic(&topic)
        .map_or(0, |t| random.below(t.partitions.len()) as i32);
    let some_brokers = |random: &mut super::placement::SplitMix64| {
        let mut ids: Vec<i32> = (1..=BROKERS).filter(|_| random.below(2) == 0).collect();
        if ids.is_empty() {
            ids.push(broker);
        }
        ids
    };
    match random.below(16) {
        0 | 1 => ControllerCommand::RegisterBroker {
            broker_id: broker,
            incarnation_id: Uuid::from_u128(random.below(2) as u128 + broker as u128 * 10),
            cluster_id: CLUSTER.into(),
            endpoints: Vec::new(),
            rack: Some(format!("r{}", broker % 2)),
            previous_broker_epoch: if random.below(2) == 0 { epoch } else { -1 },
        },
        2..=4 => ControllerCommand::UnfenceBroker {
            broker_id: broker,
            broker_epoch: epoch,
        },
        5 => ControllerCommand::FenceBroker {
            broker_id: broker,
            broker_epoch: epoch,
        },
        6 => ControllerCommand::BeginControlledShutdown {
            broker_id: broker,
            broker_epoch: epoch,
        },
        7 if random.below(4) == 0 => ControllerCommand::UnregisterBroker { broker_id: broker },
        7 | 8 => ControllerCommand::CreateTopics {
            topics: vec![NewTopic {
                topic_id: Uuid::from_u128(h.index as u128 + 1),
                ..new_topic(
                    &topic,
                    1 + random.below(4) as i32,
                    1 + random.below(3) as i16,
                )
            }],
            validate_only: false,
        },
        9 if random.below(3) == 0 => ControllerCommand::DeleteTopics {
            topics: vec![TopicRef::Name(topic)],
        },
        9 => ControllerCommand::CreatePartitions {
            topics: vec![NewPartitions {
                count: h
                    .state
                    .topic(&topic)
                    .map_or(1, |t| t.partitions.len() as i32 + 1),
                topic,
                assignments: None,
            }],
            validate_only: false,
        },
        10 => ControllerCommand::ElectLeaders {
            election_type: if random.below(2) == 0 {
                ElectionType::Preferred
            } else {
                ElectionType::Unclean
            },
            partitions: None,
        },
        11 => ControllerCommand::AlterPartitionReassignments {
            topics: vec![ReassignableTopic {
                name: topic,
                partitions: vec![ReassignablePartition {
                    partition_index: partition,
                    replicas: (random.below(3) != 0).then(|| some_brokers(random)),
                }],
            }],
            allow_replication_factor_change: true,
        },
        12 | 13 => catch_up_isr(h, topic, partition),
        14 => ControllerCommand::AlterTopicConfigs {
            topic,
            configs: BTreeMap::from([(
                super::UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
                (random.below(2) == 0).to_string(),
            )]),
        },
        _ => ControllerCommand::BumpLeaderEpoch { topic, partition },
    }
}

/// The leader's AlterPartition adding every active replica to the ISR, as caught-up followers would be.
fn catch_up_isr(h: &Harness, topic: String, partition: i32) -> ControllerCommand {
    // The leader adds every active replica to the ISR, as caught-up followers would be.
    let Some(t) = h.state.topic(&topic) else {
        return ControllerCommand::BumpLeaderEpoch { topic, partition };
    };
    let p = &t.partitions[partition as usize];
    let mut isr = p.isr.clone();
    let joining: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| !isr.contains(r) && h.state.broker(*r).is_some_and(|b| b.is_active()))
        .collect();
    isr.extend(joining);
    let leader = p.leader.max(0);
    ControllerCommand::AlterPartition {
        broker_id: leader,
        broker_epoch: h.state.broker(leader).map_or(0, |b| b.epoch),
        topics: vec![AlterPartitionTopic {
            topic_id: t.id,
            partitions: vec![AlterPartitionData {
                partition_index: partition,
                leader_epoch: p.leader_epoch,
                new_isr_with_epochs: isr
                    .iter()
                    .map(|&b| super::command::BrokerState {
                        broker_id: b,
                        broker_epoch: -1,
                    })
                    .collect(),
                leader_recovery_state: super::records::LeaderRecoveryState::Recovered,
                partition_epoch: p.partition_epoch,
            }],
        }],
    }
}

#[test]
fn random_histories_keep_every_invariant_and_replay_identically() {
    for seed in 0..8u64 {
        let run = || {
            let mut random = super::placement::SplitMix64::new(seed);
            let mut h = Harness::new();
            let mut epochs: BTreeMap<(Uuid, usize), (i32, i32)> = BTreeMap::new();
            for _ in 0..600 {
                let command = random_command(&h, &mut random);
                if std::env::var_os("BROOK_TRACE_HISTORY").is_some() {
                    eprintln!("{}: {command:?}", h.index + 1);
                }
                h.apply(command);
                assert_partition_invariants(&h.state);
                for topic in h.state.topics() {
                    for (i, p) in topic.partitions.iter().enumerate() {
                        let before =
                            epochs.insert((topic.id, i), (p.leader_epoch, p.partition_epoch));
                        if let Some((leader_epoch, partition_epoch)) = before {
                            assert!(
                                p.leader_epoch >= leader_epoch
                                    && p.partition_epoch >= partition_epoch
                            );
                        }
                    }
                }
            }
            h
        };
        let (a, b) = (run(), run());
        assert_eq!(a.state.snapshot(), b.state.snapshot(), "seed {seed}");
        a.assert_image_matches_state();
        let mut replayed = ControllerState::new();
        for record in &a.records {
            replayed.replay(record, &mut Changes::default());
        }
        replayed.last_applied = a.state.last_applied;
        assert_eq!(replayed, a.state, "seed {seed}");
        let partition_changes = a
            .records
            .iter()
            .filter(|r| matches!(r, MetadataRecord::PartitionChange(_)))
            .count();
        assert!(
            partition_changes > 20,
            "seed {seed}: the history did something ({partition_changes} partition changes)"
        );
    }
}

#[test]
fn a_single_node_data_directory_becomes_one_import_command() {
    use crate::cluster::MetadataStore;
    use crate::cluster::dynamic_config::BrokerScope;
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::open(dir.path(), 1).unwrap();
    let orders = store
        .create_topic(
            "orders",
            2,
            BTreeMap::from([("retention.ms".into(), "7".into())]),
        )
        .unwrap();
    store.bump_leader_epoch("orders", 1).unwrap();
    store
        .broker_configs()
        .replace(
            BrokerScope::ClusterDefault,
            BTreeMap::from([("log.retention.ms".into(), "9".into())]),
        )
        .unwrap();
    store
        .group_configs()
        .replace(
            "g",
            BTreeMap::from([("consumer.session.timeout.ms".into(), "45000".into())]),
        )
        .unwrap();
    let first = store.producer_ids().generate().unwrap();
    drop(store);

    let store = MetadataStore::open(dir.path(), 1).unwrap();
    let mut h = Harness::new();
    let commands = ControllerCommand::import_single_node(1, &store, 1 << 20);
    assert_eq!(commands.len(), 1);
    let applied = h.apply(commands.into_iter().next().unwrap());
    assert_eq!(
        applied.response,
        ControllerResponse::ImportSingleNode(Ok(()))
    );
    let topic = h.image.topic("orders").unwrap();
    assert_eq!(topic.id, orders.id);
    assert_eq!(topic.configs["retention.ms"], "7");
    assert_eq!(topic.partitions[1].leader_epoch, 1);
    assert_eq!(
        h.state.dynamic_configs(1).cluster_default["log.retention.ms"],
        "9"
    );
    assert_eq!(
        h.state.group_configs("g")["consumer.session.timeout.ms"],
        "45000"
    );

    // Producer ids continue past the block the single node had taken.
    h.register(1, None);
    let ControllerResponse::AllocateProducerIds(Ok(block)) = h
        .apply(ControllerCommand::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: h.epoch(1),
        })
        .response
    else {
        panic!("no block");
    };
    assert!(block.first_producer_id > first);
    assert_eq!(
        block.first_producer_id,
        crate::cluster::producer_ids::BLOCK_SIZE
    );
}

#[test]
fn a_large_single_node_store_imports_in_commands_under_the_limit() {
    use crate::cluster::MetadataStore;
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::open(dir.path(), 1).unwrap();
    for i in 0..40 {
        store
            .create_topic(&format!("topic-{i:02}"), 1 + i % 5, BTreeMap::new())
            .unwrap();
    }
    for i in 0..10 {
        store
            .group_configs()
            .replace(
                &format!("group-{i}"),
                BTreeMap::from([("consumer.session.timeout.ms".into(), "45000".into())]),
            )
            .unwrap();
    }
    store.producer_ids().generate().unwrap();

    const LIMIT: usize = 1200;
    let commands = ControllerCommand::import_single_node(1, &store, LIMIT);
    assert!(commands.len() > 3, "{} commands", commands.len());
    for command in &commands {
        assert!(serde_json::to_vec(command).unwrap().len() <= LIMIT);
    }
    let mut chunked = Harness::new();
    for command in commands {
        let applied = chunked.apply(command);
        assert_eq!(
            applied.response,
            ControllerResponse::ImportSingleNode(Ok(()))
        );
    }
    let mut whole = Harness::new();
    for command in ControllerCommand::import_single_node(1, &store, usize::MAX) {
        whole.apply(command);
    }
    assert_eq!(chunked.state.topics().count(), 40);
    assert_eq!(chunked.state.all_group_configs().len(), 10);
    assert_eq!(
        chunked.state.next_producer_id(),
        crate::cluster::producer_ids::BLOCK_SIZE
    );
    assert_eq!(chunked.image.topics(), whole.image.topics());
    assert_eq!(
        chunked.state.all_group_configs(),
        whole.state.all_group_configs()
    );

    // Not the same topic twice, and not once a broker has registered.
    let again = ControllerCommand::import_single_node(1, &store, usize::MAX).remove(0);
    let ControllerResponse::ImportSingleNode(Err(error)) = whole.apply(again).response else {
        panic!("imported a topic twice");
    };
    assert!(error.message.unwrap().contains("Cannot import topic"));
    whole.register(2, None);
    let ControllerResponse::ImportSingleNode(Err(error)) = whole
        .apply(ControllerCommand::ImportSingleNode {
            node_id: 1,
            topics: Vec::new(),
            broker_configs: BTreeMap::new(),
            cluster_default_broker_configs: BTreeMap::new(),
            group_configs: BTreeMap::new(),
            next_producer_id: 0,
        })
        .response
    else {
        panic!("imported after a registration");
    };
    assert!(
        error
            .message
            .unwrap()
            .contains("before any broker registers")
    );
}

/// Brokers 1-3 and `orders` on all three, led by 1, with `min.insync.replicas=2`.
fn elr_cluster() -> Harness {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None)]);
    let mut topic = new_topic("orders", -1, -1);
    topic.assignments = vec![ReplicaAssignment {
        partition_index: 0,
        broker_ids: vec![1, 2, 3],
    }];
    topic.configs = BTreeMap::from([("min.insync.replicas".into(), "2".into())]);
    h.create_topic(topic).unwrap();
    h
}

impl Harness {
    fn controlled_shutdown(&mut self, id: i32) {
        let broker_epoch = self.epoch(id);
        self.apply(ControllerCommand::BeginControlledShutdown {
            broker_id: id,
            broker_epoch,
        });
    }

    /// `id` comes back as a new process: cleanly (naming the epoch it had) or after a crash (-1).
    fn restart(&mut self, id: i32, clean: bool) {
        let previous = if clean { self.epoch(id) } else { -1 };
        let incarnation = Uuid::from_u128(0xbeef_0000 + self.index as u128);
        self.register_with_previous_epoch(id, incarnation, None, previous);
    }

    fn isr_elr(&self, topic: &str) -> (i32, Vec<i32>, Vec<i32>) {
        let p = self.partition(topic, 0);
        (p.leader, p.isr, p.elr)
    }
}

#[test]
fn elr_grows_when_the_isr_shrinks_below_min_isr_and_empties_when_it_grows_back() {
    let mut h = elr_cluster();
    h.alter_isr(1, "orders", 0, &[1, 2]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1, 2], vec![]), "at min ISR");
    h.alter_isr(1, "orders", 0, &[1]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![2]));
    let image = h.image.topic("orders").unwrap();
    assert_eq!(image.partitions[0].elr, vec![2], "brokers see the ELR");
    h.alter_isr(1, "orders", 0, &[1, 3]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1, 3], vec![]));
    h.assert_image_matches_state();
}

#[test]
fn an_eligible_replica_leads_when_the_isr_empties() {
    let mut h = elr_cluster();
    h.alter_isr(1, "orders", 0, &[1]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![2, 3]));
    // Without ELR the ISR would keep 1 and the partition would wait for it, leaderless.
    h.fence(1);
    assert_eq!(h.isr_elr("orders"), (2, vec![2], vec![1, 3]));
    assert_eq!(h.partition("orders", 0).last_known_elr, Vec::<i32>::new());
    h.assert_image_matches_state();
}

#[test]
fn a_cleanly_restarted_eligible_replica_leads_once_unfenced() {
    let mut h = elr_cluster();
    h.controlled_shutdown(2);
    assert_eq!(h.isr_elr("orders"), (1, vec![1, 3], vec![]));
    h.controlled_shutdown(3);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![3]));
    h.controlled_shutdown(1);
    assert_eq!(
        h.isr_elr("orders"),
        (NO_LEADER, vec![], vec![1, 3]),
        "the ISR may empty: its members stay eligible"
    );
    assert_eq!(h.partition("orders", 0).last_known_elr, vec![1]);

    h.restart(3, true);
    assert_eq!(
        h.isr_elr("orders"),
        (NO_LEADER, vec![], vec![1, 3]),
        "a clean restart keeps eligibility"
    );
    h.unfence(3);
    assert_eq!(h.isr_elr("orders"), (3, vec![3], vec![1]));
    let p = h.partition("orders", 0);
    assert_eq!(
        p.leader_recovery_state,
        super::records::LeaderRecoveryState::Recovered
    );
    assert!(p.last_known_elr.is_empty());
    h.assert_image_matches_state();
}

#[test]
fn an_unclean_restart_leaves_the_isr_and_the_elr() {
    let mut h = elr_cluster();
    h.controlled_shutdown(2);
    h.controlled_shutdown(3);
    h.controlled_shutdown(1);
    assert_eq!(h.isr_elr("orders"), (NO_LEADER, vec![], vec![1, 3]));

    // 3 crashed after all: it may have lost its unflushed tail, so it may not lead.
    h.restart(3, false);
    assert_eq!(h.isr_elr("orders"), (NO_LEADER, vec![], vec![1]));
    h.unfence(3);
    assert_eq!(h.isr_elr("orders"), (NO_LEADER, vec![], vec![1]));
    // The last ISR member comes back cleanly and leads.
    h.restart(1, true);
    h.unfence(1);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![]));

    // In the ISR: an unclean restart takes it out as well.
    h.alter_isr(1, "orders", 0, &[1, 3]);
    h.restart(3, false);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![]));
    h.assert_image_matches_state();
}

#[test]
fn a_restart_with_a_stale_previous_epoch_is_unclean() {
    let mut h = elr_cluster();
    h.alter_isr(1, "orders", 0, &[1]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![2, 3]));
    let stale = h.epoch(2) - 1;
    h.register_with_previous_epoch(2, Uuid::from_u128(0xdead), None, stale);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![3]));
}

#[test]
fn snapshots_and_commands_of_older_brooks_load_without_elr_fields() {
    let mut h = elr_cluster();
    h.alter_isr(1, "orders", 0, &[1]);
    // An older brook's snapshot: no ELR fields at all.
    let mut snapshot: serde_json::Value = serde_json::from_slice(&h.state.snapshot()).unwrap();
    let mut stripped = 0;
    for topic in snapshot["topics"].as_object_mut().unwrap().values_mut() {
        for partition in topic["partitions"].as_array_mut().unwrap() {
            let fields = partition.as_object_mut().unwrap();
            stripped += usize::from(fields.remove("elr").is_some());
            stripped += usize::from(fields.remove("last_known_elr").is_some());
        }
    }
    assert_eq!(stripped, 2);
    let restored =
        ControllerState::restore(h.index, &serde_json::to_vec(&snapshot).unwrap()).unwrap();
    let p = &restored.topic("orders").unwrap().partitions[0];
    assert_eq!((p.isr.clone(), p.elr.clone()), (vec![1], vec![]));

    // An older brook's registration: no previous epoch, read as unknown (an unclean restart, which is
    // what those brooks assumed of every new incarnation).
    let mut command = serde_json::to_value(ControllerCommand::RegisterBroker {
        broker_id: 1,
        incarnation_id: Uuid::from_u128(9),
        cluster_id: CLUSTER.into(),
        endpoints: Vec::new(),
        rack: None,
        previous_broker_epoch: 5,
    })
    .unwrap();
    assert!(
        command["RegisterBroker"]
            .as_object_mut()
            .unwrap()
            .remove("previous_broker_epoch")
            .is_some()
    );
    let decoded: ControllerCommand = serde_json::from_value(command).unwrap();
    assert!(matches!(
        decoded,
        ControllerCommand::RegisterBroker {
            previous_broker_epoch: -1,
            ..
        }
    ));
}

impl Harness {
    fn set_static_configs(&mut self, configs: &[(&str, &str)]) -> ControllerResponse {
        let configs = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.apply(ControllerCommand::SetControllerStaticConfigs { configs })
            .response
    }
}

#[test]
fn the_leaders_static_min_isr_decides_the_elr_below_topic_and_cluster_configs() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None), (3, None)]);
    h.create_assigned("orders", &[&[1, 2, 3]]).unwrap();
    // Kafka's default 1: nobody leaving the ISR is eligible.
    h.alter_isr(1, "orders", 0, &[1]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![]));
    h.alter_isr(1, "orders", 0, &[1, 2, 3]);

    // `min.insync.replicas=2` in the quorum leader's server.properties.
    let answer = h.set_static_configs(&[("min.insync.replicas", "2")]);
    assert_eq!(answer.first_error(), None, "{answer:?}");
    assert_eq!(h.state.effective_min_isr("orders", 3), 2);
    h.alter_isr(1, "orders", 0, &[1]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1], vec![2, 3]));
    h.alter_isr(1, "orders", 0, &[1, 2, 3]);
    assert_eq!(h.isr_elr("orders"), (1, vec![1, 2, 3], vec![]));

    // The cluster-wide dynamic default wins over it, and a topic override over both.
    h.apply(ControllerCommand::AlterBrokerConfigs {
        scope: BrokerConfigScope::ClusterDefault,
        configs: BTreeMap::from([("min.insync.replicas".into(), "3".into())]),
    });
    assert_eq!(h.state.effective_min_isr("orders", 3), 3);
    h.apply(ControllerCommand::AlterTopicConfigs {
        topic: "orders".into(),
        configs: BTreeMap::from([("min.insync.replicas".into(), "1".into())]),
    });
    assert_eq!(h.state.effective_min_isr("orders", 3), 1);

    // A later leader with Kafka's defaults writes an empty set: back to 1 for topics without configs.
    h.create_assigned("audit", &[&[1, 2, 3]]).unwrap();
    h.apply(ControllerCommand::AlterBrokerConfigs {
        scope: BrokerConfigScope::ClusterDefault,
        configs: BTreeMap::new(),
    });
    assert_eq!(h.state.effective_min_isr("audit", 3), 2);
    h.set_static_configs(&[]);
    assert_eq!(h.state.effective_min_isr("audit", 3), 1);
    assert!(h.state.controller_static_configs().is_empty());

    // Only the names the controller decides with.
    let refused = h.set_static_configs(&[("retention.ms", "1")]);
    assert_eq!(
        refused.first_error().map(|e| e.error_code),
        Some(ResponseError::InvalidRequest.code())
    );
    h.assert_image_matches_state();

    // The snapshot keeps them.
    h.set_static_configs(&[("min.insync.replicas", "2")]);
    let restored = ControllerState::restore(h.state.last_applied(), &h.state.snapshot()).unwrap();
    assert_eq!(
        restored.controller_static_configs(),
        h.state.controller_static_configs()
    );
}

#[test]
fn the_leaders_static_unclean_election_setting_elects_outside_the_isr() {
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    h.create_assigned("orders", &[&[1, 2]]).unwrap();
    h.set_static_configs(&[("unclean.leader.election.enable", "true")]);
    h.fence(2); // ISR [1]
    h.unfence(2);
    h.fence(1);
    assert_eq!(
        h.partition("orders", 0).leader,
        2,
        "elected outside the ISR"
    );

    // A topic override of false wins over the leader's static true.
    let mut h = Harness::with_brokers(&[(1, None), (2, None)]);
    let mut topic = new_topic("strict", -1, -1);
    topic.assignments = vec![ReplicaAssignment {
        partition_index: 0,
        broker_ids: vec![1, 2],
    }];
    topic.configs =
        BTreeMap::from([(super::UNCLEAN_LEADER_ELECTION_ENABLE.into(), "false".into())]);
    h.create_topic(topic).unwrap();
    h.set_static_configs(&[("unclean.leader.election.enable", "true")]);
    h.fence(2);
    h.unfence(2);
    h.fence(1);
    assert_eq!(h.partition("strict", 0).leader, NO_LEADER);
}

#[test]
fn a_node_writes_only_the_static_configs_it_sets_away_from_kafkas_defaults() {
    use super::config_control::controller_static_configs_of;
    let mut log = crate::log::LogConfig::default();
    assert!(controller_static_configs_of(&log).is_empty());
    log.min_insync_replicas = 2;
    log.unclean_leader_election_enable = true;
    assert_eq!(
        controller_static_configs_of(&log),
        BTreeMap::from([
            ("min.insync.replicas".to_string(), "2".to_string()),
            (
                "unclean.leader.election.enable".to_string(),
                "true".to_string()
            ),
        ])
    );
}
