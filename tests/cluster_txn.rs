//! Transactions across a cluster of three (issue 15): the transaction coordinator of an id lives on one
//! broker, the partitions of its transactions are led by all three, so every other leader gets its COMMIT
//! and ABORT markers by WriteTxnMarkers over the inter-broker listener. A read_committed consumer sees
//! exactly the committed records only if every leader got its marker (a missing one holds the last stable
//! offset of its partition back forever).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{TestCluster, fetch_metadata};
use common::{
    DEADLINE, admin, admin_options, assert_no_more, blocking, consume_n, consumer, poll_until,
    poll_until_async, producer, stored_markers,
};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

const TIMEOUT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 6;

/// Small internal topics: fewer shards to load, same behaviour.
const PROPS: &[(&str, &str)] = &[
    ("transaction.state.log.num.partitions", "3"),
    ("offsets.topic.num.partitions", "3"),
];

/// Creates `topic` with [`PARTITIONS`] partitions on all three brokers and returns each partition's
/// leader, once every leader is known; asserts the leaders are spread over the three brokers.
async fn create_spread_topic(cluster: &TestCluster, topic: &str) -> BTreeMap<i32, i32> {
    let admin = admin(&cluster.bootstrap(1));
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(3));
    let results = admin.create_topics([&new], &admin_options()).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let bootstrap = cluster.bootstrap_all();
    let leaders = poll_until_async(DEADLINE, "every partition led", || {
        let bootstrap = bootstrap.clone();
        let topic = topic.to_string();
        async move {
            let m = fetch_metadata(&bootstrap, Some(&topic)).await.ok()?;
            let partitions = m.topics().first()?.partitions();
            let leaders: BTreeMap<i32, i32> =
                partitions.iter().map(|p| (p.id(), p.leader())).collect();
            (leaders.len() == PARTITIONS as usize && leaders.values().all(|&l| l > 0))
                .then_some(leaders)
        }
    })
    .await;
    let brokers: BTreeSet<i32> = leaders.values().copied().collect();
    assert_eq!(
        brokers,
        BTreeSet::from([1, 2, 3]),
        "leaders on every broker: {leaders:?}"
    );
    leaders
}

fn transactional_producer(bootstrap: &str, id: &str) -> FutureProducer {
    producer(
        bootstrap,
        &[
            ("transactional.id", id),
            ("transaction.timeout.ms", "60000"),
        ],
    )
}

async fn send(p: &FutureProducer, topic: &str, partition: i32, value: &str) {
    p.send(
        FutureRecord::<(), _>::to(topic)
            .partition(partition)
            .payload(value),
        Timeout::After(TIMEOUT),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("send {value} to {topic}/{partition}: {e}"));
}

