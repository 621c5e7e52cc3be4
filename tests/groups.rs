//! Consumer groups with librdkafka (rdkafka crate) against an in-process broker: partitions shared by the
//! members of a group, rebalances on crash and clean leave, cooperative-sticky and static membership,
//! committed offsets across a restart, and the admin APIs (list, describe, delete groups and offsets).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw;
use common::*;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetDeleteRequest, OffsetDeleteResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The broker settings every test here uses: the first member of a group is assigned at once.
const BROKER: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "0")];

/// What the rebalance callbacks of one consumer saw: partitions assigned and revoked, per callback.
#[derive(Default, Clone)]
struct Events {
    assigned: Arc<Mutex<Vec<Vec<i32>>>>,
    revoked: Arc<Mutex<Vec<Vec<i32>>>>,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut p: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    p.sort();
    p
}

impl Events {
    fn revoked(&self) -> Vec<Vec<i32>> {
        self.revoked.lock().expect("events lock").clone()
    }
    fn assigned(&self) -> Vec<Vec<i32>> {
        self.assigned.lock().expect("events lock").clone()
    }
}

struct Ctx(Events);

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.0
                .revoked
                .lock()
                .expect("events lock")
                .push(partitions_of(tpl));
        }
    }
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.0
                .assigned
                .lock()
                .expect("events lock")
                .push(partitions_of(tpl));
        }
    }
}

type GroupConsumer = StreamConsumer<Ctx>;

/// A subscribed consumer whose messages are drained by a task (rebalances only progress while it polls).
struct Member {
    consumer: Arc<GroupConsumer>,
    events: Events,
    received: Arc<Mutex<Vec<(i32, i64)>>>,
    task: tokio::task::JoinHandle<()>,
}

fn group_consumer(
    bootstrap: &str,
    group: &str,
    overrides: &[(&str, &str)],
) -> (GroupConsumer, Events) {
    let mut cfg = client_config(bootstrap);
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    let events = Events::default();
    let consumer = cfg
        .create_with_context(Ctx(events.clone()))
        .expect("create group consumer");
    (consumer, events)
}

fn join(bootstrap: &str, group: &str, topic: &str, overrides: &[(&str, &str)]) -> Member {
    let (consumer, events) = group_consumer(bootstrap, group, overrides);
    consumer.subscribe(&[topic]).expect("subscribe");
    let consumer = Arc::new(consumer);
    let received = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let consumer = consumer.clone();
        let received = received.clone();
        tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => received
                        .lock()
                        .expect("received lock")
                        .push((m.partition(), m.offset())),
                    Err(e) => eprintln!("consumer error (continuing): {e:?}"),
                }
            }
        })
    };
    Member {
        consumer,
        events,
        received,
        task,
    }
}

impl Member {
    fn assignment(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|tpl| partitions_of(&tpl))
            .unwrap_or_default()
    }

    fn received(&self) -> Vec<(i32, i64)> {
        self.received.lock().expect("received lock").clone()
    }

    /// Stops polling and closes the consumer (librdkafka leaves the group unless it is a static member).
    /// No explicit unsubscribe first: librdkafka sends LeaveGroup on unsubscribe even for a static member
    /// (KIP-345 only spares it on termination); closing alone behaves as a real application's close.
    async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
        let consumer = self.consumer;
        blocking(move || drop(consumer));
    }
}

/// Polls until the members' assignments have the given sizes (in order) and cover 0..partitions once.
async fn wait_for_split(members: &[&Member], sizes: &[usize], partitions: i32) -> Vec<Vec<i32>> {
    poll_until(DEADLINE, &format!("assignments of sizes {sizes:?}"), || {
        let assignments: Vec<Vec<i32>> = members.iter().map(|m| m.assignment()).collect();
        let mut all: Vec<i32> = assignments.iter().flatten().copied().collect();
        all.sort();
        let sized = assignments.iter().zip(sizes).all(|(a, &n)| a.len() == n);
        (sized && all == (0..partitions).collect::<Vec<_>>()).then_some(assignments)
    })
    .await
}

async fn produce(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer = producer(bootstrap, &[]);
    let mut futures = Vec::new();
    for i in 0..per_partition {
        for p in 0..partitions {
            let payload = format!("m-{p}-{i}");
            futures.push(
                producer
                    .send_result(
                        FutureRecord::<(), _>::to(topic)
                            .partition(p)
                            .payload(&payload),
                    )
                    .unwrap_or_else(|(e, _)| panic!("enqueue: {e:?}")),
            );
        }
    }
    for f in futures {
        f.await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e:?}"));
    }
}

