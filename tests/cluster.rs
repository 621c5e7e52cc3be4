//! Several brooks as one cluster (issue 15): a Raft metadata quorum of three combined nodes on loopback,
//! driven by stock clients (rdkafka).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{TestCluster, fetch_metadata};
use common::{
    DEADLINE, admin, admin_options, assign, blocking, consume_n, consumer, poll_until_async,
    producer,
};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

/// Creates `topic` through node `through` and waits until every running node's metadata has it.
async fn create(cluster: &TestCluster, through: i32, topic: &str, partitions: i32, rf: i32) {
    let admin = admin(&cluster.bootstrap(through));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf));
    let results = admin.create_topics([&new], &admin_options()).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    for node in cluster.nodes.iter().flatten() {
        let bootstrap = node.bootstrap_servers();
        leaders_of(&bootstrap, topic, partitions as usize).await;
    }
}

/// The leader of each partition of `topic` as seen through `bootstrap`, once it has `n` partitions, each
/// with a leader.
async fn leaders_of(bootstrap: &str, topic: &str, n: usize) -> Vec<i32> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    poll_until_async(
        DEADLINE,
        &format!("{topic} with {n} led partitions"),
        || {
            let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
            async move {
                let m = fetch_metadata(&bootstrap, Some(&topic)).await.ok()?;
                let t = m.topics().first()?;
                let mut leaders: Vec<(i32, i32)> = t
                    .partitions()
                    .iter()
                    .map(|p| (p.id(), p.leader()))
                    .collect();
                leaders.sort();
                (leaders.len() == n && leaders.iter().all(|(_, l)| *l >= 0))
                    .then(|| leaders.into_iter().map(|(_, l)| l).collect())
            }
        },
    )
    .await
}

async fn produce(bootstrap: &str, topic: &str, partition: i32, values: &[String]) {
    let producer = producer(bootstrap, &[("acks", "all")]);
    for value in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(value),
                DEADLINE,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}-{partition}: {e}"));
    }
}

async fn consume_values(bootstrap: &str, topic: &str, partition: i32, n: usize) -> Vec<String> {
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, topic, &[(partition, 0)]);
    consume_n(&consumer, n, DEADLINE)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

