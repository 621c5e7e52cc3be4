//! Eligible leader replicas (KIP-966, issue 16) against real brokers: five combined nodes (so two of them can
//! be down at once while the metadata quorum keeps a majority), a topic on nodes 2 and 3 only with
//! `min.insync.replicas=2`, read through DescribeTopicPartitions (api 75) with kafka-protocol types and
//! through stock clients (rdkafka).
//!
//! What ELR changes for a client: after both replicas stopped cleanly, the one that left the ISR first comes
//! back and leads at once, with every acknowledged record (without ELR the last ISR member would hold the
//! ISR alone and the partition would stay leaderless until it returned). A replica that crashed instead is
//! not elected on its return: it may have lost its unflushed tail.

mod common;

use common::cluster::{TestCluster, fetch_metadata};
use common::{
    DEADLINE, admin, admin_options, assign, blocking, consume_n, consumer, poll_until,
    poll_until_async, producer,
};
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

const TOPIC: &str = "elr";
/// The two nodes holding `TOPIC`; nodes 1, 4 and 5 keep the quorum while both are down.
const B2: i32 = 2;
const B3: i32 = 3;

/// Partition 0 of `TOPIC` as described: (leader, ISR, ELR, last known ELR).
type Described = (i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// Restarts node `id` and waits until Metadata through it lists it (registered and unfenced).
async fn restart(cluster: &mut TestCluster, id: i32) {
    cluster.restart(id).await;
    let bootstrap = cluster.bootstrap(id);
    poll_until_async(DEADLINE, &format!("broker {id} listed"), || {
        let bootstrap = bootstrap.clone();
        async move {
            let m = fetch_metadata(&bootstrap, None).await.ok()?;
            m.brokers().iter().any(|b| b.id() == id).then_some(())
        }
    })
    .await
}

/// `TOPIC`'s partition 0 as DescribeTopicPartitions v0 through `addr` answers it; None while the broker
/// does not know the topic yet.
fn describe(addr: &str) -> Option<Described> {
    let request = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            TopicRequest::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))),
        ])
        .with_response_partition_limit(2000);
    let response: DescribeTopicPartitionsResponse =
        common::raw::request(addr, ApiKey::DescribeTopicPartitions, 0, &request);
    let topic = response.topics.first().filter(|t| t.error_code == 0)?;
    let p = topic.partitions.first()?;
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Some((
        p.leader_id.0,
        ids(&p.isr_nodes),
        ids(p.eligible_leader_replicas.as_deref().unwrap_or_default()),
        ids(p.last_known_elr.as_deref().unwrap_or_default()),
    ))
}

/// Polls DescribeTopicPartitions through broker `via` until `wanted` holds, and returns what it saw.
async fn described_until(
    cluster: &TestCluster,
    via: i32,
    what: &str,
    wanted: impl Fn(&Described) -> bool,
) -> Described {
    let addr = cluster.bootstrap(via);
    poll_until(DEADLINE, what, || {
        blocking(|| describe(&addr)).filter(|seen| wanted(seen))
    })
    .await
}

async fn produce_all(bootstrap: &str, values: &[String]) {
    let producer = producer(bootstrap, &[("acks", "all")]);
    for value in values {
        producer
            .send(
                FutureRecord::<(), _>::to(TOPIC).partition(0).payload(value),
                DEADLINE,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce via {bootstrap}: {e}"));
    }
}

async fn consume_values(bootstrap: &str, n: usize) -> Vec<String> {
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, TOPIC, &[(0, 0)]);
    consume_n(&consumer, n, DEADLINE)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_eligible_replica_leads_after_a_clean_restart_and_a_crashed_one_does_not() {
    let mut cluster = TestCluster::start(5, &[]).await;

    // ApiVersions advertises DescribeTopicPartitions v0.
    let addr = cluster.bootstrap(B2);
    let versions: ApiVersionsResponse = blocking(move || {
        common::raw::request(
            &addr,
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        )
    });
    let api = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::DescribeTopicPartitions as i16)
        .expect("DescribeTopicPartitions advertised");
    assert_eq!((api.min_version, api.max_version), (0, 0));

    let admin = admin(&cluster.bootstrap(B2));
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Variable(&[&[B2, B3]]))
        .set("min.insync.replicas", "2");
    let results = admin
        .create_topics([&topic], &admin_options())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let seen = described_until(&cluster, B3, "the topic led by 2", |d| d.0 == B2).await;
    assert_eq!(seen, (B2, vec![B2, B3], vec![], vec![]));

    // Acknowledged on both. The last record is acknowledged only once 3 fetched it, in an answer that
    // carried a high watermark past every record before it: 3 knows all of them are committed.
    let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    produce_all(&cluster.bootstrap(B2), &values).await;
    produce_all(&cluster.bootstrap(B2), &["last".to_string()]).await;

    // 3 stops cleanly: the ISR falls below min ISR, so 3 leaves it eligible (the high watermark cannot
    // move without it).
    cluster.stop(B3).await;
    let seen = described_until(&cluster, B2, "3 out of the ISR", |d| d.1 == vec![B2]).await;
    assert_eq!(seen, (B2, vec![B2], vec![B3], vec![]));
    // 2 stops cleanly too: the ISR empties, both stay eligible, 2 is the last known leader.
    cluster.stop(B2).await;

    // 3 comes back: its last stop was clean, so it is still eligible and leads at once.
    restart(&mut cluster, B3).await;
    let seen = described_until(&cluster, B3, "3 elected from the ELR", |d| d.0 == B3).await;
    assert_eq!(seen, (B3, vec![B3], vec![B2], vec![]));
    assert_eq!(consume_values(&cluster.bootstrap(B3), 20).await, values);
    println!("after both brokers stopped cleanly, broker 3 leads from the ELR: {seen:?}");

    // Now 3, the only ISR member, crashes. It comes back without a clean shutdown marker: it may have lost
    // what it had not flushed, so it leaves the ELR and may not lead, although it is up and unfenced.
    cluster.crash(B3).await;
    restart(&mut cluster, B3).await;
    let seen = described_until(&cluster, B3, "3 out of the ELR", |d| {
        !d.2.contains(&B3) && d.1.is_empty()
    })
    .await;
    assert_eq!(seen.0, -1, "a crashed replica is not elected: {seen:?}");
    assert_eq!(seen.2, vec![B2], "{seen:?}");
    let metadata = fetch_metadata(&cluster.bootstrap(B3), Some(TOPIC))
        .await
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions()[0].leader(), -1);
    println!("after broker 3 crashed and returned, nobody leads: {seen:?}");

    // 2, still eligible from its clean stop, returns and leads with every acknowledged record; 3 follows
    // and the ISR is whole again, the ELR empty.
    restart(&mut cluster, B2).await;
    described_until(&cluster, B2, "2 elected from the ELR", |d| d.0 == B2).await;
    assert_eq!(consume_values(&cluster.bootstrap(B2), 20).await, values);
    let seen = described_until(&cluster, B2, "the ISR whole again", |d| d.1.len() == 2).await;
    assert_eq!(seen, (B2, vec![B2, B3], vec![], vec![]));

    cluster.shutdown().await;
}