fn unique_group(prefix: &str) -> String {
    unique_topic(&format!("group-{prefix}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_consumers_share_six_partitions_and_consume_each_message_once() {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("shared");
    create_topic(&b.bootstrap, &topic, 6).await;
    let group = unique_group("shared");

    let started = Instant::now();
    let c1 = join(&b.bootstrap, &group, &topic, &[]);
    poll_until(DEADLINE, "first assignment", || {
        (c1.assignment().len() == 6).then_some(())
    })
    .await;
    eprintln!(
        "subscribe to first assignment (group.initial.rebalance.delay.ms=0): {:?}",
        started.elapsed()
    );

    let c2 = join(&b.bootstrap, &group, &topic, &[]);
    let c3 = join(&b.bootstrap, &group, &topic, &[]);
    let split = wait_for_split(&[&c1, &c2, &c3], &[2, 2, 2], 6).await;

    produce(&b.bootstrap, &topic, 6, 100).await;
    poll_until(DEADLINE, "600 messages consumed", || {
        let n = c1.received().len() + c2.received().len() + c3.received().len();
        (n >= 600).then_some(())
    })
    .await;
    let mut seen = BTreeSet::new();
    for (member, assigned) in [&c1, &c2, &c3].iter().zip(&split) {
        for (p, offset) in member.received() {
            assert!(
                assigned.contains(&p),
                "partition {p} consumed by a member not assigned it"
            );
            assert!(seen.insert((p, offset)), "{p}/{offset} consumed twice");
        }
    }
    assert_eq!(seen.len(), 600);
    for m in [c1, c2, c3] {
        m.close().await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashed_member_partitions_move_after_session_timeout() {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("crash");
    create_topic(&b.bootstrap, &topic, 6).await;
    let group = unique_group("crash");

    // A static member never sends LeaveGroup on close: to the broker it looks like a crashed consumer.
    let crashing = join(
        &b.bootstrap,
        &group,
        &topic,
        &[("group.instance.id", "crashing-instance")],
    );
    let survivor = join(&b.bootstrap, &group, &topic, &[]);
    wait_for_split(&[&crashing, &survivor], &[3, 3], 6).await;

    let gone = Instant::now();
    crashing.close().await;
    wait_for_split(&[&survivor], &[6], 6).await;
    eprintln!(
        "partitions reassigned {:?} after the crash (session.timeout.ms=6000)",
        gone.elapsed()
    );

    produce(&b.bootstrap, &topic, 6, 5).await;
    poll_until(DEADLINE, "survivor consumes every partition", || {
        let parts: BTreeSet<i32> = survivor.received().iter().map(|r| r.0).collect();
        (parts.len() == 6).then_some(())
    })
    .await;
    survivor.close().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_leave_rebalances_without_waiting_for_the_session_timeout() {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("leave");
    create_topic(&b.bootstrap, &topic, 6).await;
    let group = unique_group("leave");
    let long_session = [("session.timeout.ms", "45000")];

    let leaving = join(&b.bootstrap, &group, &topic, &long_session);
    let staying = join(&b.bootstrap, &group, &topic, &long_session);
    wait_for_split(&[&leaving, &staying], &[3, 3], 6).await;

    let left = Instant::now();
    leaving.close().await;
    wait_for_split(&[&staying], &[6], 6).await;
    let took = left.elapsed();
    eprintln!("partitions reassigned {took:?} after a clean leave");
    assert!(
        took < Duration::from_secs(30),
        "a LeaveGroup must rebalance at once, not after the 45 s session timeout (took {took:?})"
    );
    staying.close().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_keeps_partitions_that_stay() {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("coop");
    create_topic(&b.bootstrap, &topic, 6).await;
    let group = unique_group("coop");
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];

    let first = join(&b.bootstrap, &group, &topic, &coop);
    wait_for_split(&[&first], &[6], 6).await;
    assert!(first.events.revoked().is_empty());

    let second = join(&b.bootstrap, &group, &topic, &coop);
    let split = wait_for_split(&[&first, &second], &[3, 3], 6).await;

    let revoked: Vec<i32> = first.events.revoked().into_iter().flatten().collect();
    assert_eq!(
        revoked.len(),
        3,
        "only the partitions that moved are revoked: {revoked:?}"
    );
    for p in &split[0] {
        assert!(!revoked.contains(p), "partition {p} stayed but was revoked");
    }
    first.close().await;
    second.close().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_member_rejoining_keeps_its_partitions_without_a_rebalance() {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("static");
    create_topic(&b.bootstrap, &topic, 6).await;
    let group = unique_group("static");
    let instance = [("group.instance.id", "keeper")];

    let keeper = join(&b.bootstrap, &group, &topic, &instance);
    let other = join(&b.bootstrap, &group, &topic, &[]);
    let split = wait_for_split(&[&keeper, &other], &[3, 3], 6).await;
    let other_revocations = other.events.revoked().len();
    let other_assignments = other.events.assigned().len();

    keeper.close().await;
    let back = join(&b.bootstrap, &group, &topic, &instance);
    let mine = poll_until(DEADLINE, "rejoined static member assigned", || {
        let a = back.assignment();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(
        mine, split[0],
        "the static member gets its old partitions back"
    );
    // With the eager protocol any rebalance would have revoked the other member's partitions before the
    // rejoined member could be assigned.
    assert_eq!(other.events.revoked().len(), other_revocations);
    assert_eq!(other.events.assigned().len(), other_assignments);
    assert_eq!(other.assignment(), split[1]);
    back.close().await;
    other.close().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_restart_and_consumption_resumes_there() {
    commit_stop_restart_and_resume(false).await;
}

/// As above, but the broker stops as a `kill -9` would: acknowledged commits are in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_crash() {
    commit_stop_restart_and_resume(true).await;
}

async fn commit_stop_restart_and_resume(crash: bool) {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("resume");
    create_topic(&b.bootstrap, &topic, 3).await;
    let group = unique_group("resume");
    produce(&b.bootstrap, &topic, 3, 30).await;

    let member = join(&b.bootstrap, &group, &topic, &[]);
    wait_for_split(&[&member], &[3], 3).await;
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in [(0, 10), (1, 20), (2, 30)] {
        tpl.add_partition_offset(&topic, p, Offset::Offset(offset))
            .expect("valid offset");
    }
    let consumer = member.consumer.clone();
    blocking(|| consumer.commit(&tpl, CommitMode::Sync)).expect("commit");
    drop(consumer);
    member.close().await;

    // A crash leaves no checkpoints and no clean-shutdown marker: the restart recovers
    // __consumer_offsets from its logs.
    let (dir, tmp) = if crash {
        b.crash().await
    } else {
        b.shutdown().await
    };
    let b = start_broker_in(&dir, BROKER).await;

    let member = join(&b.bootstrap, &group, &topic, &[]);
    poll_until(DEADLINE, "30 messages after the committed offsets", || {
        (member.received().len() >= 30).then_some(())
    })
    .await;
    let received = member.received();
    for p in 0..3 {
        let offsets: Vec<i64> = received.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let start = [10, 20, 30][p as usize];
        assert_eq!(
            offsets,
            (start..30).collect::<Vec<i64>>(),
            "partition {p} resumes at its committed offset"
        );
    }
    member.close().await;
    b.shutdown().await;
    drop(tmp);
}

fn offset_delete(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partition: i32,
) -> OffsetDeleteResponse {
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(partition),
                ]),
        ]);
    blocking(|| raw::request(bootstrap, ApiKey::OffsetDelete, 0, &request))
}

fn committed(consumer: &GroupConsumer, topic: &str, partitions: i32) -> Vec<Offset> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = blocking(|| consumer.committed_offsets(tpl, Duration::from_secs(10)))
        .expect("committed offsets");
    let mut out: Vec<(i32, Offset)> = got
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    out.sort_by_key(|e| e.0);
    out.into_iter().map(|e| e.1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_lists_describes_and_deletes_groups_and_offsets() {
    let b = start_broker(BROKER).await;
    let topic = unique_topic("admin");
    create_topic(&b.bootstrap, &topic, 2).await;
    let group = unique_group("admin");

    let member = join(
        &b.bootstrap,
        &group,
        &topic,
        &[("client.id", "admin-test-client")],
    );
    wait_for_split(&[&member], &[2], 2).await;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(5))
        .expect("valid offset");
    tpl.add_partition_offset(&topic, 1, Offset::Offset(7))
        .expect("valid offset");
    let consumer = member.consumer.clone();
    blocking(|| consumer.commit(&tpl, CommitMode::Sync)).expect("commit");
    assert_eq!(
        committed(&consumer, &topic, 2),
        vec![Offset::Offset(5), Offset::Offset(7)]
    );

    // ListGroups + DescribeGroups, as librdkafka's group list does them.
    let admin = admin(&b.bootstrap);
    let list = blocking(|| {
        admin
            .inner()
            .fetch_group_list(None, Duration::from_secs(10))
    })
    .expect("group list");
    let listed = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .expect("group listed");
    assert_eq!(listed.state(), "Stable");
    assert_eq!(listed.protocol_type(), "consumer");
    assert_eq!(listed.protocol(), "range");
    assert_eq!(listed.members().len(), 1);
    let described = &listed.members()[0];
    assert_eq!(described.client_id(), "admin-test-client");
    assert!(described.assignment().is_some_and(|a| !a.is_empty()));

    // A group with members cannot be deleted, nor offsets of a topic it subscribes to.
    let results = admin
        .delete_groups(&[group.as_str()], &admin_options())
        .await
        .expect("DeleteGroups");
    assert!(
        matches!(&results[0], Err((_, code)) if *code == rdkafka::types::RDKafkaErrorCode::NonEmptyGroup),
        "{results:?}"
    );
    let response = offset_delete(&b.bootstrap, &group, &topic, 0);
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        kafka_protocol::ResponseError::GroupSubscribedToTopic.code()
    );

    drop(consumer);
    member.close().await;
    poll_until(DEADLINE, "group empty after the member left", || {
        let list = blocking(|| {
            admin
                .inner()
                .fetch_group_list(Some(&group), Duration::from_secs(10))
        })
        .ok()?;
        let g = list.groups().iter().find(|g| g.name() == group)?;
        (g.state() == "Empty").then_some(())
    })
    .await;

    // OffsetDelete removes one partition's offset once nobody subscribes.
    let response = offset_delete(&b.bootstrap, &group, &topic, 0);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let (probe, _) = group_consumer(&b.bootstrap, &group, &[]);
    assert_eq!(
        committed(&probe, &topic, 2),
        vec![Offset::Invalid, Offset::Offset(7)]
    );

    let results = admin
        .delete_groups(&[group.as_str()], &admin_options())
        .await
        .expect("DeleteGroups");
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        committed(&probe, &topic, 2),
        vec![Offset::Invalid, Offset::Invalid]
    );
    let list = blocking(|| {
        admin
            .inner()
            .fetch_group_list(None, Duration::from_secs(10))
    })
    .expect("group list");
    assert!(list.groups().iter().all(|g| g.name() != group));
    let results = admin
        .delete_groups(&[group.as_str()], &admin_options())
        .await
        .expect("DeleteGroups");
    assert!(
        matches!(&results[0], Err((_, code)) if *code == rdkafka::types::RDKafkaErrorCode::GroupIdNotFound),
        "{results:?}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_and_fetch_at_the_protocol_level() {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::{
        OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    };

    let b = start_broker(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("offset.metadata.max.bytes", "10"),
    ])
    .await;
    let topic = unique_topic("raw");
    create_topic(&b.bootstrap, &topic, 2).await;
    let name = TopicName(StrBytes::from_string(topic.clone()));
    let part = |p: i32, offset: i64, metadata: &str| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(StrBytes::from_string(metadata.to_string())))
    };
    // A simple consumer (generation -1, no member id) commits; one metadata string is too long, and one
    // partition does not exist.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("simple")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(name.clone())
                .with_partitions(vec![
                    part(0, 42, "short"),
                    part(1, 43, "much too long metadata"),
                    part(9, 1, ""),
                ]),
        ]);
    let response: OffsetCommitResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetCommit, 8, &commit));
    let codes: Vec<i16> = response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::OffsetMetadataTooLarge.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );

    // A commit naming a generation is refused by a group that has none.
    let bad = commit
        .clone()
        .with_generation_id_or_member_epoch(5)
        .with_member_id(StrBytes::from_static_str("who"));
    let response: OffsetCommitResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetCommit, 8, &bad));
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );

    // Batched OffsetFetch (v8): the committed group and an unknown one.
    let fetch = OffsetFetchRequest::default().with_groups(
        ["simple", "unknown"]
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str(g)))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopics::default()
                            .with_name(name.clone())
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            })
            .collect(),
    );
    let response: OffsetFetchResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetFetch, 8, &fetch));
    let offsets: Vec<Vec<i64>> = response
        .groups
        .iter()
        .map(|g| {
            g.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect()
        })
        .collect();
    assert_eq!(offsets, vec![vec![42, -1], vec![-1, -1]]);
    assert_eq!(
        response.groups[0].topics[0].partitions[0]
            .metadata
            .as_deref(),
        Some("short")
    );

    // OffsetFetch v1 with the same group.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("simple")))
        .with_topics(Some(vec![
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name)
                .with_partition_indexes(vec![0]),
        ]));
    let response: OffsetFetchResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetFetch, 1, &fetch));
    assert_eq!(response.topics[0].partitions[0].committed_offset, 42);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_sync_heartbeat_leave_at_every_join_version() {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
        LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
    };

    let b = start_broker(BROKER).await;
    for version in 0..=9i16 {
        let group = GroupId(StrBytes::from_string(format!("raw-join-v{version}")));
        let mut join = JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(if version >= 1 { 10_000 } else { -1 })
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::from_static(b"meta")),
            ]);
        let mut r: JoinGroupResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::JoinGroup, version, &join));
        if version >= 4 {
            assert_eq!(
                r.error_code,
                ResponseError::MemberIdRequired.code(),
                "v{version}"
            );
            join.member_id = r.member_id.clone();
            r = blocking(|| raw::request(&b.bootstrap, ApiKey::JoinGroup, version, &join));
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{version}");
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader, r.member_id, "the only member leads");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        assert_eq!(&r.members[0].metadata[..], b"meta");

        let sync_v = version.min(5);
        let sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(r.member_id.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(r.member_id.clone())
                    .with_assignment(bytes::Bytes::from_static(b"yours")),
            ]);
        let s: SyncGroupResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::SyncGroup, sync_v, &sync));
        assert_eq!(s.error_code, 0, "SyncGroup v{sync_v}");
        assert_eq!(&s.assignment[..], b"yours");

        let hb_v = version.min(4);
        let hb = HeartbeatRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(r.member_id.clone());
        let h: HeartbeatResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::Heartbeat, hb_v, &hb));
        assert_eq!(h.error_code, 0, "Heartbeat v{hb_v}");
        let stale: HeartbeatResponse = blocking(|| {
            raw::request(
                &b.bootstrap,
                ApiKey::Heartbeat,
                hb_v,
                &hb.clone().with_generation_id(0),
            )
        });
        assert_eq!(stale.error_code, ResponseError::IllegalGeneration.code());

        let leave_v = version.min(5);
        let leave = if leave_v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(r.member_id.clone()),
                    MemberIdentity::default().with_member_id(StrBytes::from_static_str("ghost")),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(r.member_id.clone())
        };
        let l: LeaveGroupResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::LeaveGroup, leave_v, &leave));
        assert_eq!(l.error_code, 0, "LeaveGroup v{leave_v}");
        if leave_v >= 3 {
            let codes: Vec<i16> = l.members.iter().map(|m| m.error_code).collect();
            assert_eq!(codes, vec![0, ResponseError::UnknownMemberId.code()]);
        }
        let gone: HeartbeatResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::Heartbeat, hb_v, &hb));
        assert_eq!(gone.error_code, ResponseError::UnknownMemberId.code());
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_describe_groups_at_the_protocol_level() {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::{
        DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest, ListGroupsResponse,
    };

    let b = start_broker(BROKER).await;
    let topic = unique_topic("listed");
    create_topic(&b.bootstrap, &topic, 1).await;
    let group = unique_group("listed");
    let member = join(&b.bootstrap, &group, &topic, &[]);
    wait_for_split(&[&member], &[1], 1).await;

    let listed = |states: &[&'static str], types: &[&'static str]| -> Vec<String> {
        let request = ListGroupsRequest::default()
            .with_states_filter(
                states
                    .iter()
                    .map(|s| StrBytes::from_static_str(s))
                    .collect(),
            )
            .with_types_filter(types.iter().map(|s| StrBytes::from_static_str(s)).collect());
        let version = if types.is_empty() { 4 } else { 5 };
        let r: ListGroupsResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::ListGroups, version, &request));
        r.groups.iter().map(|g| g.group_id.0.to_string()).collect()
    };
    assert!(listed(&[], &[]).contains(&group));
    assert!(listed(&["Stable"], &[]).contains(&group));
    assert!(listed(&["stable"], &["classic"]).contains(&group));
    assert!(!listed(&["Empty"], &[]).contains(&group));
    assert!(!listed(&[], &["consumer"]).contains(&group));

    for version in [0, 5, 6] {
        let request = DescribeGroupsRequest::default().with_groups(vec![
            GroupId(StrBytes::from_string(group.clone())),
            GroupId(StrBytes::from_static_str("no-such-group")),
        ]);
        let r: DescribeGroupsResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::DescribeGroups, version, &request));
        assert_eq!(r.groups[0].error_code, 0);
        assert_eq!(r.groups[0].group_state.as_str(), "Stable");
        assert_eq!(r.groups[0].members.len(), 1);
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");
        let unknown = if version >= 6 {
            ResponseError::GroupIdNotFound.code()
        } else {
            0
        };
        assert_eq!(r.groups[1].error_code, unknown, "DescribeGroups v{version}");
    }
    member.close().await;
    b.shutdown().await;
}

