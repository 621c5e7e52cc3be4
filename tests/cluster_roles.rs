//! Cluster shapes other than combined nodes (issue 15): controller-only voters (`process.roles=controller`)
//! with broker-only nodes (`process.roles=broker`, observers of the metadata quorum), driven by stock
//! clients; and nodes whose `controller.quorum.voters` disagree, which must refuse to start.

mod common;

use std::path::Path;

use brook::{Broker, Config};
use common::cluster::{FAST, fetch_metadata, free_port};
use common::{
    DEADLINE, admin, admin_options, assign, base_config, blocking, consume_n, consumer,
    init_tracing, poll_until_async, producer,
};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

/// One cluster at a time in this binary: five nodes already fill a 2-core machine.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A controller-only voter's properties.
fn controller_config(dir: &Path, id: i32, port: u16, voters: &str) -> Config {
    let listeners = format!("CONTROLLER://127.0.0.1:{port}");
    let id = id.to_string();
    let mut props = vec![
        ("process.roles", "controller"),
        ("node.id", id.as_str()),
        ("controller.quorum.voters", voters),
        ("controller.listener.names", "CONTROLLER"),
        ("listeners", listeners.as_str()),
    ];
    props.extend_from_slice(FAST);
    base_config(dir, &props)
}

/// A broker-only node's properties: a client listener on an ephemeral port, no controller listener.
fn broker_config(dir: &Path, id: i32, voters: &str) -> Config {
    let id = id.to_string();
    let mut props = vec![
        ("process.roles", "broker"),
        ("node.id", id.as_str()),
        ("controller.quorum.voters", voters),
        ("controller.listener.names", "CONTROLLER"),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
    ];
    props.extend_from_slice(FAST);
    base_config(dir, &props)
}

fn voters_of(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

fn describe_quorum(addr: &str) -> DescribeQuorumResponse {
    let request = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    common::raw::request(addr, ApiKey::DescribeQuorum, 2, &request)
}

/// (leader, voters, observers) of the metadata quorum as DescribeQuorum through `addr` answers them.
fn quorum_roles(addr: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let response = describe_quorum(addr);
    let partition = response.topics.first()?.partitions.first()?;
    if response.error_code != 0 || partition.error_code != 0 {
        return None;
    }
    let ids = |replicas: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
        let mut ids: Vec<i32> = replicas.iter().map(|r| r.replica_id.0).collect();
        ids.sort();
        ids
    };
    Some((
        partition.leader_id.0,
        ids(&partition.current_voters),
        ids(&partition.observers),
    ))
}

async fn broker_ids(bootstrap: &str) -> Option<Vec<i32>> {
    let metadata = fetch_metadata(bootstrap, None).await.ok()?;
    let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    ids.sort();
    Some(ids)
}

/// The leaders of `topic`'s `n` partitions once each has one, through `bootstrap`.
async fn leaders_of(bootstrap: &str, topic: &str, n: usize) -> Vec<i32> {
    poll_until_async(DEADLINE, &format!("{topic} led"), || async move {
        let m = fetch_metadata(bootstrap, Some(topic)).await.ok()?;
        let t = m.topics().first()?;
        let mut leaders: Vec<(i32, i32)> = t
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        leaders.sort();
        (leaders.len() == n && leaders.iter().all(|(_, l)| *l >= 0))
            .then(|| leaders.into_iter().map(|(_, l)| l).collect())
    })
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
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}-{partition} via {bootstrap}: {e}"));
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

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, rf: i32) {
    let admin = admin(bootstrap);
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf));
    let results = admin.create_topics([&new], &admin_options()).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// Stops the nodes' background work when a test unwinds without shutting them down.
struct Nodes(Vec<Option<Broker>>);

