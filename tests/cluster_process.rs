//! Three `brook` processes as one cluster, under the faults only separate processes allow: SIGKILL of a
//! broker and of the quorum leader, SIGTERM (controlled shutdown through the binary's signal path), a
//! restart after the metadata log was compacted, and (as root) network partitions in namespaces. Each test
//! prints the figures the README quotes: election time, time to fence a dead broker and move its
//! leaderships, metadata propagation delay.
//!
//! Followers do not replicate yet (issue 16): these tests check leadership and metadata, and produce only
//! to the current leaders.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::client_config;
use common::cluster_process::{
    LIMIT, Netns, ProcessCluster, describe_quorum, file_names, netns_unavailable, secs, wait_for,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// `broker.session.timeout.ms` of [`common::cluster::FAST`].
const SESSION_TIMEOUT: Duration = Duration::from_millis(1500);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn metadata(bootstrap: &str, topic: Option<&str>) -> Result<Metadata, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("metadata client");
    consumer.fetch_metadata(topic, Duration::from_secs(5))
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))
}

/// Creates `topics` (each `partitions` x `replication`) through `bootstrap`; returns per topic the error, if any.
fn create_topics(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    topics: &[String],
    partitions: i32,
    replication: i32,
) -> Vec<Result<String, (String, RDKafkaErrorCode)>> {
    let admin = admin(bootstrap);
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    rt.block_on(admin.create_topics(new.iter(), &options()))
        .expect("CreateTopics request")
}

fn create_topic(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str, partitions: i32) {
    let results = create_topics(rt, bootstrap, &[topic.to_string()], partitions, 3);
    assert!(
        results.iter().all(Result::is_ok),
        "create {topic}: {results:?}"
    );
}

/// Partition -> (leader, replicas) of `topic` as `bootstrap` answers, once every partition has a leader.
fn leaders(bootstrap: &str, topic: &str) -> Option<BTreeMap<i32, (i32, Vec<i32>)>> {
    let m = metadata(bootstrap, Some(topic)).ok()?;
    let t = m.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    let map: BTreeMap<i32, (i32, Vec<i32>)> = t
        .partitions()
        .iter()
        .map(|p| (p.id(), (p.leader(), p.replicas().to_vec())))
        .collect();
    map.values().all(|(l, _)| *l >= 0).then_some(map)
}

fn registered_brokers(bootstrap: &str) -> Option<BTreeSet<i32>> {
    let m = metadata(bootstrap, None).ok()?;
    Some(m.brokers().iter().map(|b| b.id()).collect())
}

/// Waits until every node listed in `via` sees exactly brokers `ids`.
fn wait_for_brokers(cluster: &ProcessCluster, via: &[i32], ids: &[i32]) {
    let want: BTreeSet<i32> = ids.iter().copied().collect();
    for &id in via {
        let bootstrap = cluster.bootstrap(id);
        wait_for(LIMIT, &format!("brokers {ids:?} through node {id}"), || {
            (registered_brokers(&bootstrap)? == want).then_some(())
        });
    }
}

/// Produces `n` keyed records to `topic` through `bootstrap`, every one acknowledged (acks=all).
fn produce(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str, tag: &str, n: usize) {
    let producer: FutureProducer = client_config(bootstrap)
        .set("message.timeout.ms", "30000")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    rt.block_on(async {
        let sends = (0..n).map(|i| {
            let key = format!("{tag}-{i}");
            let producer = &producer;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&key),
                        Duration::from_secs(30),
                    )
                    .await
            }
        });
        for result in futures_util::future::join_all(sends).await {
            if let Err((e, _)) = result {
                panic!("produce through {bootstrap}: {e}");
            }
        }
    });
}

/// Every record of `topic` (all partitions, from the start) read through `bootstrap`: the values.
fn consume_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set(
            "group.id",
            format!("cluster-process-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while values.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => values.push(String::from_utf8_lossy(m.payload().unwrap_or(&[])).into()),
            Some(Err(e)) => eprintln!("consume through {bootstrap}: {e}"),
            None => {}
        }
    }
    values
}