fn describe_quorum(addr: &str) -> DescribeQuorumResponse {
    let request = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    common::raw::request(addr, ApiKey::DescribeQuorum, 2, &request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_form_one_cluster_and_every_node_lists_them() {
    let cluster = TestCluster::start(3, &[]).await;
    for id in 1..=3 {
        assert!(
            cluster.node(id).wait_until_unfenced(DEADLINE).await,
            "node {id} unfenced"
        );
        let metadata = fetch_metadata(&cluster.bootstrap(id), None).await.unwrap();
        let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3], "through node {id}");
        for broker in metadata.brokers() {
            let addr = cluster.node(broker.id()).local_addr();
            assert_eq!(
                broker.port() as u16,
                addr.port(),
                "broker {} endpoint",
                broker.id()
            );
        }
    }
    let ids: Vec<&str> = (1..=3).map(|id| cluster.node(id).cluster_id()).collect();
    assert!(ids.iter().all(|c| *c == ids[0]), "one cluster id: {ids:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_created_through_any_node_are_placed_across_the_brokers() {
    let cluster = TestCluster::start(3, &[]).await;
    let admin = admin(&cluster.bootstrap(2));
    let topic = NewTopic::new("placed", 6, TopicReplication::Fixed(3));
    let results = admin
        .create_topics([&topic], &admin_options())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let bootstrap = cluster.bootstrap(3);
    let metadata = poll_until_async(DEADLINE, "placed visible on node 3", || {
        let bootstrap = bootstrap.clone();
        async move {
            let m = fetch_metadata(&bootstrap, Some("placed")).await.ok()?;
            (m.topics().first()?.partitions().len() == 6).then_some(m)
        }
    })
    .await;
    let partitions = metadata.topics()[0].partitions();
    let mut leaders = std::collections::BTreeMap::new();
    for p in partitions {
        let mut replicas = p.replicas().to_vec();
        replicas.sort();
        assert_eq!(replicas, vec![1, 2, 3], "partition {} replicas", p.id());
        *leaders.entry(p.leader()).or_insert(0) += 1;
    }
    assert_eq!(
        leaders.len(),
        3,
        "leaders spread over the brokers: {leaders:?}"
    );

    // Too few brokers for the replication factor: Kafka's error.
    let too_many = NewTopic::new("too-many", 1, TopicReplication::Fixed(4));
    let results = admin
        .create_topics([&too_many], &admin_options())
        .await
        .unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().1,
        rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor
    );
    cluster.shutdown().await;
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_produce_and_consume_through_any_node() {
    let cluster = TestCluster::start(3, &[]).await;
    create(&cluster, 1, "anywhere", 3, 3).await;
    let leaders = leaders_of(&cluster.bootstrap(1), "anywhere", 3).await;
    for partition in 0..3 {
        // Bootstrap through a node that does not lead the partition: the client finds the leader.
        let through = cluster.other_than(leaders[partition as usize]);
        let values: Vec<String> = (0..20).map(|i| format!("p{partition}-{i}")).collect();
        produce(&cluster.bootstrap(through), "anywhere", partition, &values).await;
        let other = cluster.other_than(through);
        assert_eq!(
            consume_values(&cluster.bootstrap(other), "anywhere", partition, 20).await,
            values
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_broker_is_fenced_and_its_leaderships_move() {
    let mut cluster = TestCluster::start(3, &[]).await;
    create(&cluster, 1, "moving", 6, 3).await;
    let before = leaders_of(&cluster.bootstrap(1), "moving", 6).await;
    let victim = before[0];
    let survivor = cluster.other_than(victim);
    let crashed_at = Instant::now();
    cluster.crash(victim).await;
    let bootstrap = cluster.bootstrap(survivor);
    let after = poll_until_async(DEADLINE, "leaderships moved off the crashed broker", || {
        let bootstrap = bootstrap.clone();
        async move {
            let m = fetch_metadata(&bootstrap, Some("moving")).await.ok()?;
            let t = m.topics().first()?;
            let leaders: Vec<i32> = t.partitions().iter().map(|p| p.leader()).collect();
            let fenced = !m.brokers().iter().any(|b| b.id() == victim);
            (fenced && leaders.iter().all(|&l| l >= 0 && l != victim)).then_some(leaders)
        }
    })
    .await;
    println!(
        "broker {victim} fenced and its leaderships moved {:?} after the crash (session timeout 1.5 s): {before:?} -> {after:?}",
        crashed_at.elapsed()
    );
    // The restarted broker is unfenced again and listed.
    cluster.restart(victim).await;
    cluster.wait_for_brokers(3).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_broker_moves_its_leaderships_before_it_exits() {
    let mut cluster = TestCluster::start(3, &[]).await;
    create(&cluster, 2, "handover", 6, 3).await;
    let before = leaders_of(&cluster.bootstrap(1), "handover", 6).await;
    let stopping = before[0];
    let survivor = cluster.other_than(stopping);
    let started = Instant::now();
    cluster.stop(stopping).await;
    let stop_took = started.elapsed();
    // Already moved when the stop returned: no wait for a session to expire.
    let m = fetch_metadata(&cluster.bootstrap(survivor), Some("handover"))
        .await
        .unwrap();
    let leaders: Vec<i32> = m.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.leader())
        .collect();
    assert!(
        leaders.iter().all(|&l| l >= 0 && l != stopping),
        "leaders after broker {stopping} stopped: {leaders:?}"
    );
    println!(
        "controlled shutdown of broker {stopping} took {stop_took:?}: {before:?} -> {leaders:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_quorum_names_the_leader_and_every_voter() {
    let cluster = TestCluster::start(3, &[]).await;
    for id in 1..=3 {
        let addr = cluster.bootstrap(id);
        let response = blocking(move || describe_quorum(&addr));
        assert_eq!(response.error_code, 0);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{:?}", partition.error_message);
        assert!((1..=3).contains(&partition.leader_id.0), "{partition:?}");
        assert!(partition.leader_epoch >= 1);
        assert!(partition.high_watermark > 0);
        let mut voters: Vec<i32> = partition
            .current_voters
            .iter()
            .map(|v| v.replica_id.0)
            .collect();
        voters.sort();
        assert_eq!(voters, vec![1, 2, 3]);
        assert!(
            partition
                .current_voters
                .iter()
                .all(|v| v.log_end_offset > 0)
        );
        assert_eq!(response.nodes.len(), 3);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_restarts_with_its_topics_and_data() {
    let mut cluster = TestCluster::start(3, &[]).await;
    create(&cluster, 3, "kept", 2, 3).await;
    let leaders = leaders_of(&cluster.bootstrap(1), "kept", 2).await;
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    produce(&cluster.bootstrap(leaders[0]), "kept", 0, &values).await;
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    let restarts = (1..=3).map(|id| {
        let spec = cluster.specs[(id - 1) as usize].clone();
        let config = cluster.config_of(&spec);
        async move { brook::Broker::start(config).await.expect("restart") }
    });
    let nodes = futures_util::future::join_all(restarts).await;
    cluster.nodes = nodes.into_iter().map(Some).collect();
    cluster.wait_for_brokers(3).await;
    let leaders = leaders_of(&cluster.bootstrap(2), "kept", 2).await;
    assert_eq!(
        consume_values(&cluster.bootstrap(leaders[0]), "kept", 0, 10).await,
        values
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_after_the_metadata_log_was_compacted_catches_up_from_a_snapshot() {
    // A snapshot every few commands, so the log is purged while node 3 is away.
    let mut cluster = TestCluster::start(
        3,
        &[("metadata.log.max.record.bytes.between.snapshots", "4096")],
    )
    .await;
    cluster.stop(3).await;
    for i in 0..20 {
        let admin = admin(&cluster.bootstrap(1));
        let name = format!("while-away-{i}");
        let new = NewTopic::new(&name, 1, TopicReplication::Fixed(2));
        let results = admin.create_topics([&new], &admin_options()).await.unwrap();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }
    cluster.restart(3).await;
    let bootstrap = cluster.bootstrap(3);
    poll_until_async(DEADLINE, "node 3 lists every topic", || {
        let bootstrap = bootstrap.clone();
        async move {
            let m = fetch_metadata(&bootstrap, None).await.ok()?;
            let n = m
                .topics()
                .iter()
                .filter(|t| t.name().starts_with("while-away-"))
                .count();
            (n == 20).then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_group_commits_through_the_coordinator_on_the_offsets_partition_leader() {
    let cluster = TestCluster::start(3, &[("offsets.topic.num.partitions", "3")]).await;
    create(&cluster, 1, "grouped", 1, 3).await;
    let leaders = leaders_of(&cluster.bootstrap(1), "grouped", 1).await;
    let values: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    produce(&cluster.bootstrap(leaders[0]), "grouped", 0, &values).await;
    let bootstrap = cluster.bootstrap(2);
    let committed = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let consumer: BaseConsumer = common::client_config(&bootstrap)
            .set("group.id", "cluster-group")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["grouped"]).unwrap();
        let deadline = Instant::now() + DEADLINE;
        let mut seen = 0;
        while seen < 5 && Instant::now() < deadline {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                seen += 1;
            }
        }
        assert_eq!(seen, 5);
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        let tpl = consumer.committed(Duration::from_secs(10)).unwrap();
        tpl.find_partition("grouped", 0).unwrap().offset()
    })
    .await
    .unwrap();
    assert_eq!(committed, rdkafka::Offset::Offset(5));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_are_altered_grown_and_deleted_through_every_node() {
    use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
    let cluster = TestCluster::start(3, &[]).await;
    for through in 1..=3 {
        let topic = format!("lifecycle-{through}");
        create(&cluster, through, &topic, 1, 2).await;
        let admin = admin(&cluster.bootstrap(through));
        let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "12345");
        let altered = admin
            .alter_configs([&alter], &admin_options())
            .await
            .unwrap();
        assert!(altered.iter().all(|r| r.is_ok()), "{altered:?}");
        let grow = NewPartitions::new(&topic, 3);
        let grown = admin
            .create_partitions([&grow], &admin_options())
            .await
            .unwrap();
        assert!(grown.iter().all(|r| r.is_ok()), "{grown:?}");
        // Every node sees the new partitions and the config.
        for other in 1..=3 {
            leaders_of(&cluster.bootstrap(other), &topic, 3).await;
            let described = admin_describe_retention(&cluster.bootstrap(other), &topic).await;
            assert_eq!(described.as_deref(), Some("12345"), "through node {other}");
        }
        let deleted = admin
            .delete_topics(&[&topic], &admin_options())
            .await
            .unwrap();
        assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
        for other in 1..=3 {
            let bootstrap = cluster.bootstrap(other);
            let topic = topic.clone();
            poll_until_async(DEADLINE, "topic gone everywhere", || {
                let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
                async move {
                    let m = fetch_metadata(&bootstrap, None).await.ok()?;
                    (!m.topics().iter().any(|t| t.name() == topic)).then_some(())
                }
            })
            .await;
        }
    }
    cluster.shutdown().await;
}

async fn admin_describe_retention(bootstrap: &str, topic: &str) -> Option<String> {
    use rdkafka::admin::ResourceSpecifier;
    let admin = admin(bootstrap);
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options())
        .await
        .ok()?;
    let resource = results.into_iter().next()?.ok()?;
    resource.get("retention.ms")?.value.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_data_directory_becomes_the_first_node_of_a_cluster() {
    common::init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node1");
    // A single brook with a topic, data and a dynamic config.
    let single = common::start_broker_in(&data, &[]).await;
    common::create_topic(&single.bootstrap, "migrated", 2).await;
    let values: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    produce(&single.bootstrap, "migrated", 1, &values).await;
    let single_cluster_id = single.broker.cluster_id().to_string();
    single.shutdown().await;

    // The same directory as node 1 of a one-voter cluster.
    let port = common::cluster::free_port();
    let spec = common::cluster::NodeSpec {
        id: 1,
        controller_port: port,
        data_dir: data.clone(),
    };
    let props = common::cluster::node_properties(
        &spec,
        &format!("1@127.0.0.1:{port}"),
        &[("offsets.topic.replication.factor", "1")],
    );
    let overrides: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let node = common::start_broker_in(&data, &overrides).await;
    assert!(node.broker.wait_until_unfenced(DEADLINE).await);
    assert_eq!(
        node.broker.cluster_id(),
        single_cluster_id,
        "the cluster keeps the directory's id"
    );
    leaders_of(&node.bootstrap, "migrated", 2).await;
    assert_eq!(
        consume_values(&node.bootstrap, "migrated", 1, 8).await,
        values
    );
    assert!(data.join("brook-topics.json.imported").exists());
    node.shutdown().await;

    // A data directory of another cluster is refused.
    let other = tmp.path().join("stranger");
    let stranger = common::start_broker_in(&other, &[]).await;
    stranger.shutdown().await;
    let port2 = common::cluster::free_port();
    let spec2 = common::cluster::NodeSpec {
        id: 1,
        controller_port: port2,
        data_dir: data.clone(),
    };
    // Node 1's quorum directory, with the stranger's identity beside it.
    std::fs::copy(other.join("meta.properties"), data.join("meta.properties")).unwrap();
    let props = common::cluster::node_properties(&spec2, &format!("1@127.0.0.1:{port2}"), &[]);
    let overrides: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let refused = brook::Broker::start(common::base_config(&data, &overrides)).await;
    let error = refused
        .err()
        .expect("another cluster's directory is refused")
        .to_string();
    assert!(error.contains("belongs to cluster"), "{error}");
}
