//! The cluster's admin APIs on three in-process nodes (issue 15): preferred and unclean leader elections
//! (ElectLeaders), partition reassignments (Alter/ListPartitionReassignments), CreatePartitions with manual
//! assignments, and the active controller's automatic leader balancing. rdkafka's admin client where it
//! has the call, raw protocol otherwise.
//!
//! A restarted replica rejoins the ISR once it caught up (the leader's AlterPartition, issue 16); the
//! tests wait for that with [`wait_partition`].

mod common;

use std::collections::BTreeMap;

use brook::controller::quorum_controller::QuorumController;
use common::cluster::{TestCluster, fetch_metadata};
use common::raw::Conn;
use common::{DEADLINE, admin, admin_options, poll_until_async};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewPartitions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// Timings for these tests: no automatic balancing unless a test starts it.
const NO_BALANCER: &[(&str, &str)] = &[("auto.leader.rebalance.enable", "false")];

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// One partition as clients see it through node `via`: (leader, replicas, isr).
async fn partition(
    cluster: &TestCluster,
    via: i32,
    topic: &str,
    p: i32,
) -> (i32, Vec<i32>, Vec<i32>) {
    let metadata = fetch_metadata(&cluster.bootstrap(via), Some(topic))
        .await
        .expect("metadata");
    let t = &metadata.topics()[0];
    let p = t
        .partitions()
        .iter()
        .find(|x| x.id() == p)
        .unwrap_or_else(|| panic!("{topic}-{p} in the metadata"));
    (p.leader(), p.replicas().to_vec(), p.isr().to_vec())
}

/// Polls the metadata through node `via` until `check` holds for the partition; returns what it saw.
async fn wait_partition(
    cluster: &TestCluster,
    via: i32,
    topic: &str,
    p: i32,
    what: &str,
    check: impl Fn(&(i32, Vec<i32>, Vec<i32>)) -> bool,
) -> (i32, Vec<i32>, Vec<i32>) {
    let bootstrap = cluster.bootstrap(via);
    poll_until_async(DEADLINE, what, || {
        let bootstrap = bootstrap.clone();
        let check = &check;
        async move {
            let metadata = fetch_metadata(&bootstrap, Some(topic)).await.ok()?;
            let t = metadata.topics().first()?;
            let x = t.partitions().iter().find(|x| x.id() == p)?;
            let seen = (x.leader(), x.replicas().to_vec(), x.isr().to_vec());
            check(&seen).then_some(seen)
        }
    })
    .await
}

fn controller(cluster: &TestCluster, id: i32) -> Arc<QuorumController> {
    cluster
        .node(id)
        .dispatcher()
        .apis()
        .controller
        .clone()
        .expect("a cluster member has a controller")
}

async fn elect(
    addr: &str,
    version: i16,
    election_type: i8,
    partitions: Option<&[(&str, &[i32])]>,
) -> ElectLeadersResponse {
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(30_000)
        .with_topic_partitions(partitions.map(|ps| {
            ps.iter()
                .map(|(t, p)| {
                    TopicPartitions::default()
                        .with_topic(name(t))
                        .with_partitions(p.to_vec())
                })
                .collect()
        }));
    Conn::open(addr)
        .await
        .call(ApiKey::ElectLeaders, version, &request)
        .await
}

/// Each (topic, partition) of an ElectLeaders answer with its error code.
fn election_codes(response: &ElectLeadersResponse) -> BTreeMap<(String, i32), i16> {
    response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(move |p| ((t.topic.0.to_string(), p.partition_id), p.error_code))
        })
        .collect()
}