#[test]
fn produce_and_consume_through_each_node_and_metadata_propagates() {
    let rt = runtime();
    let cluster = ProcessCluster::start(3, &[]);
    let started = Instant::now();
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    println!("three processes registered in {}", secs(started.elapsed()));

    // Metadata propagation: created through node 1, listed with leaders by node 3.
    let mut delays = Vec::new();
    for i in 0..5 {
        let topic = format!("propagate-{i}");
        create_topic(&rt, &cluster.bootstrap(1), &topic, 3);
        let created = Instant::now();
        let bootstrap3 = cluster.bootstrap(3);
        wait_for(LIMIT, "topic on node 3", || leaders(&bootstrap3, &topic));
        delays.push(created.elapsed());
    }
    delays.sort();
    println!(
        "metadata propagation (CreateTopics answered by node 1 -> listed with leaders by node 3): \
         median {}, max {} over {} topics",
        secs(delays[delays.len() / 2]),
        secs(*delays.last().unwrap()),
        delays.len()
    );

    let topic = "through-each";
    create_topic(&rt, &cluster.bootstrap(2), topic, 6);
    let layout = wait_for(LIMIT, "through-each led everywhere", || {
        leaders(&cluster.bootstrap(1), topic)
    });
    let led_by: BTreeSet<i32> = layout.values().map(|(l, _)| *l).collect();
    assert_eq!(
        led_by,
        BTreeSet::from([1, 2, 3]),
        "leaders spread: {layout:?}"
    );
    let mut sent = Vec::new();
    for id in 1..=3 {
        let tag = format!("via{id}");
        produce(&rt, &cluster.bootstrap(id), topic, &tag, 100);
        sent.extend((0..100).map(|i| format!("{tag}-{i}")));
    }
    sent.sort();
    for id in 1..=3 {
        let mut got = consume_all(&cluster.bootstrap(id), topic, 6, sent.len());
        got.sort();
        assert_eq!(got, sent, "every record read back through node {id}");
    }
}

/// CreatePartitions with a manual assignment (librdkafka's 0081 do_test_CreatePartitions): the cluster
/// places the new partitions on the brokers named, and refuses an unknown broker as Kafka does.
#[test]
fn create_partitions_honours_a_manual_assignment() {
    let rt = runtime();
    let cluster = ProcessCluster::start(3, &[]);
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    let topic = "grown";
    create_topic(&rt, &cluster.bootstrap(1), topic, 1);
    let admin = admin(&cluster.bootstrap(2));
    let grow = rdkafka::admin::NewPartitions::new(topic, 3).assign(&[&[3, 1, 2], &[2, 3, 1]]);
    let results = rt
        .block_on(admin.create_partitions([&grow], &options()))
        .expect("CreatePartitions request");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let layout = wait_for(LIMIT, "three partitions", || {
        leaders(&cluster.bootstrap(3), topic).filter(|l| l.len() == 3)
    });
    assert_eq!(layout[&1].1, vec![3, 1, 2], "{layout:?}");
    assert_eq!(layout[&2].1, vec![2, 3, 1], "{layout:?}");
    let unknown = rdkafka::admin::NewPartitions::new(topic, 4).assign(&[&[1, 2, 9]]);
    let results = rt
        .block_on(admin.create_partitions([&unknown], &options()))
        .expect("CreatePartitions request");
    assert_eq!(
        results[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicaAssignment
    );
}

#[test]
fn a_killed_broker_is_fenced_and_its_leaderships_move() {
    let rt = runtime();
    let mut cluster = ProcessCluster::start(3, &[]);
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    let topic = "kill-broker";
    create_topic(&rt, &cluster.bootstrap(1), topic, 6);
    let before = wait_for(LIMIT, "topic led", || leaders(&cluster.bootstrap(1), topic));
    // A broker that is not the quorum leader, so only the broker fails (the controller test kills that).
    let (quorum_leader, _) = cluster.wait_quorum_leader(1, None, LIMIT);
    let victim = (1..=3).find(|&id| id != quorum_leader).unwrap();
    let victim_led: Vec<i32> = before
        .iter()
        .filter(|(_, (l, _))| *l == victim)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        !victim_led.is_empty(),
        "node {victim} leads some: {before:?}"
    );

    cluster.kill(victim);
    let killed = Instant::now();
    let survivor = cluster.bootstrap_except(victim);
    let after = wait_for(LIMIT, "leaderships moved off the killed broker", || {
        let now = leaders(&survivor, topic)?;
        now.values().all(|(l, _)| *l != victim).then_some(now)
    });
    let moved = killed.elapsed();
    let fenced_brokers = wait_for(LIMIT, "the dead broker leaves Metadata", || {
        registered_brokers(&survivor).filter(|b| !b.contains(&victim))
    });
    println!(
        "SIGKILL of broker {victim} -> its {} leaderships moved in {} (broker.session.timeout.ms {} ms)",
        victim_led.len(),
        secs(moved),
        SESSION_TIMEOUT.as_millis()
    );
    // The session must expire first (a dead broker sends nothing); the move follows within a few
    // heartbeat intervals of that.
    assert!(
        moved < SESSION_TIMEOUT + Duration::from_secs(3),
        "moved after {moved:?}"
    );
    for (p, (leader, replicas)) in &after {
        assert!(
            replicas.contains(leader),
            "partition {p}: leader {leader} is one of its replicas {replicas:?}"
        );
        assert_eq!(replicas.len(), 3, "replicas stay assigned: {after:?}");
    }
    assert_eq!(fenced_brokers.len(), 2, "{fenced_brokers:?}");

    // Producing to every partition works again through the survivors.
    produce(&rt, &survivor, topic, "after-kill", 60);

    // The broker comes back on its data directory and registers again.
    let restarted = Instant::now();
    cluster.restart(victim);
    wait_for_brokers(&cluster, &[victim, quorum_leader], &[1, 2, 3]);
    println!(
        "restarted broker {victim} registered again in {}",
        secs(restarted.elapsed())
    );
}