impl Nodes {
    /// Brokers first (their controlled shutdown needs the quorum), then the controllers together.
    async fn shutdown(mut self) {
        let running: Vec<Broker> = self.0.iter_mut().filter_map(Option::take).collect();
        let (brokers, controllers): (Vec<Broker>, Vec<Broker>) =
            running.into_iter().partition(Broker::is_broker);
        for group in [brokers, controllers] {
            let stops = group
                .into_iter()
                .map(|n| async move { n.shutdown().await.expect("clean shutdown") });
            futures_util::future::join_all(stops).await;
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in self.0.iter().flatten() {
            node.halt();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_only_voters_serve_broker_only_nodes() {
    init_tracing();
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = voters_of(&ports);
    let mut configs: Vec<Config> = (1..=3)
        .map(|id| {
            let dir = tmp.path().join(format!("controller{id}"));
            controller_config(&dir, id, ports[(id - 1) as usize], &voters)
        })
        .collect();
    for id in 4..=5 {
        configs.push(broker_config(
            &tmp.path().join(format!("broker{id}")),
            id,
            &voters,
        ));
    }
    let started = futures_util::future::join_all(
        configs
            .into_iter()
            .map(|config| async move { Broker::start(config).await.expect("node starts") }),
    )
    .await;
    let mut nodes = Nodes(started.into_iter().map(Some).collect());
    let node = |nodes: &Nodes, id: i32| -> String {
        nodes.0[(id - 1) as usize]
            .as_ref()
            .expect("node runs")
            .bootstrap_servers()
    };
    for (i, n) in nodes.0.iter().flatten().enumerate() {
        assert_eq!(n.is_broker(), i >= 3, "node {}", i + 1);
    }
    // The controllers are no brokers: only 4 and 5 are listed, through either broker.
    let (b4, b5) = (node(&nodes, 4), node(&nodes, 5));
    for bootstrap in [&b4, &b5] {
        poll_until_async(DEADLINE, "brokers 4 and 5 listed", || async move {
            (broker_ids(bootstrap).await? == vec![4, 5]).then_some(())
        })
        .await;
    }

    // The quorum: three voters, the two brokers as observers (they join as learners in the background).
    let roles = poll_until_async(DEADLINE, "3 voters and 2 observers", || {
        let b4 = b4.clone();
        async move {
            let roles = blocking(move || quorum_roles(&b4))?;
            (roles.1 == vec![1, 2, 3] && roles.2 == vec![4, 5]).then_some(roles)
        }
    })
    .await;
    println!(
        "quorum through broker 4: leader {}, voters {:?}, observers {:?}",
        roles.0, roles.1, roles.2
    );
    assert!((1..=3).contains(&roles.0), "a controller leads: {roles:?}");

    // A topic of RF=2 over the two brokers; produce and consume through each broker.
    create_topic(&b4, "roles", 2, 2).await;
    leaders_of(&b5, "roles", 2).await;
    for (partition, bootstrap) in [(0, &b4), (1, &b5)] {
        let values: Vec<String> = (0..5).map(|i| format!("p{partition}-{i}")).collect();
        produce(bootstrap, "roles", partition, &values).await;
        for reader in [&b4, &b5] {
            assert_eq!(consume_values(reader, "roles", partition, 5).await, values);
        }
    }

    // Kill the quorum's leader: another controller takes over, and metadata changes still commit.
    let leader = roles.0;
    nodes.0[(leader - 1) as usize]
        .take()
        .expect("leader runs")
        .crash()
        .await;
    let new_leader = poll_until_async(DEADLINE, "a new quorum leader", || {
        let b5 = b5.clone();
        async move {
            let (l, _, _) = blocking(move || quorum_roles(&b5))?;
            ((1..=3).contains(&l) && l != leader).then_some(l)
        }
    })
    .await;
    println!("controller {leader} killed; controller {new_leader} leads");
    create_topic(&b5, "after", 1, 2).await;
    leaders_of(&b4, "after", 1).await;
    let values: Vec<String> = (0..3).map(|i| format!("after-{i}")).collect();
    produce(&b4, "after", 0, &values).await;
    assert_eq!(consume_values(&b5, "after", 0, 3).await, values);
    assert_eq!(broker_ids(&b4).await, Some(vec![4, 5]));

    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_with_other_voters_refuse_to_start() {
    init_tracing();
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let voters = voters_of(&ports[..3]);
    // Two of three voters: a majority, which agrees on the cluster id.
    let started = futures_util::future::join_all((1..=2).map(|id| {
        let dir = tmp.path().join(format!("controller{id}"));
        let config = controller_config(&dir, id, ports[(id - 1) as usize], &voters);
        async move { Broker::start(config).await.expect("node starts") }
    }))
    .await;
    let mut nodes = Nodes(started.into_iter().map(Some).collect());

    // Voter 3 believes in a fourth voter; broker 5 knows only two voters.
    let four = voters_of(&ports);
    let two = voters_of(&ports[..2]);
    let wrong = [
        controller_config(&tmp.path().join("controller3"), 3, ports[2], &four),
        broker_config(&tmp.path().join("broker5"), 5, &two),
    ];
    for (config, theirs) in wrong.into_iter().zip([&four, &two]) {
        let started = std::time::Instant::now();
        let err = match Broker::start(config).await {
            Ok(node) => {
                node.halt();
                panic!("a node with voters {theirs} started among voters {voters}");
            }
            Err(e) => e.to_string(),
        };
        println!("refused after {:?}: {err}", started.elapsed());
        assert!(
            err.contains("controller.quorum.voters disagree")
                && err.contains(theirs.as_str())
                && err.contains(voters.as_str()),
            "the error names both lists: {err}"
        );
    }

    // The right list still joins: the quorum of 1 and 2 is whole.
    let broker = Broker::start(broker_config(&tmp.path().join("broker4"), 4, &voters))
        .await
        .expect("broker 4 starts");
    assert!(
        broker.wait_until_unfenced(DEADLINE).await,
        "broker 4 unfenced"
    );
    let bootstrap = broker.bootstrap_servers();
    nodes.0.push(Some(broker));
    assert_eq!(broker_ids(&bootstrap).await, Some(vec![4]));
    nodes.shutdown().await;
}

/// Issue 15/16: a broker-only node restarted with its data dir (cleanly, then as after `kill -9`) rejoins a
/// controller-only quorum. Its observer socket is an ephemeral port, so each run is reached at a new address
/// that the quorum leader must learn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_broker_only_node_rejoins_the_quorum() {
    init_tracing();
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = voters_of(&ports);
    let controllers = futures_util::future::join_all((1..=3).map(|id| {
        let dir = tmp.path().join(format!("controller{id}"));
        let config = controller_config(&dir, id, ports[(id - 1) as usize], &voters);
        async move { Broker::start(config).await.expect("controller starts") }
    }))
    .await;
    let mut nodes = Nodes(controllers.into_iter().map(Some).collect());
    // The same client address on every run, as a restarted process would have.
    let listener = format!("PLAINTEXT://127.0.0.1:{}", free_port());
    let broker_dir = tmp.path().join("broker4");
    let config = || {
        let mut config = broker_config(&broker_dir, 4, &voters);
        config.set("listeners", &listener).expect("listeners");
        config
    };
    // A restart that never rejoins fails here after this long, not after the member's own 60 s.
    let start = |config: Config| async move {
        let started = std::time::Instant::now();
        let broker = tokio::time::timeout(DEADLINE / 2, Broker::start(config))
            .await
            .expect("broker 4 starts in time")
            .expect("broker 4 starts");
        assert!(
            broker.wait_until_unfenced(DEADLINE / 2).await,
            "broker 4 unfenced"
        );
        println!("broker 4 started and unfenced in {:?}", started.elapsed());
        broker
    };
    nodes.0.push(Some(start(config()).await));
    let b4 = nodes.0[3]
        .as_ref()
        .expect("broker 4 runs")
        .bootstrap_servers();
    create_topic(&b4, "again", 1, 1).await;
    leaders_of(&b4, "again", 1).await;
    let mut values: Vec<String> = Vec::new();
    for run in ["first", "after-sigterm", "after-sigkill"] {
        if run != "first" {
            let broker = nodes.0[3].take().expect("broker 4 runs");
            if run == "after-sigterm" {
                broker.shutdown().await.expect("clean shutdown");
            } else {
                broker.crash().await;
            }
            nodes.0[3] = Some(start(config()).await);
        }
        let b4 = nodes.0[3]
            .as_ref()
            .expect("broker 4 runs")
            .bootstrap_servers();
        let batch: Vec<String> = (0..3).map(|i| format!("{run}-{i}")).collect();
        produce(&b4, "again", 0, &batch).await;
        values.extend(batch);
        assert_eq!(consume_values(&b4, "again", 0, values.len()).await, values);
        let roles = poll_until_async(DEADLINE, "broker 4 observes the quorum", || {
            let b4 = b4.clone();
            async move {
                let roles = blocking(move || quorum_roles(&b4))?;
                (roles.1 == vec![1, 2, 3] && roles.2 == vec![4]).then_some(roles)
            }
        })
        .await;
        println!(
            "{run}: leader {}, voters {:?}, observers {:?}",
            roles.0, roles.1, roles.2
        );
    }
    nodes.shutdown().await;
}