/// Every value a read_committed consumer reads from all partitions of `topic`, expecting `n`.
async fn read_committed(bootstrap: &str, topic: &str, n: usize) -> BTreeSet<String> {
    let c = consumer(bootstrap, &[("isolation.level", "read_committed")]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let got = consume_n(&c, n, TIMEOUT).await;
    assert_no_more(&c, Duration::from_secs(2)).await;
    got.iter()
        .map(|m| {
            use rdkafka::Message;
            String::from_utf8(m.payload().unwrap().to_vec()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_commit_and_abort_on_partitions_led_by_every_broker() {
    let cluster = TestCluster::start(3, PROPS).await;
    let topic = "spread";
    let leaders = create_spread_topic(&cluster, topic).await;
    let bootstrap = cluster.bootstrap_all();
    let p = transactional_producer(&bootstrap, "spread-txn");
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");

    let mut committed = BTreeSet::new();
    for (round, commit) in [(0, true), (1, false), (2, true)] {
        p.begin_transaction().unwrap();
        for partition in 0..PARTITIONS {
            let value = format!("r{round}-p{partition}");
            send(&p, topic, partition, &value).await;
            if commit {
                committed.insert(value);
            }
        }
        if commit {
            blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
        } else {
            blocking(|| p.abort_transaction(TIMEOUT)).expect("abort");
        }
    }

    // Exactly the committed records: the aborted ones are filtered by every leader's aborted index, and
    // the last commit is visible only once every leader has its marker.
    assert_eq!(
        read_committed(&bootstrap, topic, committed.len()).await,
        committed
    );
    // Each leader stored COMMIT, ABORT, COMMIT after one record each.
    for (partition, leader) in &leaders {
        let data_dir = cluster.specs[(*leader - 1) as usize].data_dir.clone();
        let markers = poll_until(TIMEOUT, "three markers at the leader", || {
            let m = stored_markers(&data_dir, topic, *partition);
            (m.len() == 3).then_some(m)
        })
        .await;
        assert_eq!(
            markers,
            vec![(1, Some(true)), (3, Some(false)), (5, Some(true))],
            "partition {partition} led by {leader}"
        );
    }
    drop(p);
    cluster.shutdown().await;
}

/// Consume-transform-produce: the consumer group's offsets sent to the transaction are committed with it
/// (through the marker the offsets partition's leader receives), an aborted transaction's never are, and the
/// output is exactly what the committed transactions wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_in_a_transaction_commit_with_it_across_brokers() {
    let cluster = TestCluster::start(3, PROPS).await;
    let input = "etl-in";
    let output = "etl-out";
    create_spread_topic(&cluster, input).await;
    create_spread_topic(&cluster, output).await;
    let bootstrap = cluster.bootstrap_all();
    let group = "etl-group";
    let c = consumer(&bootstrap, &[("group.id", group)]);
    let metadata = c.group_metadata().expect("group metadata");
    let p = transactional_producer(&bootstrap, "etl-txn");
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");

    let offsets_at = |at: i64| {
        let mut tpl = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            tpl.add_partition_offset(input, partition, Offset::Offset(at + partition as i64))
                .unwrap();
        }
        tpl
    };
    let committed_offsets = || {
        let mut tpl = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            tpl.add_partition(input, partition);
        }
        let got = blocking(|| c.committed_offsets(tpl, TIMEOUT)).expect("committed offsets");
        (0..PARTITIONS)
            .map(|partition| {
                got.find_partition(input, partition)
                    .map(|e| e.offset())
                    .unwrap_or(Offset::Invalid)
            })
            .collect::<Vec<_>>()
    };

    let mut written = BTreeSet::new();
    for (round, commit) in [(0, true), (1, false)] {
        p.begin_transaction().unwrap();
        for partition in 0..PARTITIONS {
            let value = format!("out{round}-p{partition}");
            send(&p, output, partition, &value).await;
            if commit {
                written.insert(value);
            }
        }
        let at = 10 * (round + 1);
        blocking(|| p.send_offsets_to_transaction(&offsets_at(at), &metadata, TIMEOUT))
            .expect("send_offsets_to_transaction");
        if commit {
            blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
        } else {
            blocking(|| p.abort_transaction(TIMEOUT)).expect("abort");
        }
    }
    let expected: Vec<Offset> = (0..PARTITIONS)
        .map(|partition| Offset::Offset(10 + partition as i64))
        .collect();
    let got = poll_until(TIMEOUT, "the first transaction's offsets", || {
        let got = committed_offsets();
        (got == expected).then_some(got)
    })
    .await;
    assert_eq!(got, expected);
    assert_eq!(
        read_committed(&bootstrap, output, written.len()).await,
        written
    );
    // The aborted transaction's offsets never show, even after its markers are all written.
    assert_eq!(committed_offsets(), expected);
    drop((p, c));
    cluster.shutdown().await;
}

/// The leader of some partitions of a prepared transaction dies: their markers cannot be delivered until
/// the controller fences it and moves the leaderships, then they go to the new leaders (found again in the
/// image on each retry) and the transaction completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn markers_follow_leaders_that_move_after_a_crash() {
    let mut cluster = TestCluster::start(3, PROPS).await;
    let topic = "moving";
    let leaders = create_spread_topic(&cluster, topic).await;
    let bootstrap = cluster.bootstrap_all();
    let id = "moving-txn";
    let p = transactional_producer(&bootstrap, id);
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");

    // The coordinator of the id: the leader of its __transaction_state partition.
    let state_partition = brook::coordinator::partition_for(id, 3);
    let state = fetch_metadata(&bootstrap, Some("__transaction_state"))
        .await
        .unwrap();
    let coordinator = state.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == state_partition)
        .expect("the id's partition")
        .leader();
    let victim = *leaders
        .values()
        .find(|&&l| l != coordinator)
        .expect("a leader that is not the coordinator");

    p.begin_transaction().unwrap();
    for partition in 0..PARTITIONS {
        send(&p, topic, partition, &format!("v{partition}")).await;
    }
    cluster.crash(victim).await;
    blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");

    // Every partition the victim led gets its COMMIT marker from its new leader (which holds none of the
    // records: followers do not replicate yet), once the leadership moved.
    let survivors = cluster.bootstrap_all();
    for (partition, _) in leaders.iter().filter(|(_, l)| **l == victim) {
        let new_leader = poll_until_async(DEADLINE, "a new leader", || {
            let survivors = survivors.clone();
            async move {
                let m = fetch_metadata(&survivors, Some(topic)).await.ok()?;
                let leader = m
                    .topics()
                    .first()?
                    .partitions()
                    .iter()
                    .find(|p| p.id() == *partition)?
                    .leader();
                (leader > 0 && leader != victim).then_some(leader)
            }
        })
        .await;
        let data_dir = cluster.specs[(new_leader - 1) as usize].data_dir.clone();
        let markers = poll_until(TIMEOUT, "the commit marker at the new leader", || {
            let m = stored_markers(&data_dir, topic, *partition);
            (!m.is_empty()).then_some(m)
        })
        .await;
        assert_eq!(
            markers.iter().map(|m| m.1).collect::<Vec<_>>(),
            vec![Some(true)],
            "partition {partition}, now led by {new_leader}"
        );
    }
    // The surviving leaders' records are committed; and the transaction is over: a new one commits.
    let kept: BTreeSet<String> = leaders
        .iter()
        .filter(|(_, l)| **l != victim)
        .map(|(partition, _)| format!("v{partition}"))
        .collect();
    p.begin_transaction().unwrap();
    blocking(|| p.commit_transaction(TIMEOUT)).expect("the next transaction");
    let c = consumer(&survivors, &[("isolation.level", "read_committed")]);
    let mut tpl = TopicPartitionList::new();
    for (partition, _) in leaders.iter().filter(|(_, l)| **l != victim) {
        tpl.add_partition_offset(topic, *partition, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let got: BTreeSet<String> = consume_n(&c, kept.len(), TIMEOUT)
        .await
        .iter()
        .map(|m| {
            use rdkafka::Message;
            String::from_utf8(m.payload().unwrap().to_vec()).unwrap()
        })
        .collect();
    assert_eq!(got, kept);
    drop((p, c));
    cluster.shutdown().await;
}

/// KIP-890 part 1 across brokers: a transactional produce to a partition led by a broker other than the
/// transaction coordinator is verified with the coordinator first (a verify-only AddPartitionsToTxn v4
/// over the inter-broker listener). A partition the transaction never added, or a stale producer epoch, is
/// refused and nothing is written; once the partition is added, the same batch is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transactional_write_is_verified_with_a_coordinator_on_another_broker() {
    use common::raw;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let cluster = TestCluster::start(3, PROPS).await;
    let topic = "remote-verify";
    let leaders = create_spread_topic(&cluster, topic).await;
    let id = "remote-verify-id";
    let addr = |node: i32| cluster.bootstrap(node);

    // The coordinator of the id, once __transaction_state is led.
    let coordinator = coordinator_of(&addr(1), 1, id).await;
    let coordinator_addr = addr(coordinator);
    let (pid, epoch) = init_producer_id(&coordinator_addr, id).await;
    let (&partition, &leader) = leaders
        .iter()
        .find(|&(_, &leader)| leader != coordinator)
        .expect("a partition led by another broker");
    println!("coordinator {coordinator}, {topic}-{partition} led by {leader}");

    let leader_addr = addr(leader);
    let produce = |version: i16, epoch: i16| -> i16 {
        let request = raw::produce_request(
            topic,
            partition,
            raw::producer_batch(pid, epoch, 0, 1, true),
        )
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(id))));
        let response: ProduceResponse =
            raw::request(leader_addr.as_str(), ApiKey::Produce, version, &request);
        response.responses[0].partition_responses[0].error_code
    };
    let written = || raw::latest_offset(&addr(leader), topic, partition, 0);
    let refused = blocking(move || {
        (
            produce(9, epoch),
            produce(11, epoch),
            produce(11, epoch + 1),
        )
    });
    assert_eq!(
        refused,
        (48, 120, 47),
        "not in the transaction: INVALID_TXN_STATE before v11, TRANSACTION_ABORTABLE from it; another \
         epoch: INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(blocking(written), 0, "nothing written");

    let added: AddPartitionsToTxnResponse = blocking({
        let coordinator_addr = coordinator_addr.clone();
        move || {
            raw::request(
                coordinator_addr.as_str(),
                ApiKey::AddPartitionsToTxn,
                3,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(
                        id,
                    )))
                    .with_v3_and_below_producer_id(ProducerId(pid))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str(topic)))
                            .with_partitions(vec![partition]),
                    ]),
            )
        }
    });
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(blocking(move || produce(11, epoch)), 0, "added: accepted");
    assert_eq!(blocking(written), 1, "written");
    cluster.shutdown().await;
}