async fn create_assigned(cluster: &TestCluster, topic: &str, assignment: &[&[i32]]) {
    let admin = admin(&cluster.bootstrap(1));
    let new = NewTopic::new(
        topic,
        assignment.len() as i32,
        TopicReplication::Variable(assignment),
    );
    let results = admin
        .create_topics([&new], &admin_options())
        .await
        .expect("CreateTopics");
    assert!(results[0].is_ok(), "{results:?}");
    for (p, replicas) in assignment.iter().enumerate() {
        let leader = replicas[0];
        wait_partition(cluster, 1, topic, p as i32, "the new topic's leader", |s| {
            s.0 == leader
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preferred_election_returns_leadership_to_the_first_replica_after_a_bounce() {
    let mut cluster = TestCluster::start(3, NO_BALANCER).await;
    create_assigned(&cluster, "bounce", &[&[1, 2, 3], &[2, 3, 1]]).await;
    let via = cluster.bootstrap(3);
    let none = ResponseError::ElectionNotNeeded.code();
    let codes = election_codes(&elect(&via, 2, PREFERRED, Some(&[("bounce", &[0, 1, 9])])).await);
    assert_eq!(
        codes,
        BTreeMap::from([
            (("bounce".into(), 0), none),
            (("bounce".into(), 1), none),
            (
                ("bounce".into(), 9),
                ResponseError::UnknownTopicOrPartition.code()
            ),
        ])
    );

    // Node 1 stops cleanly: its leadership moves, it leaves the ISR.
    cluster.stop(1).await;
    wait_partition(
        &cluster,
        3,
        "bounce",
        0,
        "node 1 out of leader and ISR",
        |s| s.0 != 1 && !s.2.contains(&1),
    )
    .await;
    cluster.restart(1).await;
    assert!(cluster.node(1).wait_until_unfenced(DEADLINE).await);

    // Back, and once caught up in sync again (the preferred replica out of the ISR cannot lead: the
    // controller's unit tests cover PREFERRED_LEADER_NOT_AVAILABLE).
    wait_partition(&cluster, 2, "bounce", 0, "node 1 back in the ISR", |s| {
        s.2.contains(&1)
    })
    .await;
    let response = elect(&via, 2, PREFERRED, Some(&[("bounce", &[0])])).await;
    assert_eq!(election_codes(&response)[&("bounce".into(), 0)], 0);
    let message = &response.replica_election_results[0].partition_result[0].error_message;
    assert_eq!(*message, None, "success carries no message");
    // The answer came after this broker applied the change: its metadata shows it at once.
    let (leader, replicas, _) = partition(&cluster, 3, "bounce", 0).await;
    assert_eq!((leader, replicas), (1, vec![1, 2, 3]));
    wait_partition(&cluster, 1, "bounce", 0, "node 1 sees itself lead", |s| {
        s.0 == 1
    })
    .await;

    // Every partition (null): those needing no election are left out, the topics are still listed.
    let all = elect(&via, 1, PREFERRED, None).await;
    let bounce = all
        .replica_election_results
        .iter()
        .find(|t| t.topic.0.as_str() == "bounce")
        .expect("every topic is listed");
    assert!(bounce.partition_result.is_empty(), "{bounce:?}");
    // v0 has no election type: a preferred election.
    let v0 = elect(&via, 0, PREFERRED, Some(&[("bounce", &[0])])).await;
    assert_eq!(election_codes(&v0)[&("bounce".into(), 0)], none);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unclean_election_takes_an_out_of_sync_replica_only_when_asked() {
    let mut cluster = TestCluster::start(3, NO_BALANCER).await;
    create_assigned(&cluster, "lossy", &[&[1, 2]]).await;
    let via = cluster.bootstrap(3);
    // A partition with a leader needs no unclean election.
    let codes = election_codes(&elect(&via, 2, UNCLEAN, Some(&[("lossy", &[0])])).await);
    assert_eq!(
        codes[&("lossy".into(), 0)],
        ResponseError::ElectionNotNeeded.code()
    );

    // Node 2 crashes and comes back out of sync; then node 1, the last in-sync replica, crashes.
    cluster.crash(2).await;
    wait_partition(&cluster, 3, "lossy", 0, "node 2 out of the ISR", |s| {
        s.2 == vec![1]
    })
    .await;
    cluster.restart(2).await;
    assert!(cluster.node(2).wait_until_unfenced(DEADLINE).await);
    cluster.crash(1).await;
    let (_, _, isr) = wait_partition(&cluster, 3, "lossy", 0, "no leader", |s| s.0 == -1).await;
    // Kafka 4.1 with eligible leader replicas: the ISR empties and node 1, the last replica standing,
    // stays eligible (DescribeTopicPartitions shows it in the ELR); node 2 never was.
    assert_eq!(isr, Vec::<i32>::new(), "the ISR empties");

    // unclean.leader.election.enable is false: the controller left the partition offline although node 2
    // is alive, and a preferred election cannot help (node 1 is down).
    let codes = election_codes(&elect(&via, 2, PREFERRED, Some(&[("lossy", &[0])])).await);
    assert_eq!(
        codes[&("lossy".into(), 0)],
        ResponseError::PreferredLeaderNotAvailable.code()
    );
    assert_eq!(
        partition(&cluster, 3, "lossy", 0).await.0,
        -1,
        "still offline"
    );
    // The operator's unclean election takes node 2.
    let codes = election_codes(&elect(&via, 2, UNCLEAN, Some(&[("lossy", &[0])])).await);
    assert_eq!(codes[&("lossy".into(), 0)], 0);
    let (leader, _, isr) = partition(&cluster, 3, "lossy", 0).await;
    assert_eq!((leader, isr), (2, vec![2]));
    // An unknown election type is refused as a whole.
    let bad = elect(&via, 2, 5, Some(&[("lossy", &[0])])).await;
    assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());
    assert_eq!(
        election_codes(&bad)[&("lossy".into(), 0)],
        ResponseError::InvalidRequest.code()
    );
    cluster.shutdown().await;
}

async fn reassign(
    addr: &str,
    version: i16,
    allow_rf_change: bool,
    topic: &str,
    targets: &[(i32, Option<&[i32]>)],
) -> AlterPartitionReassignmentsResponse {
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(allow_rf_change)
        .with_topics(vec![
            ReassignableTopic::default()
                .with_name(name(topic))
                .with_partitions(
                    targets
                        .iter()
                        .map(|(p, r)| {
                            ReassignablePartition::default()
                                .with_partition_index(*p)
                                .with_replicas(r.map(|r| r.iter().copied().map(BrokerId).collect()))
                        })
                        .collect(),
                ),
        ]);
    Conn::open(addr)
        .await
        .call(ApiKey::AlterPartitionReassignments, version, &request)
        .await
}

fn reassign_codes(response: &AlterPartitionReassignmentsResponse) -> Vec<i16> {
    response.responses[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

async fn list(addr: &str, topics: Option<&[(&str, &[i32])]>) -> ListPartitionReassignmentsResponse {
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, p)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(name(t))
                        .with_partition_indexes(p.to_vec())
                })
                .collect()
        }));
    Conn::open(addr)
        .await
        .call(ApiKey::ListPartitionReassignments, 0, &request)
        .await
}