/// `min.insync.replicas=2` only in `server.properties` (no topic config, no dynamic default): the controller
/// decides eligibility with it as Kafka's active controller does with its own static config.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_min_insync_replicas_reaches_the_controllers_decisions() {
    let mut cluster = TestCluster::start(3, &[("min.insync.replicas", "2")]).await;
    let admin = admin(&cluster.bootstrap(B2));
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Variable(&[&[B2, B3]]));
    let results = admin
        .create_topics([&topic], &admin_options())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    described_until(&cluster, B2, "the ISR whole", |d| {
        d.0 == B2 && d.1 == vec![B2, B3]
    })
    .await;
    produce_all(&cluster.bootstrap(B2), &["before".to_string()]).await;

    // 3 stops cleanly: the ISR falls below the static min ISR, so 3 stays eligible.
    cluster.stop(B3).await;
    let seen = described_until(&cluster, B2, "3 out of the ISR", |d| d.1 == vec![B2]).await;
    assert_eq!(
        seen,
        (B2, vec![B2], vec![B3], vec![]),
        "3 is an eligible leader replica"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_topic_partitions_pages_and_names_unknown_topics() {
    let cluster = TestCluster::start(3, &[]).await;
    let admin = admin(&cluster.bootstrap(B2));
    let topics = [
        NewTopic::new("paged-a", 3, TopicReplication::Fixed(2)),
        NewTopic::new("paged-b", 2, TopicReplication::Fixed(1)),
    ];
    let results = admin
        .create_topics(&topics, &admin_options())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let addr = cluster.bootstrap(B3);
    let request = |names: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
        use kafka_protocol::messages::describe_topic_partitions_request::Cursor;
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        TopicRequest::default()
                            .with_name(TopicName(StrBytes::from_string(n.to_string())))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partition_index(p)
            }))
    };
    let call = |request: DescribeTopicPartitionsRequest| {
        let addr = addr.clone();
        blocking(move || -> DescribeTopicPartitionsResponse {
            common::raw::request(&addr, ApiKey::DescribeTopicPartitions, 0, &request)
        })
    };
    let shape = |r: &DescribeTopicPartitionsResponse| {
        let topics: Vec<(String, i16, usize)> = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().unwrap().0.to_string(),
                    t.error_code,
                    t.partitions.len(),
                )
            })
            .collect();
        let cursor = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, cursor)
    };
    // Wait until this broker's image has both topics.
    poll_until(DEADLINE, "both topics described", || {
        let response = call(request(&["paged-a", "paged-b"], 100, None));
        response
            .topics
            .iter()
            .all(|t| t.error_code == 0)
            .then_some(())
    })
    .await;

    let first = call(request(&["paged-b", "paged-a", "zz-nope"], 4, None));
    assert_eq!(
        shape(&first),
        (
            vec![("paged-a".into(), 0, 3), ("paged-b".into(), 0, 1)],
            Some(("paged-b".into(), 1))
        )
    );
    let a = &first.topics[0];
    assert!(!a.topic_id.is_nil());
    assert!(
        a.partitions
            .iter()
            .all(|p| p.leader_id.0 >= 1 && p.isr_nodes.len() == 2)
    );
    assert!(
        a.partitions
            .iter()
            .all(|p| p.eligible_leader_replicas == Some(vec![]))
    );
    let next = call(request(
        &["paged-b", "paged-a", "zz-nope"],
        4,
        Some(("paged-b", 1)),
    ));
    let unknown = kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        shape(&next),
        (
            vec![("paged-b".into(), 0, 1), ("zz-nope".into(), unknown, 0)],
            None
        )
    );
    cluster.shutdown().await;
}
