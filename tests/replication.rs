//! Followers replicate their leaders (issue 16): three in-process brooks, a topic with replication factor 3,
//! records produced with rdkafka to the leader, and every replica's log compared batch for batch (offsets,
//! leader epochs, CRCs: the whole bytes).

mod common;

use std::time::Instant;

use brook::Broker;
use brook::log::TopicPartition;
use brook::log::record_batch::RecordBatchHeader;
use brook::replica::FetchIsolation;
use common::cluster::TestCluster;
use common::{DEADLINE, admin, admin_options, poll_until_async, producer};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

/// Every batch of `broker`'s replica of `tp` (None while it holds none), as stored.
fn batches(broker: &Broker, tp: &TopicPartition) -> Option<Vec<Vec<u8>>> {
    let partition = broker.replica_manager().partition(tp)?;
    let mut out = Vec::new();
    let mut offset = partition.log_start_offset();
    let end = partition.log_end_offset();
    while offset < end {
        let data = partition
            .read(offset, 1 << 20, true, FetchIsolation::LogEnd)
            .ok()?;
        if data.records.is_empty() {
            break;
        }
        let bytes = data.records;
        let mut pos = 0;
        while pos < bytes.len() {
            let h = RecordBatchHeader::parse(&bytes[pos..]).ok()?;
            let size = h.total_size()?;
            out.push(bytes[pos..pos + size].to_vec());
            offset = h.next_offset();
            pos += size;
        }
    }
    Some(out)
}

/// The node that leads `tp` now, by the brokers' own partitions (once exactly one leads it).
async fn leader_of(cluster: &TestCluster, tp: &TopicPartition) -> i32 {
    poll_until_async(DEADLINE, &format!("a leader of {tp}"), || {
        let leaders: Vec<i32> = (1..=cluster.nodes.len() as i32)
            .filter(|&id| {
                cluster.nodes[(id - 1) as usize]
                    .as_ref()
                    .and_then(|b| b.replica_manager().partition(tp))
                    .is_some_and(|p| p.is_leader())
            })
            .collect();
        std::future::ready((leaders.len() == 1).then(|| leaders[0]))
    })
    .await
}

async fn create(cluster: &TestCluster, topic: &str) -> TopicPartition {
    let admin = admin(&cluster.bootstrap(1));
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(3));
    let results = admin.create_topics([&new], &admin_options()).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    TopicPartition::new(topic, 0)
}

/// Produces records `from..from + n` to partition 0 of `topic` with acks=all, 50 at a time (so in
/// several batches).
async fn produce(bootstrap: &str, topic: &str, from: usize, n: usize) {
    produce_acks(bootstrap, topic, from, n, "all").await
}

async fn produce_acks(bootstrap: &str, topic: &str, from: usize, n: usize, acks: &str) {
    let producer = producer(bootstrap, &[("acks", acks)]);
    let values: Vec<String> = (from..from + n).map(|i| format!("record-{i}")).collect();
    for chunk in values.chunks(50) {
        let sends = chunk.iter().map(|value| {
            producer.send(
                FutureRecord::<(), _>::to(topic).partition(0).payload(value),
                DEADLINE,
            )
        });
        for sent in futures_util::future::join_all(sends).await {
            sent.unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        }
    }
}

/// Waits until every running node holds the same batches as `leader`, at least `min_end` offsets, and the
/// same leader epoch cache; prints how long that took.
async fn wait_identical(
    cluster: &TestCluster,
    tp: &TopicPartition,
    leader: i32,
    min_end: i64,
    what: &str,
) {
    wait_same_batches(cluster, tp, leader, min_end, what).await;
    let leader_partition = cluster
        .node(leader)
        .replica_manager()
        .partition(tp)
        .unwrap();
    for broker in cluster.nodes.iter().flatten() {
        let p = broker.replica_manager().partition(tp).unwrap();
        assert_eq!(
            p.log().leader_epochs(),
            leader_partition.log().leader_epochs()
        );
    }
}