/// Kafka leads every partition of a topic from its creation: clients such as kafkajs and Sarama read a
/// partition without a leader as an election in progress and fail after their retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offsets_topic_partition_has_a_leader_after_the_first_commit() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    };

    let b = start_broker(BROKER).await;
    let topic = unique_topic("led");
    create_topic(&b.bootstrap, &topic, 1).await;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("first-commit")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    let response: OffsetCommitResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetCommit, 8, &commit));
    assert_eq!(response.topics[0].partitions[0].error_code, 0);

    // An all-topics Metadata request, as kafkajs sends it.
    let response: MetadataResponse = blocking(|| {
        raw::request(
            &b.bootstrap,
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
    });
    let node = response.brokers[0].node_id;
    let offsets = response
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.0.as_str() == "__consumer_offsets")
        })
        .expect("the first commit created __consumer_offsets");
    assert_eq!(offsets.partitions.len(), 50);
    for p in &offsets.partitions {
        assert_eq!(
            (
                p.error_code,
                p.leader_id,
                &p.isr_nodes,
                p.offline_replicas.len()
            ),
            (0, node, &vec![node], 0),
            "__consumer_offsets-{}",
            p.partition_index
        );
    }
    b.shutdown().await;
}

/// kafka-python 2.x asks for authorized operations and refuses INT32_MIN ("not requested") as an answer.
/// Without an authorizer Kafka answers every operation the resource type supports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_are_answered_when_requested() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        DescribeClusterRequest, DescribeClusterResponse, DescribeGroupsRequest,
        DescribeGroupsResponse, MetadataRequest, MetadataResponse,
    };
    // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
    const TOPIC_OPERATIONS: i32 = 0b1101_1111_1000;
    // READ DELETE DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
    const GROUP_OPERATIONS: i32 = 0b1101_0100_1000;
    // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE
    const CLUSTER_OPERATIONS: i32 = 0b1_1111_1010_0000;
    const NOT_REQUESTED: i32 = i32::MIN;

    let b = start_broker(BROKER).await;
    let topic = unique_topic("ops");
    create_topic(&b.bootstrap, &topic, 1).await;
    let group = unique_group("ops");
    let member = join(&b.bootstrap, &group, &topic, &[]);
    wait_for_split(&[&member], &[1], 1).await;

    for (version, asked) in [(8, true), (10, true), (12, true), (8, false), (12, false)] {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(topic.clone())))),
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("no-such-topic")))),
            ]))
            .with_allow_auto_topic_creation(false)
            .with_include_cluster_authorized_operations(asked && version <= 10)
            .with_include_topic_authorized_operations(asked);
        let r: MetadataResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::Metadata, version, &request));
        let want = if asked {
            TOPIC_OPERATIONS
        } else {
            NOT_REQUESTED
        };
        let got: Vec<i32> = r
            .topics
            .iter()
            .map(|t| t.topic_authorized_operations)
            .collect();
        assert_eq!(got, vec![want, want], "Metadata v{version} asked={asked}");
        let cluster = if asked && version <= 10 {
            CLUSTER_OPERATIONS
        } else {
            NOT_REQUESTED
        };
        assert_eq!(
            r.cluster_authorized_operations, cluster,
            "Metadata v{version} asked={asked}"
        );
    }

    for (version, asked) in [(3, true), (5, true), (6, true), (5, false)] {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![
                GroupId(StrBytes::from_string(group.clone())),
                GroupId(StrBytes::from_static_str("no-such-group")),
            ])
            .with_include_authorized_operations(asked);
        let r: DescribeGroupsResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::DescribeGroups, version, &request));
        let want = if asked {
            GROUP_OPERATIONS
        } else {
            NOT_REQUESTED
        };
        assert_eq!(
            r.groups[0].authorized_operations, want,
            "DescribeGroups v{version}"
        );
        // v6 answers an unknown group with an error, and then no operations.
        let unknown = if asked && version < 6 {
            GROUP_OPERATIONS
        } else {
            NOT_REQUESTED
        };
        assert_eq!(
            r.groups[1].authorized_operations, unknown,
            "DescribeGroups v{version}"
        );
    }

    for asked in [true, false] {
        let request = DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_cluster_authorized_operations(asked);
        let r: DescribeClusterResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::DescribeCluster, 1, &request));
        let want = if asked {
            CLUSTER_OPERATIONS
        } else {
            NOT_REQUESTED
        };
        assert_eq!(r.cluster_authorized_operations, want);
    }
    member.close().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_offset_commit_at_every_version_stays_pending_on_the_wire() {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, InitProducerIdRequest,
        InitProducerIdResponse, OffsetFetchRequest, OffsetFetchResponse, ProducerId,
        TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    };

    let b = start_broker(BROKER).await;
    let topic = unique_topic("txnoff");
    create_topic(&b.bootstrap, &topic, 5).await;
    let name = TopicName(StrBytes::from_string(topic.clone()));
    let group = GroupId(StrBytes::from_string(unique_group("txn")));
    // The transaction coordinator verifies each commit: the producer's transaction must hold the group's
    // offsets partition.
    let tx = TransactionalId(StrBytes::from_static_str("tx"));
    let init: InitProducerIdResponse = blocking(|| {
        raw::request(
            &b.bootstrap,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(tx.clone()))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    });
    assert_eq!(init.error_code, 0, "InitProducerId");
    let added: AddOffsetsToTxnResponse = blocking(|| {
        raw::request(
            &b.bootstrap,
            ApiKey::AddOffsetsToTxn,
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(tx.clone())
                .with_producer_id(init.producer_id)
                .with_producer_epoch(init.producer_epoch)
                .with_group_id(group.clone()),
        )
    });
    assert_eq!(added.error_code, 0, "AddOffsetsToTxn");
    // Each version commits its own partition (v version -> partition version) in one producer's transaction.
    for version in 0..=4i16 {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(tx.clone())
            .with_group_id(group.clone())
            .with_producer_id(init.producer_id)
            .with_producer_epoch(init.producer_epoch)
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(name.clone())
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(i32::from(version))
                            .with_committed_offset(100 + i64::from(version)),
                    ]),
            ]);
        let response: TxnOffsetCommitResponse =
            blocking(|| raw::request(&b.bootstrap, ApiKey::TxnOffsetCommit, version, &request));
        assert_eq!(response.topics[0].partitions[0].error_code, 0, "v{version}");
    }
    // Without a COMMIT marker nothing is visible; require_stable (v7+) says UNSTABLE_OFFSET_COMMIT.
    let fetch = |require_stable| {
        OffsetFetchRequest::default()
            .with_group_id(group.clone())
            .with_require_stable(require_stable)
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(name.clone())
                    .with_partition_indexes(vec![0, 4]),
            ]))
    };
    let answers = |response: &OffsetFetchResponse| -> Vec<(i16, i64)> {
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.committed_offset))
            .collect()
    };
    let unstable = ResponseError::UnstableOffsetCommit.code();
    let response: OffsetFetchResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetFetch, 7, &fetch(true)));
    assert_eq!(answers(&response), vec![(unstable, -1), (unstable, -1)]);
    let response: OffsetFetchResponse =
        blocking(|| raw::request(&b.bootstrap, ApiKey::OffsetFetch, 7, &fetch(false)));
    assert_eq!(answers(&response), vec![(0, -1), (0, -1)]);
    b.shutdown().await;
}