/// A new producer id and epoch for `id` from its coordinator at `coordinator`, once it answers.
async fn init_producer_id(coordinator: &str, id: &str) -> (i64, i16) {
    use common::raw;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    poll_until(DEADLINE, "InitProducerId", || {
        let response: InitProducerIdResponse = raw::try_request(
            coordinator,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.to_string()))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .ok()?;
        (response.error_code == 0).then_some((response.producer_id.0, response.producer_epoch))
    })
    .await
}

/// The broker FindCoordinator names for `key` (`key_type` 0: a group, 1: a transactional id), asked
/// through `any` until it answers without error.
async fn coordinator_of(any: &str, key_type: i8, key: &str) -> i32 {
    use common::raw;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    poll_until(DEADLINE, "a coordinator", || {
        let response: FindCoordinatorResponse = raw::try_request(
            any,
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())]),
        )
        .ok()?;
        let c = response.coordinators.first()?;
        (c.error_code == 0).then_some(c.node_id.0)
    })
    .await
}

/// KIP-890 part 1 across brokers for offsets: a TxnOffsetCommit to a group coordinator on another broker
/// than the transaction coordinator is verified with it first (verify-only AddPartitionsToTxn v4). Without
/// AddOffsetsToTxn, or at a stale epoch, it is refused and nothing is staged; once the group is in the
/// transaction, the same commit is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transactional_offset_commit_is_verified_with_a_coordinator_on_another_broker() {
    use common::raw;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let cluster = TestCluster::start(3, PROPS).await;
    let topic = "remote-offsets";
    create_spread_topic(&cluster, topic).await;
    let id = "remote-offsets-id";
    let addr = |node: i32| cluster.bootstrap(node);
    let coordinator = coordinator_of(&addr(1), 1, id).await;
    let coordinator_addr = addr(coordinator);
    let (pid, epoch) = init_producer_id(&coordinator_addr, id).await;
    // A group whose coordinator is another broker.
    let mut found = None;
    for n in 0..64 {
        let group = format!("remote-offsets-group-{n}");
        let node = coordinator_of(&addr(1), 0, &group).await;
        if node != coordinator {
            found = Some((group, node));
            break;
        }
    }
    let (group, group_coordinator) = found.expect("a group coordinated by another broker");
    println!("transaction coordinator {coordinator}, group {group} on {group_coordinator}");

    let group_addr = addr(group_coordinator);
    let commit = {
        let group = group.clone();
        move |version: i16, epoch: i16| -> i16 {
            let request = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str(id)))
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_member_id(StrBytes::from_static_str(""))
                .with_topics(vec![
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str(topic)))
                        .with_partitions(vec![
                            TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(7)
                                .with_committed_leader_epoch(-1),
                        ]),
                ]);
            let response: TxnOffsetCommitResponse = raw::request(
                group_addr.as_str(),
                ApiKey::TxnOffsetCommit,
                version,
                &request,
            );
            response.topics[0].partitions[0].error_code
        }
    };
    let refused = blocking({
        let commit = commit.clone();
        move || (commit(3, epoch), commit(4, epoch), commit(4, epoch + 1))
    });
    assert_eq!(
        refused,
        (48, 120, 47),
        "not in the transaction: INVALID_TXN_STATE before v4, TRANSACTION_ABORTABLE from it; another \
         epoch: INVALID_PRODUCER_EPOCH"
    );

    let added: AddOffsetsToTxnResponse = blocking({
        let coordinator_addr = coordinator_addr.clone();
        let group = group.clone();
        move || {
            raw::request(
                coordinator_addr.as_str(),
                ApiKey::AddOffsetsToTxn,
                3,
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_static_str(id)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(StrBytes::from_string(group))),
            )
        }
    });
    assert_eq!(added.error_code, 0);
    assert_eq!(
        blocking(move || commit(4, epoch)),
        0,
        "in the transaction: accepted"
    );
    cluster.shutdown().await;
}