/// Waits until every running node holds the same batches from its log start as `leader`, at least
/// `min_end` offsets, and the same log end offset; prints how long that took.
async fn wait_same_batches(
    cluster: &TestCluster,
    tp: &TopicPartition,
    leader: i32,
    min_end: i64,
    what: &str,
) {
    let started = Instant::now();
    let expected = poll_until_async(
        DEADLINE,
        &format!("{what}: replicas of {tp} identical"),
        || {
            let leader_batches = batches(cluster.node(leader), tp).unwrap_or_default();
            let end = leader_batches
                .last()
                .map_or(0, |b| RecordBatchHeader::parse(b).unwrap().next_offset());
            let all_same = end >= min_end
                && cluster
                    .nodes
                    .iter()
                    .flatten()
                    .all(|b| batches(b, tp).as_ref() == Some(&leader_batches));
            std::future::ready(all_same.then_some(leader_batches))
        },
    )
    .await;
    println!(
        "{what}: {} batches on every replica after {:?}",
        expected.len(),
        started.elapsed()
    );
    let leader_partition = cluster
        .node(leader)
        .replica_manager()
        .partition(tp)
        .unwrap();
    for broker in cluster.nodes.iter().flatten() {
        let p = broker.replica_manager().partition(tp).unwrap();
        assert_eq!(p.log_end_offset(), leader_partition.log_end_offset());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_hold_the_leaders_batches() {
    let cluster = TestCluster::start(3, &[]).await;
    let tp = create(&cluster, "replicated").await;
    let leader = leader_of(&cluster, &tp).await;
    produce(&cluster.bootstrap(leader), &tp.topic, 0, 1000).await;
    wait_identical(&cluster, &tp, leader, 1000, "1000 records").await;
    for broker in cluster.nodes.iter().flatten() {
        if let Some(fetchers) = broker.replica_manager().fetcher_manager() {
            let stats = fetchers.stats();
            println!("fetcher stats: {stats:?}");
        }
    }
    let follower = cluster.other_than(leader);
    let stats = cluster
        .node(follower)
        .replica_manager()
        .fetcher_manager()
        .expect("a cluster member fetches")
        .stats();
    assert!(stats.records_fetched >= 1000, "{stats:?}");
    cluster.shutdown().await;
}

/// In durable mode (`flush.messages=1`), so the follower's fsync before each fetch runs too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_follower_catches_up_after_restart() {
    let mut cluster = TestCluster::start(3, &[("log.flush.interval.messages", "1")]).await;
    let tp = create(&cluster, "catch-up").await;
    let leader = leader_of(&cluster, &tp).await;
    produce(&cluster.bootstrap(leader), &tp.topic, 0, 100).await;
    wait_identical(&cluster, &tp, leader, 100, "before the stop").await;
    let follower = cluster.other_than(leader);
    cluster.stop(follower).await;
    // Only a follower stopped: the leader is the same.
    assert_eq!(leader_of(&cluster, &tp).await, leader);
    produce(&cluster.bootstrap(leader), &tp.topic, 100, 500).await;
    cluster.restart(follower).await;
    wait_identical(&cluster, &tp, leader, 600, "after the restart").await;
    cluster.shutdown().await;
}

/// The leaders node `id` fetches `tp` from (one at most).
fn fetched(cluster: &TestCluster, id: i32, tp: &TopicPartition) -> Vec<i32> {
    cluster
        .node(id)
        .replica_manager()
        .fetcher_manager()
        .expect("a cluster member fetches")
        .fetched_partitions()
        .into_iter()
        .filter(|(t, _, _)| t == tp)
        .map(|(_, leader, _)| leader)
        .collect()
}

/// Leadership moves: the new leader stops fetching the partition, the other follower fetches from the new
/// leader, and the old leader follows it once restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_switch_to_a_new_leader() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let tp = create(&cluster, "failover").await;
    let old_leader = leader_of(&cluster, &tp).await;
    produce(&cluster.bootstrap(old_leader), &tp.topic, 0, 100).await;
    wait_identical(&cluster, &tp, old_leader, 100, "before the failover").await;
    cluster.stop(old_leader).await;
    let new_leader = leader_of(&cluster, &tp).await;
    assert_ne!(new_leader, old_leader);
    let follower = (1..=3)
        .find(|&id| id != old_leader && id != new_leader)
        .unwrap();
    poll_until_async(DEADLINE, "fetchers follow the new leader", || {
        let switched = fetched(&cluster, new_leader, &tp).is_empty()
            && fetched(&cluster, follower, &tp) == vec![new_leader];
        std::future::ready(switched.then_some(()))
    })
    .await;
    produce(&cluster.bootstrap(new_leader), &tp.topic, 100, 200).await;
    wait_identical(&cluster, &tp, new_leader, 300, "after the failover").await;
    cluster.restart(old_leader).await;
    wait_identical(&cluster, &tp, new_leader, 300, "old leader restarted").await;
    assert_eq!(
        fetched(&cluster, old_leader, &tp).len(),
        1,
        "the old leader follows"
    );
    cluster.shutdown().await;
}