#[test]
fn sigterm_moves_every_leadership_away_before_the_process_exits() {
    let rt = runtime();
    // A long session: leaderships that moved quickly moved by controlled shutdown, not by expiry.
    let session = Duration::from_secs(20);
    let mut cluster = ProcessCluster::start(3, &[("broker.session.timeout.ms", "20000")]);
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    let topic = "sigterm";
    create_topic(&rt, &cluster.bootstrap(1), topic, 6);
    let before = wait_for(LIMIT, "topic led", || leaders(&cluster.bootstrap(1), topic));
    let victim = 2;
    assert!(
        before.values().any(|(l, _)| *l == victim),
        "node {victim} leads some: {before:?}"
    );
    let survivor = cluster.bootstrap_except(victim);

    cluster.terminate(victim);
    let signalled = Instant::now();
    // While the process still runs, the metadata must show every leadership moved.
    let mut moved_while_running = None;
    let status = loop {
        if let Some(status) = cluster.try_exit(victim) {
            break status;
        }
        if moved_while_running.is_none()
            && let Some(now) = leaders(&survivor, topic)
            && now.values().all(|(l, _)| *l != victim)
            && cluster.try_exit(victim).is_none()
        {
            moved_while_running = Some(signalled.elapsed());
        }
        assert!(
            signalled.elapsed() < LIMIT,
            "node {victim} still runs {LIMIT:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let exited = signalled.elapsed();
    let log = cluster.log_since_start(victim);
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(
        log.contains("controlled shutdown: leaderships moved away"),
        "the controller let the broker go only after moving its leaderships:\n{log}"
    );
    assert!(log.contains("shut down cleanly"), "{log}");
    let moved = moved_while_running.unwrap_or_else(|| {
        panic!(
            "leaderships never seen moved while node {victim} ran (exited after {exited:?})\n{log}"
        )
    });
    assert!(
        moved < session,
        "moved by controlled shutdown, not session expiry: {moved:?}"
    );
    let after = leaders(&survivor, topic).expect("metadata after exit");
    assert!(after.values().all(|(l, _)| *l != victim), "{after:?}");
    println!(
        "SIGTERM of broker {victim}: leaderships moved in {}, process exited 0 after {}",
        secs(moved),
        secs(exited)
    );
    // The cluster keeps serving: producing to every partition through the survivors.
    produce(&rt, &survivor, topic, "after-term", 60);
}

#[test]
fn killing_the_quorum_leader_elects_another_while_a_producer_keeps_producing() {
    let rt = runtime();
    let mut cluster = ProcessCluster::start(3, &[]);
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    let (old_leader, old_epoch) = cluster.wait_quorum_leader(1, None, LIMIT);
    for id in 1..=3 {
        assert_eq!(
            cluster.quorum_leader(id).map(|(l, _)| l),
            Some(old_leader),
            "node {id} names the same quorum leader"
        );
    }
    let topic = "through-election";
    create_topic(&rt, &cluster.bootstrap(1), topic, 3);
    wait_for(LIMIT, "topic led", || leaders(&cluster.bootstrap(1), topic));

    // A producer through the other two nodes, sending all along (retries within message.timeout.ms).
    let survivor_list = cluster.bootstrap_except(old_leader);
    let producer: Arc<FutureProducer> = Arc::new(
        client_config(&survivor_list)
            .set("message.timeout.ms", "30000")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("producer"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let producing = {
        let (producer, stop, sent, failed) =
            (producer.clone(), stop.clone(), sent.clone(), failed.clone());
        rt.spawn(async move {
            let mut deliveries = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let producer = producer.clone();
                let (sent, failed) = (sent.clone(), failed.clone());
                deliveries.push(tokio::spawn(async move {
                    let value = format!("v{i}");
                    match producer
                        .send(
                            FutureRecord::to(topic).key(&value).payload(&value),
                            Duration::from_secs(30),
                        )
                        .await
                    {
                        Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                        Err((e, _)) => {
                            eprintln!("send v{i}: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for d in deliveries {
                d.await.expect("delivery task");
            }
            i
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sent.load(Ordering::Relaxed) > 0,
        "the producer delivers before the kill"
    );

    cluster.kill(old_leader);
    let killed = Instant::now();
    let survivors: Vec<i32> = (1..=3).filter(|&id| id != old_leader).collect();
    let via = survivors[0];
    let (new_leader, new_epoch) = cluster.wait_quorum_leader_any(&survivors, old_leader, LIMIT);
    let elected = killed.elapsed();
    assert!(new_epoch > old_epoch, "epoch {old_epoch} -> {new_epoch}");
    println!(
        "SIGKILL of the quorum leader {old_leader} (epoch {old_epoch}) -> node {new_leader} elected \
         (epoch {new_epoch}) in {} (controller.quorum.election.timeout.ms 300)",
        secs(elected)
    );
    // The dead broker's partitions move once its session expires; until then Metadata may still name it
    // as the controller (the lowest live id, as Kafka names any live broker), and librdkafka's admin client
    // then waits for it.
    wait_for(LIMIT, "leaderships moved off the dead controller", || {
        let now = leaders(&survivor_list, topic)?;
        now.values().all(|(l, _)| *l != old_leader).then_some(())
    });
    let at_move = sent.load(Ordering::Relaxed);
    println!(
        "the dead quorum leader's leaderships moved {} after the kill",
        secs(killed.elapsed())
    );
    // The new controller serves metadata changes.
    let changed = Instant::now();
    // Two brokers are unfenced now: replication factor 2.
    let results = create_topics(&rt, &survivor_list, &["after-election".to_string()], 2, 2);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    wait_for(LIMIT, "after-election led", || {
        leaders(&cluster.bootstrap(via), "after-election")
    });
    println!(
        "first CreateTopics after the election done in {}",
        secs(changed.elapsed())
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let attempted = rt.block_on(producing).expect("producer task");
    let (ok, bad) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "producer through the election: {attempted} sent, {ok} acknowledged, {bad} failed \
         ({at_move} acknowledged when the leaderships had moved)"
    );
    assert_eq!(
        bad, 0,
        "no send failed (retries cover the election and the fencing)"
    );
    assert_eq!(ok, attempted);

    // The old leader rejoins as a follower of the new one.
    cluster.restart(old_leader);
    wait_for_brokers(&cluster, &[old_leader], &[1, 2, 3]);
    let (leader, _) = cluster.wait_quorum_leader(old_leader, None, LIMIT);
    assert_eq!(
        leader, new_leader,
        "the restarted node follows the elected leader"
    );
}

#[test]
fn a_node_restarted_after_the_metadata_log_was_compacted_catches_up() {
    let rt = runtime();
    // A snapshot every ~10 metadata records (the quorum counts 1 KiB per record).
    let mut cluster = ProcessCluster::start(
        3,
        &[("metadata.log.max.record.bytes.between.snapshots", "10240")],
    );
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    let (leader, _) = cluster.wait_quorum_leader(1, None, LIMIT);
    let down = (1..=3).find(|&id| id != leader).unwrap();
    let up = cluster.bootstrap_except(down);
    cluster.kill(down);
    let others: Vec<i32> = (1..=3).filter(|&i| i != down).collect();
    wait_for_brokers(&cluster, &[leader], &others);

    let topics: Vec<String> = (0..60).map(|i| format!("while-down-{i:02}")).collect();
    // Two brokers are unfenced: a replication factor of 3 would be refused (as Kafka does).
    for chunk in topics.chunks(5) {
        let results = create_topics(&rt, &up, chunk, 1, 2);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    let leader_files = file_names(&cluster.metadata_dir(leader));
    assert!(
        leader_files.iter().any(|f| f == "snapshot"),
        "the leader snapshotted its metadata log: {leader_files:?}"
    );
    let status = describe_quorum(&cluster.bootstrap(leader)).expect("DescribeQuorum");
    println!(
        "metadata log while node {down} was down: high watermark {}",
        status.high_watermark
    );

    let restarted = Instant::now();
    cluster.restart(down);
    let bootstrap = cluster.bootstrap(down);
    wait_for(LIMIT, "every topic listed by the restarted node", || {
        let m = metadata(&bootstrap, None).ok()?;
        let names: BTreeSet<&str> = m.topics().iter().map(|t| t.name()).collect();
        topics
            .iter()
            .all(|t| names.contains(t.as_str()))
            .then_some(())
    });
    println!(
        "node {down} restarted after compaction listed all {} topics in {}",
        topics.len(),
        secs(restarted.elapsed())
    );
    let files = file_names(&cluster.metadata_dir(down));
    assert!(files.iter().any(|f| f == "snapshot"), "{files:?}");
    wait_for_brokers(&cluster, &[down], &[1, 2, 3]);
}

/// Network partitions need namespaces and nftables, so root. Skipped (loudly) otherwise, never under CI.
fn netns_or_skip(test: &str) -> Option<()> {
    match netns_unavailable() {
        None => Some(()),
        Some(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED {test}: network namespaces unavailable ({why})");
            None
        }
        Some(why) => panic!("{test} needs network namespaces under CI=true: {why}"),
    }
}

#[test]
fn an_isolated_quorum_leader_is_replaced_and_rejoins_after_the_partition_heals() {
    if netns_or_skip("an_isolated_quorum_leader_is_replaced_and_rejoins_after_the_partition_heals")
        .is_none()
    {
        return;
    }
    let rt = runtime();
    let netns = Netns::create(3);
    // A session longer than the quorum's request timeout (5 s): a broker whose heartbeat is stuck on the
    // unreachable old leader answers the new one only after that (see the report on issue 15: with the
    // 1.5 s session of FAST the new leader fences every broker, itself included).
    let cluster =
        ProcessCluster::start_with(3, &[("broker.session.timeout.ms", "9000")], Some(netns));
    wait_for_brokers(&cluster, &[1, 2, 3], &[1, 2, 3]);
    let (old_leader, old_epoch) = cluster.wait_quorum_leader(1, None, LIMIT);
    let majority: Vec<i32> = (1..=3).filter(|&id| id != old_leader).collect();
    let majority_list = majority
        .iter()
        .map(|&id| cluster.bootstrap(id))
        .collect::<Vec<_>>()
        .join(",");
    create_topic(&rt, &majority_list, "before-partition", 3);

    let netns = cluster.netns();
    netns.isolate(old_leader);
    let cut = Instant::now();
    let (new_leader, new_epoch) = cluster.wait_quorum_leader_any(&majority, old_leader, LIMIT);
    let elected = cut.elapsed();
    assert!(majority.contains(&new_leader) && new_epoch > old_epoch);
    println!(
        "quorum leader {old_leader} isolated -> node {new_leader} elected (epoch {new_epoch}) in {}",
        secs(elected)
    );
    // The majority fences the unreachable broker once its session lapses; from then on Metadata names a
    // reachable controller (the lowest live id) and clients stop sending there.
    let fenced = wait_for(LIMIT, "the isolated broker fenced", || {
        registered_brokers(&majority_list).filter(|b| !b.contains(&old_leader))
    });
    println!(
        "isolated broker {old_leader} fenced after {} (broker.session.timeout.ms 9000); brokers {fenced:?}",
        secs(cut.elapsed())
    );
    // The majority keeps serving metadata changes.
    let results = create_topics(&rt, &majority_list, &["during-partition".to_string()], 2, 2);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for &id in &majority {
        wait_for(LIMIT, "during-partition on the majority", || {
            leaders(&cluster.bootstrap(id), "during-partition")
        });
    }
    // The isolated node's own metadata writes fail with a retriable error: exercised from inside its
    // namespace (the client cannot reach it from outside).
    let isolated_answer = isolated_create_topic(&cluster, old_leader);
    println!("CreateTopics through the isolated node: {isolated_answer}");
    assert!(
        isolated_answer.starts_with("error 7 ") || isolated_answer.starts_with("error 41 "),
        "{isolated_answer}"
    );

    netns.heal(old_leader);
    let healed = Instant::now();
    let old_bootstrap = cluster.bootstrap(old_leader);
    wait_for(
        LIMIT,
        "the healed node lists the topic made during the partition",
        || leaders(&old_bootstrap, "during-partition"),
    );
    // Until a message of the new term reaches it, the healed node still believes it leads (its own answer
    // names itself, as a partitioned Kafka controller's would): wait for it to name another node.
    let (leader, _) = cluster.wait_quorum_leader(old_leader, Some(old_leader), LIMIT);
    assert_eq!(leader, new_leader, "the healed node follows the new leader");
    wait_for_brokers(&cluster, &[old_leader], &[1, 2, 3]);
    println!(
        "healed node {old_leader} caught up in {}",
        secs(healed.elapsed())
    );
}

/// CreateTopics (raw, v7) for one new topic sent to node `id` from inside its own namespace: "ok" or the
/// error code and message it answered.
fn isolated_create_topic(cluster: &ProcessCluster, id: i32) -> String {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let addr = cluster.bootstrap(id);
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(
                    "from-the-isolated-node",
                )))
                .with_num_partitions(1)
                .with_replication_factor(3),
        ]);
    let asked = Instant::now();
    let answer = cluster.netns().run_in(id, move || {
        common::raw::try_request::<_, CreateTopicsResponse>(
            addr.as_str(),
            ApiKey::CreateTopics,
            7,
            &request,
        )
    });
    let took = asked.elapsed();
    match answer {
        Ok(response) => {
            let topic = &response.topics[0];
            if topic.error_code == 0 {
                "ok".into()
            } else {
                format!(
                    "error {} {:?} ({:?}) after {}",
                    topic.error_code,
                    kafka_protocol::ResponseError::try_from_code(topic.error_code),
                    topic.error_message.as_ref().map(|m| m.as_str()),
                    secs(took)
                )
            }
        }
        Err(e) => format!("no answer: {e} after {}", secs(took)),
    }
}

/// A node whose `controller.quorum.voters` disagrees with the running cluster's exits 1 with one line that
/// names both lists, and the cluster is unaffected.
#[test]
fn a_node_with_other_voters_exits_with_both_lists() {
    let cluster = ProcessCluster::start(3, &[]);
    wait_for_brokers(&cluster, &[1], &[1, 2, 3]);
    let two = cluster
        .voters
        .split(',')
        .take(2)
        .collect::<Vec<_>>()
        .join(",");
    let dir = cluster.root.join("node4");
    let started = Instant::now();
    let output = common::process::brook_command()
        .args([
            "--override",
            "process.roles=broker",
            "--override",
            "node.id=4",
        ])
        .arg("--override")
        .arg(format!("controller.quorum.voters={two}"))
        .args(["--override", "controller.listener.names=CONTROLLER"])
        .args(["--override", "listeners=PLAINTEXT://127.0.0.1:0"])
        .args([
            "--override",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ])
        .arg("--override")
        .arg(format!("log.dirs={}", dir.display()))
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run brook");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("refused in {}: {stderr}", secs(started.elapsed()));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let refusal = stderr
        .lines()
        .find(|l| l.starts_with("brook: "))
        .unwrap_or_else(|| panic!("no refusal line: {stderr}"));
    assert!(
        refusal.contains("controller.quorum.voters disagree")
            && refusal.contains(&format!("has {two} but"))
            && refusal.contains(&format!("has {}", cluster.voters)),
        "{refusal}"
    );
    wait_for_brokers(&cluster, &[2], &[1, 2, 3]);
}