/// (partition, replicas, adding, removing) of every listed reassignment of `topic`.
type Listed = Vec<(i32, Vec<i32>, Vec<i32>, Vec<i32>)>;

fn listed(response: &ListPartitionReassignmentsResponse, topic: &str) -> Listed {
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| &t.partitions)
        .map(|p| {
            (
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reassignments_are_listed_then_completed_or_cancelled() {
    let mut cluster = TestCluster::start(3, NO_BALANCER).await;
    create_assigned(&cluster, "moving", &[&[1, 2], &[1, 2], &[2, 3]]).await;
    // Broker 3 is down while the reassignments start: a replica it is to add cannot catch up, so they
    // stay in flight until it returns (its replica then fetches and the leader completes them).
    cluster.crash(3).await;
    let (via, other) = (cluster.bootstrap(2), cluster.bootstrap(1));
    use ResponseError as E;

    let response = reassign(
        &via,
        1,
        false,
        "moving",
        &[
            (0, Some(&[3, 2])),
            (1, Some(&[1, 3])),
            (2, Some(&[2])),
            (2, Some(&[2, 9])),
            (7, Some(&[1, 2])),
            (2, None),
        ],
    )
    .await;
    assert_eq!(response.error_code, 0);
    assert!(!response.allow_replication_factor_change, "v1 echoes it");
    assert_eq!(
        reassign_codes(&response),
        vec![
            0,
            0,
            E::InvalidReplicationFactor.code(),
            E::InvalidReplicaAssignment.code(),
            E::UnknownTopicOrPartition.code(),
            E::NoReassignmentInProgress.code(),
        ]
    );
    let message = response.responses[0].partitions[3].error_message.as_deref();
    assert!(
        message.is_some_and(|m| m.contains("broker 9")),
        "{message:?}"
    );

    // Both in flight, listed by any node once it applied the change.
    let expected: Listed = vec![
        (0, vec![3, 2, 1], vec![3], vec![1]),
        (1, vec![1, 3, 2], vec![3], vec![2]),
    ];
    poll_until_async(DEADLINE, "both reassignments listed by node 1", || {
        let other = other.clone();
        let expected = expected.clone();
        async move { (listed(&list(&other, None).await, "moving") == expected).then_some(()) }
    })
    .await;
    let one = list(&via, Some(&[("moving", &[1, 2])])).await;
    assert_eq!(listed(&one, "moving"), expected[1..].to_vec());
    // Clients see the adding replica in the assignment while it catches up.
    let (_, replicas, _) = partition(&cluster, 2, "moving", 0).await;
    assert_eq!(replicas, vec![3, 2, 1]);

    // Cancelled: back to the replicas before; a second cancel finds nothing.
    let codes = reassign_codes(&reassign(&via, 0, true, "moving", &[(1, None)]).await);
    assert_eq!(codes, vec![0]);
    let (_, replicas, _) = partition(&cluster, 2, "moving", 1).await;
    assert_eq!(replicas, vec![1, 2]);
    let codes = reassign_codes(&reassign(&via, 0, true, "moving", &[(1, None)]).await);
    assert_eq!(codes, vec![E::NoReassignmentInProgress.code()]);

    // Completed: broker 3 returns, its new replica catches up, the leader reports it in sync (its own
    // AlterPartition), the leaving one drops and hands over.
    cluster.restart(3).await;
    let (leader, _, isr) = wait_partition(
        &cluster,
        2,
        "moving",
        0,
        "the reassignment completed",
        |s| s.1 == vec![3, 2],
    )
    .await;
    assert_eq!(
        leader, 3,
        "the removed leader handed over to the new first replica in sync"
    );
    let mut isr = isr;
    isr.sort();
    assert_eq!(isr, vec![2, 3]);
    assert_eq!(listed(&list(&via, None).await, "moving"), Vec::new());

    // A shrink needs no catching up: it completes at once (v0 allows a replication factor change).
    let codes = reassign_codes(&reassign(&via, 0, true, "moving", &[(2, Some(&[3]))]).await);
    assert_eq!(codes, vec![0]);
    let (leader, replicas, _) = partition(&cluster, 2, "moving", 2).await;
    assert_eq!((leader, replicas), (3, vec![3]));
    assert_eq!(listed(&list(&via, None).await, "moving"), Vec::new());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_partitions_places_manual_assignments_on_live_brokers() {
    let mut cluster = TestCluster::start(3, NO_BALANCER).await;
    create_assigned(&cluster, "grow", &[&[1, 2]]).await;
    create_assigned(&cluster, "single", &[&[1]]).await;
    let admin = admin(&cluster.bootstrap(2));

    // validate_only checks against the brokers, changes nothing.
    let checked = admin
        .create_partitions(
            [&NewPartitions::new("grow", 3).assign(&[&[2, 3], &[3, 1]])],
            &admin_options().validate_only(true),
        )
        .await
        .expect("CreatePartitions");
    assert!(checked[0].is_ok(), "{checked:?}");
    let count = fetch_metadata(&cluster.bootstrap(1), Some("grow"))
        .await
        .unwrap()
        .topics()[0]
        .partitions()
        .len();
    assert_eq!(count, 1);

    for (assignment, why) in [
        (&[&[2, 9][..], &[3, 1]][..], "an unregistered broker"),
        (&[&[2][..], &[3]][..], "fewer replicas than the topic has"),
        (&[&[2, 3][..]][..], "one assignment for two new partitions"),
        (&[&[2, 2][..], &[3, 1]][..], "a broker twice"),
    ] {
        let results = admin
            .create_partitions(
                [&NewPartitions::new("grow", 3).assign(assignment)],
                &admin_options(),
            )
            .await
            .expect("CreatePartitions");
        assert_eq!(
            results[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidReplicaAssignment,
            "{why}"
        );
    }

    let results = admin
        .create_partitions(
            [&NewPartitions::new("grow", 3).assign(&[&[2, 3], &[3, 1]])],
            &admin_options(),
        )
        .await
        .expect("CreatePartitions");
    assert!(results[0].is_ok(), "{results:?}");
    // rdkafka sends it to any broker: node 2's metadata may be a moment behind the one that answered.
    for (p, replicas) in [(1, vec![2, 3]), (2, vec![3, 1])] {
        let leader = replicas[0];
        wait_partition(&cluster, 2, "grow", p, "the new partition", |s| {
            (s.0, &s.1) == (leader, &replicas)
        })
        .await;
    }

    // Placed by the controller: the topic's replication factor over the live brokers.
    cluster.stop(3).await;
    let results = admin
        .create_partitions([&NewPartitions::new("grow", 5)], &admin_options())
        .await
        .expect("CreatePartitions");
    assert!(results[0].is_ok(), "{results:?}");
    for p in 3..5 {
        let (leader, mut replicas, _) =
            wait_partition(&cluster, 2, "grow", p, "the placed partition", |_| true).await;
        assert!(
            leader == 1 || leader == 2,
            "partition {p} led by a live broker"
        );
        replicas.sort();
        assert_eq!(
            replicas,
            vec![1, 2],
            "partition {p}: two replicas on the live brokers"
        );
    }
    // Only stopped brokers named: refused.
    let results = admin
        .create_partitions(
            [&NewPartitions::new("single", 2).assign(&[&[3]])],
            &admin_options().validate_only(true),
        )
        .await
        .expect("CreatePartitions");
    assert_eq!(
        results[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicaAssignment
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_active_controller_moves_leadership_back_to_preferred_replicas() {
    let mut cluster =
        TestCluster::start(3, &[("leader.imbalance.check.interval.seconds", "1")]).await;
    // One balancer per node, as each cluster member starts it (only the quorum leader's acts).
    let (stop, _) = tokio::sync::watch::channel(false);
    let start_balancer = |cluster: &TestCluster, id: i32| {
        let apis = cluster.node(id).dispatcher().apis().clone();
        brook::controller::leader_balancer::spawn(
            controller(cluster, id),
            &apis.config,
            stop.subscribe(),
        )
        .expect("auto.leader.rebalance.enable defaults to true")
    };
    for id in 1..=3 {
        start_balancer(&cluster, id);
    }
    create_assigned(&cluster, "balanced", &[&[1, 2, 3], &[1, 3, 2]]).await;

    // Leadership moves away while node 1 is down (looked at before the restart: once node 1 is back the
    // balancer may return it within its 1 s interval, before a look afterwards would see it elsewhere).
    cluster.stop(1).await;
    for p in 0..2 {
        wait_partition(
            &cluster,
            2,
            "balanced",
            p,
            "the leadership moved away",
            |s| s.0 != 1 && s.0 != -1,
        )
        .await;
    }
    cluster.restart(1).await;
    start_balancer(&cluster, 1);
    assert!(cluster.node(1).wait_until_unfenced(DEADLINE).await);
    for p in 0..2 {
        wait_partition(&cluster, 2, "balanced", p, "node 1 back in the ISR", |s| {
            s.2.contains(&1)
        })
        .await;
    }
    // No ElectLeaders request: the balancer notices within its interval.
    for p in 0..2 {
        wait_partition(
            &cluster,
            3,
            "balanced",
            p,
            "leadership back on node 1",
            |s| s.0 == 1,
        )
        .await;
    }
    stop.send_replace(true);
    cluster.shutdown().await;
}