/// A follower stopped while DeleteRecords moved the leader's log start past its log end: its fetch is
/// OFFSET_OUT_OF_RANGE, ListOffsets (as a replica) gives the leader's log end and start, and the follower
/// starts over at the batch holding the leader's log start. The running follower raises its log start
/// with the leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_behind_the_leaders_log_start_starts_over_there() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let tp = create(&cluster, "behind").await;
    let leader = leader_of(&cluster, &tp).await;
    produce(&cluster.bootstrap(leader), &tp.topic, 0, 100).await;
    wait_identical(&cluster, &tp, leader, 100, "before the stop").await;
    let follower = cluster.other_than(leader);
    cluster.stop(follower).await;
    produce(&cluster.bootstrap(leader), &tp.topic, 100, 100).await;
    let admin = admin(&cluster.bootstrap(leader));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&tp.topic, 0, Offset::Offset(130))
        .unwrap();
    let deleted = admin.delete_records(&tpl, &admin_options()).await.unwrap();
    let elem = deleted.find_partition(&tp.topic, 0).unwrap();
    assert!(elem.error().is_ok(), "{:?}", elem.error());
    cluster.restart(follower).await;
    wait_identical(&cluster, &tp, leader, 200, "after the restart").await;
    for broker in cluster.nodes.iter().flatten() {
        let p = broker.replica_manager().partition(&tp).unwrap();
        assert_eq!(
            p.log_start_offset(),
            130,
            "node {}",
            broker.bootstrap_servers()
        );
    }
    cluster.shutdown().await;
}

/// Fetch's `diverging_epoch` at work: without it the restarted old leader could only take
/// OFFSET_OUT_OF_RANGE's path (truncate to the new leader's log end), which would keep its own batch at
/// 50..60, and the logs would differ, as in Kafka without epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_diverged_replica_truncates_to_the_new_leaders_log() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let tp = create(&cluster, "diverge").await;
    let old_leader = leader_of(&cluster, &tp).await;
    produce(&cluster.bootstrap(old_leader), &tp.topic, 0, 50).await;
    wait_identical(&cluster, &tp, old_leader, 50, "before the divergence").await;
    // The followers stop fetching (the fetcher drops the partition), so what the leader takes next is
    // on its log only.
    for broker in cluster.nodes.iter().flatten() {
        if let Some(fetchers) = broker.replica_manager().fetcher_manager() {
            fetchers.remove_partitions(std::slice::from_ref(&tp));
        }
    }
    // Three batches: a truncation to the new leader's log end (60) would keep the first, so only the
    // epochs get this right. acks=1: the leader answers after its own write (acks=all would wait for
    // the followers, which no longer fetch).
    for from in [50, 60, 70] {
        produce_acks(&cluster.bootstrap(old_leader), &tp.topic, from, 10, "1").await;
    }
    let old_end = cluster
        .node(old_leader)
        .replica_manager()
        .partition(&tp)
        .unwrap()
        .log_end_offset();
    assert_eq!(old_end, 80);
    cluster.crash(old_leader).await;
    let new_leader = leader_of(&cluster, &tp).await;
    assert_ne!(new_leader, old_leader);
    // Fewer records than the old leader's unreplicated tail: the old leader's log end is past the new
    // leader's, and offsets 50..60 differ in content and epoch.
    produce(&cluster.bootstrap(new_leader), &tp.topic, 1000, 10).await;
    cluster.restart(old_leader).await;
    wait_identical(&cluster, &tp, new_leader, 60, "after the divergence").await;
    cluster.shutdown().await;
}
