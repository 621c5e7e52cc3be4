//! Several brooks as one cluster (issue 15): a Raft metadata quorum of three combined nodes on loopback,
//! driven by stock clients (rdkafka).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{TestCluster, fetch_metadata};
use common::{DEADLINE, admin, admin_options, poll_until_async};
use rdkafka::admin::{NewTopic, TopicReplication};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_form_one_cluster_and_every_node_lists_them() {
    let started = Instant::now();
    let cluster = TestCluster::start(3, &[]).await;
    println!(
        "three nodes registered and visible in {:?}",
        started.elapsed()
    );
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
