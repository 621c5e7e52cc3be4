//! The Prometheus endpoint after a known load: what was produced, consumed and committed is what the
//! metrics say, and the endpoint behaves like a small, strict HTTP server.

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use scrape::*;

/// Brokers with metrics on an ephemeral port; groups rebalance at once.
const BROKER: &[(&str, &str)] = &[
    ("metrics.listener", "127.0.0.1:0"),
    ("group.initial.rebalance.delay.ms", "0"),
];

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_what_was_produced_consumed_and_committed() {
    let b = start_broker(BROKER).await;
    let addr = b.broker.metrics_addr().expect("metrics are enabled");
    let load = run_load(&b.bootstrap, "metered", &[20, 10], &[15, 4]).await;
    let (topic, group) = (load.topic.as_str(), load.group.as_str());

    // A second CreateTopics for the same topic fails: one TOPIC_ALREADY_EXISTS.
    let admin = admin(&b.bootstrap);
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 2, TopicReplication::Fixed(1))],
            &admin_options(),
        )
        .await
        .expect("CreateTopics request");
    assert!(results[0].is_err());

    let m = scrape(addr);
    let t = [("topic", topic)];
    let total: i64 = load.produced.iter().sum();
    assert_eq!(
        m.get(&series("brook_produce_records_total", &t)),
        total as f64
    );
    assert_eq!(
        m.get(&series("brook_fetch_records_total", &t)),
        total as f64
    );
    // Bytes in are the batches as stored; the consumer read each batch once.
    let on_disk: f64 = (0..2)
        .map(|p| {
            m.get(&series(
                "brook_log_size_bytes",
                &[("topic", topic), ("partition", &p.to_string())],
            ))
        })
        .sum();
    let bytes_in = m.get(&series("brook_produce_bytes_total", &t));
    assert_eq!(bytes_in, on_disk, "bytes in = the batches appended");
    assert!(bytes_in > (total as usize * VALUE_BYTES) as f64);
    assert_eq!(
        m.get(&series("brook_fetch_bytes_total", &t)),
        bytes_in,
        "bytes out = bytes in"
    );
    let batches = m.get("brook_produce_batch_size_bytes_count");
    assert!(
        batches >= 1.0 && batches <= total as f64,
        "{batches} batches"
    );
    assert_eq!(m.get("brook_produce_batch_size_bytes_sum"), bytes_in);

    for (p, (&produced, &committed)) in load.produced.iter().zip(&load.committed).enumerate() {
        let p = p.to_string();
        let tp = [("topic", topic), ("partition", p.as_str())];
        assert_eq!(m.get(&series("brook_log_end_offset", &tp)), produced as f64);
        assert_eq!(
            m.get(&series("brook_log_high_watermark", &tp)),
            produced as f64
        );
        assert_eq!(m.get(&series("brook_log_start_offset", &tp)), 0.0);
        assert_eq!(m.get(&series("brook_log_segments", &tp)), 1.0);
        let gtp = [
            ("group", group),
            ("topic", topic),
            ("partition", p.as_str()),
        ];
        assert_eq!(
            m.get(&series("brook_group_committed_offset", &gtp)),
            committed as f64
        );
        assert_eq!(
            m.get(&series("brook_group_lag_records", &gtp)),
            (produced - committed) as f64,
            "lag = high watermark - committed offset"
        );
    }
    assert_eq!(
        m.get(&series(
            "brook_group_state",
            &[("group", group), ("state", "Stable")]
        )),
        1.0
    );
    assert_eq!(
        m.get(&series("brook_group_members", &[("group", group)])),
        1.0
    );
    assert!(m.get("brook_log_partitions") >= 2.0);

    // Requests by API and error code.
    assert_eq!(
        m.get(&series("brook_requests_total", &[("api", "CreateTopics")])),
        2.0
    );
    assert_eq!(
        m.get(&series(
            "brook_request_errors_total",
            &[("api", "CreateTopics"), ("error", "TOPIC_ALREADY_EXISTS")]
        )),
        1.0
    );
    for api in [
        "Produce",
        "Fetch",
        "JoinGroup",
        "SyncGroup",
        "OffsetCommit",
        "Metadata",
    ] {
        let count = m.get(&series("brook_requests_total", &[("api", api)]));
        assert!(count >= 1.0, "{api} requests are counted");
        if matches!(api, "Fetch" | "Metadata") {
            continue; // Still being sent by the consumer: the page is not one atomic snapshot.
        }
        assert_eq!(
            m.get(&format!(
                "brook_request_duration_seconds_count{{api=\"{api}\"}}"
            )),
            count,
            "every {api} request is timed"
        );
    }
    // The consumer's fetches wait in a long poll (100 ms) once it has read everything.
    poll_until(DEADLINE, "a parked fetch is timed", || {
        let parked = scrape(addr).find("brook_request_parked_seconds_count{api=\"Fetch\"}");
        parked.filter(|&n| n >= 1.0)
    })
    .await;
    assert_eq!(
        m.find("brook_request_errors_total{api=\"Produce\",error=\"NONE\"}"),
        None,
        "NONE is not an error"
    );

    // Connections: producer, consumer (two: bootstrap and coordinator) and admin clients.
    let accepted = m.get("brook_connections_accepted_total");
    let open = m.get("brook_connections_open");
    assert!(accepted >= 3.0, "{accepted} accepted");
    assert_eq!(open, accepted - m.get("brook_connections_closed_total"));
    assert!(
        open >= 1.0,
        "the consumer and the admin client are connected"
    );
    drop(admin);
    let consumer = load.consumer;
    blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
    let m = poll_until(DEADLINE, "every client connection closed", || {
        let m = scrape(addr);
        (m.get("brook_connections_open") == 0.0).then_some(m)
    })
    .await;
    assert_eq!(
        m.get("brook_connections_closed_total"),
        m.get("brook_connections_accepted_total")
    );
    assert_eq!(
        m.get(&series(
            "brook_group_state",
            &[("group", group), ("state", "Empty")]
        )),
        1.0
    );
    assert_eq!(
        m.get(&series("brook_group_members", &[("group", group)])),
        0.0
    );

    // The process.
    assert!(m.get("brook_process_resident_memory_bytes") > 1e6);
    assert!(m.get("brook_process_cpu_seconds_total") > 0.0);
    assert!(m.get("brook_process_open_fds") >= 3.0);
    assert!(m.get("brook_process_max_fds") >= m.get("brook_process_open_fds"));
    assert_eq!(m.get("brook_build_info{version=\"0.1.0\"}"), 1.0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsyncs_are_counted_and_timed() {
    let mut overrides = BROKER.to_vec();
    overrides.push(("log.flush.interval.messages", "1"));
    let b = start_broker(&overrides).await;
    let addr = b.broker.metrics_addr().expect("metrics are enabled");
    let before = scrape(addr).get("brook_log_flush_duration_seconds_count");
    let load = run_load(&b.bootstrap, "durable", &[5], &[5]).await;
    drop(load);
    let m = scrape(addr);
    let flushes = m.get("brook_log_flush_duration_seconds_count") - before;
    assert!(flushes >= 1.0, "a durable log fsyncs before acknowledging");
    assert!(m.get("brook_log_flush_duration_seconds_sum") > 0.0);
    assert!(m.get("brook_log_flush_duration_seconds_bucket{le=\"+Inf\"}") >= flushes);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_level_off_sums_each_topic() {
    let mut overrides = BROKER.to_vec();
    overrides.push(("metrics.partition.level.enable", "false"));
    let b = start_broker(&overrides).await;
    let addr = b.broker.metrics_addr().expect("metrics are enabled");
    let load = run_load(&b.bootstrap, "summed", &[7, 3, 5], &[2, 3, 0]).await;
    let m = scrape(addr);
    let t = [("topic", load.topic.as_str())];
    assert_eq!(m.get(&series("brook_log_end_offset", &t)), 15.0);
    assert_eq!(m.get(&series("brook_log_segments", &t)), 3.0);
    assert_eq!(
        m.get(&series(
            "brook_group_lag_records",
            &[("group", &load.group), ("topic", &load.topic)]
        )),
        10.0
    );
    assert!(
        m.0.keys().all(|k| !k.contains("partition=")),
        "no series has a partition label"
    );
    drop(load);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_in_one_process_keep_their_own_counts() {
    let a = start_broker(BROKER).await;
    let b = start_broker(BROKER).await;
    let (a_addr, b_addr) = (
        a.broker.metrics_addr().unwrap(),
        b.broker.metrics_addr().unwrap(),
    );
    assert_ne!(a_addr, b_addr);
    let topic = unique_topic("only-a");
    create_topic(&a.bootstrap, &topic, 1).await;
    let created = series("brook_requests_total", &[("api", "CreateTopics")]);
    assert_eq!(scrape(a_addr).get(&created), 1.0);
    assert_eq!(scrape(b_addr).find(&created), None);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_serves_only_get_metrics() {
    let b = start_broker(BROKER).await;
    let addr = b.broker.metrics_addr().expect("metrics are enabled");
    let check = move |request: &'static [u8], status: u16| {
        let response = http(addr, request);
        assert_eq!(
            response.status,
            status,
            "{}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(response.headers["connection"], "close");
        response
    };
    check(b"GET /other HTTP/1.1\r\n\r\n", 404);
    check(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405);
    let head = check(b"HEAD /metrics HTTP/1.1\r\n\r\n", 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert!(head.headers["content-length"].parse::<usize>().unwrap() > 0);
    let with_query = check(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", 200);
    assert!(with_query.body.contains("brook_build_info"));
    // A request head that never ends within the limit is refused, not buffered.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(64 * 1024, b'a');
    let response = http(addr, &huge);
    assert_eq!(response.status, 400);
    // The endpoint still serves after all that.
    assert!(scrape(addr).get("brook_log_partitions") >= 0.0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_metrics_listener_disables_metrics() {
    let b = start_broker(&[("metrics.listener", "")]).await;
    assert_eq!(b.broker.metrics_addr(), None);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_metrics_address_that_is_taken_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let config = base_config(tmp.path(), &[("metrics.listener", &addr)]);
    let error = match brook::Broker::start(config).await {
        Ok(_) => panic!("started although {addr} is taken"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("metrics.listener") && error.contains(&addr),
        "{error}"
    );
}

/// Sends `n` records to `partition`, one at a time.
async fn send_n(p: &rdkafka::producer::FutureProducer, topic: &str, partition: i32, n: usize) {
    for i in 0..n {
        let value = format!("v{i}");
        p.send(
            rdkafka::producer::FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value),
            rdkafka::util::Timeout::After(std::time::Duration::from_secs(30)),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
    }
}

/// Producer state and transactions, with and without the partition label: an idempotent producer on
/// partition 0, a transactional one left open on partition 1, then committed.
async fn transaction_metrics(partition_level: bool) {
    use rdkafka::producer::Producer;
    use rdkafka::util::Timeout;
    use std::time::Duration;

    let mut overrides = BROKER.to_vec();
    let level = partition_level.to_string();
    overrides.push(("metrics.partition.level.enable", &level));
    let b = start_broker(&overrides).await;
    let addr = b.broker.metrics_addr().expect("metrics are enabled");
    let topic = unique_topic("txn-metrics");
    create_topic(&b.bootstrap, &topic, 2).await;
    let labels = |p: i32| -> Vec<(String, String)> {
        let mut l = vec![("topic".to_string(), topic.clone())];
        if partition_level {
            l.push(("partition".to_string(), p.to_string()));
        }
        l
    };
    let get = |m: &Samples, name: &str, p: i32| -> f64 {
        let l = labels(p);
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        m.get(&series(name, &l))
    };
    let state =
        |m: &Samples, s: &str| m.get(&series("brook_txn_transactional_ids", &[("state", s)]));
    let m = scrape(addr);
    assert_eq!(state(&m, "Ongoing"), 0.0, "every state is listed, at 0");
    let idempotent = producer(&b.bootstrap, &[("enable.idempotence", "true")]);
    send_n(&idempotent, &topic, 0, 3).await;
    let txn = producer(
        &b.bootstrap,
        &[
            ("transactional.id", "metrics-txn"),
            ("transaction.timeout.ms", "60000"),
        ],
    );
    let t = txn.clone();
    blocking(move || {
        t.init_transactions(Timeout::After(Duration::from_secs(30)))?;
        t.begin_transaction()
    })
    .expect("transaction begun");
    send_n(&txn, &topic, 1, 2).await;

    let m = scrape(addr);
    if partition_level {
        assert_eq!(get(&m, "brook_log_producers", 0), 1.0);
        assert_eq!(get(&m, "brook_log_producers", 1), 1.0);
        assert_eq!(get(&m, "brook_log_ongoing_transactions", 0), 0.0);
        assert_eq!(get(&m, "brook_log_last_stable_offset", 0), 3.0);
        assert_eq!(get(&m, "brook_log_last_stable_offset_lag_records", 0), 0.0);
        assert_eq!(get(&m, "brook_log_ongoing_transactions", 1), 1.0);
        assert_eq!(get(&m, "brook_log_last_stable_offset", 1), 0.0);
        assert_eq!(get(&m, "brook_log_last_stable_offset_lag_records", 1), 2.0);
    } else {
        // Summed over the topic's partitions.
        assert_eq!(get(&m, "brook_log_producers", 0), 2.0);
        assert_eq!(get(&m, "brook_log_ongoing_transactions", 0), 1.0);
        assert_eq!(get(&m, "brook_log_last_stable_offset", 0), 3.0);
        assert_eq!(get(&m, "brook_log_last_stable_offset_lag_records", 0), 2.0);
        assert!(
            m.0.keys().all(|k| !k.contains("partition=")),
            "no series has a partition label"
        );
    }
    assert_eq!(state(&m, "Ongoing"), 1.0);

    let t = txn.clone();
    blocking(move || t.commit_transaction(Timeout::After(Duration::from_secs(30))))
        .expect("committed");
    // The marker is committed before EndTxn answers; Complete* is persisted just after.
    let m = poll_until(Duration::from_secs(10), "CompleteCommit", || {
        let m = scrape(addr);
        (state(&m, "CompleteCommit") == 1.0).then_some(m)
    })
    .await;
    assert_eq!(state(&m, "Ongoing"), 0.0);
    let p = if partition_level { 1 } else { 0 };
    assert_eq!(get(&m, "brook_log_ongoing_transactions", p), 0.0);
    assert_eq!(get(&m, "brook_log_last_stable_offset_lag_records", p), 0.0);
    let lso = if partition_level { 3.0 } else { 6.0 };
    assert_eq!(
        get(&m, "brook_log_last_stable_offset", p),
        lso,
        "two records and the marker"
    );
    drop((idempotent, txn));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_open_transactions_and_the_last_stable_offset_are_exported() {
    transaction_metrics(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_metrics_are_summed_per_topic_without_the_partition_label() {
    transaction_metrics(false).await;
}

/// A single node leads every partition it holds and none is under-replicated; no ISR ever changes and
/// there are no followers, so no follower lag; the fetcher metrics are absent (no fetchers on one node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_leads_every_partition_fully_replicated() {
    let b = start_broker(BROKER).await;
    let addr = b.broker.metrics_addr().expect("metrics are enabled");
    let topic = unique_topic("led");
    create_topic(&b.bootstrap, &topic, 3).await;
    let m = scrape(addr);
    assert_eq!(m.get("brook_replica_leader_partitions"), 3.0, "{m}");
    assert_eq!(m.get("brook_log_partitions"), 3.0);
    for name in [
        "brook_replica_under_replicated_partitions",
        "brook_replica_under_min_isr_partitions",
        "brook_replica_offline_partitions",
        "brook_replica_isr_shrinks_total",
        "brook_replica_isr_expands_total",
        "brook_replica_isr_change_failures_total",
    ] {
        assert_eq!(m.get(name), 0.0, "{name}");
    }
    for name in [
        "brook_replica_follower_lag_records",
        "brook_replica_follower_lag_seconds",
        "brook_replica_fetcher_bytes_total",
        "brook_replica_fetcher_records_total",
        "brook_replica_fetcher_lag_records",
    ] {
        assert!(m.family(name).is_empty(), "{name} on a single node");
    }

    b.shutdown().await;
}

/// Three nodes, a partition replicated on all of them with min.insync.replicas=3: records written with
/// acks=all reach both followers (the leader sees no follower lag, their fetchers count the records); the
/// leader counts it as led and, once a follower is halted, more is written and the leader shrinks the ISR (replica.lag.time.max.ms; the broker
/// session outlasts the test, so the controller does not fence it first), as under-replicated
/// and under min ISR, with the shrink counted and the halted follower's lag in seconds beyond the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_an_under_replicated_partition_once_a_follower_is_halted() {
    use common::cluster::{TestCluster, fetch_metadata};

    const LAG_MAX_MS: u64 = 1500;
    let lag_max = LAG_MAX_MS.to_string();
    let mut cluster = TestCluster::start(
        3,
        &[
            ("metrics.listener", "127.0.0.1:0"),
            ("replica.lag.time.max.ms", &lag_max),
            // Not fenced within the test: the ISR shrinks by the leader's lag check, not by the controller
            // removing a fenced broker.
            ("broker.session.timeout.ms", "60000"),
        ],
    )
    .await;
    let admin = admin(&cluster.bootstrap(1));
    let new =
        NewTopic::new("replicated", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "3");
    let results = admin
        .create_topics([&new], &admin_options())
        .await
        .expect("CreateTopics request");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let bootstrap = cluster.bootstrap_all();
    let leader = poll_until_async(DEADLINE, "a leader for replicated-0", || {
        let bootstrap = bootstrap.clone();
        async move {
            let metadata = fetch_metadata(&bootstrap, Some("replicated")).await.ok()?;
            let partition = metadata.topics().first()?.partitions().first()?.leader();
            (partition >= 1).then_some(partition)
        }
    })
    .await;
    let metrics_of = |id: i32| {
        cluster
            .node(id)
            .metrics_addr()
            .expect("metrics are enabled")
    };
    let leader_addr = metrics_of(leader);
    poll_until_async(
        DEADLINE,
        "the leader counts replicated-0 as led",
        || async {
            (scrape(leader_addr).get("brook_replica_leader_partitions") >= 1.0).then_some(())
        },
    )
    .await;
    // Replicated to both followers: the leader sees them caught up, each follower's fetcher counts what it
    // copied and sees no lag.
    const RECORDS: usize = 20;
    let p = producer(&bootstrap, &[("acks", "all")]);
    send_n(&p, "replicated", 0, RECORDS).await;
    drop(p);
    let followers: Vec<i32> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &followers {
        let replica = id.to_string();
        poll_until_async(DEADLINE, "the leader sees a follower caught up", || {
            let replica = replica.clone();
            async move {
                let m = scrape(leader_addr);
                let lag = m.find(&series(
                    "brook_replica_follower_lag_records",
                    &[
                        ("topic", "replicated"),
                        ("partition", "0"),
                        ("replica", &replica),
                    ],
                ))?;
                (lag == 0.0).then_some(())
            }
        })
        .await;
        let m = scrape(metrics_of(id));
        assert!(
            m.get("brook_replica_fetcher_records_total") >= RECORDS as f64,
            "{m}"
        );
        assert!(m.get("brook_replica_fetcher_bytes_total") > 0.0);
        assert_eq!(
            m.get(&series(
                "brook_replica_fetcher_lag_records",
                &[("topic", "replicated"), ("partition", "0")],
            )),
            0.0
        );
        assert_eq!(m.get("brook_replica_leader_partitions"), 0.0);
    }
    // An ISR shrunk before the followers' first fetches grows back once they caught up.
    let m = poll_until_async(DEADLINE, "a full ISR on the leader", || async {
        let m = scrape(leader_addr);
        (m.get("brook_replica_under_replicated_partitions") == 0.0).then_some(m)
    })
    .await;
    assert!(
        m.family("brook_replica_fetcher_lag_records").is_empty(),
        "the leader follows nothing here"
    );

    let follower = followers[0];
    let start = std::time::Instant::now();
    cluster.crash(follower).await;
    // A follower at the leader's log end stays caught up (Kafka's rule): the leader must move on to leave
    // it behind. acks=1, as acks=all waits for the halted follower until the ISR shrinks.
    const AFTER: usize = 5;
    let p = producer(&cluster.bootstrap(leader), &[("acks", "1")]);
    send_n(&p, "replicated", 0, AFTER).await;
    drop(p);

    let m = poll_until_async(DEADLINE, "the leader's ISR shrinks", || async {
        let m = scrape(leader_addr);
        (m.get("brook_replica_under_replicated_partitions") >= 1.0).then_some(m)
    })
    .await;
    eprintln!(
        "under-replicated on the leader {:?} after the halt",
        start.elapsed()
    );
    assert_eq!(
        m.get("brook_replica_under_replicated_partitions"),
        1.0,
        "{m}"
    );
    assert_eq!(m.get("brook_replica_under_min_isr_partitions"), 1.0);
    assert!(m.get("brook_replica_isr_shrinks_total") >= 1.0);
    assert_eq!(
        m.get(&series(
            "brook_replica_follower_lag_records",
            &[
                ("topic", "replicated"),
                ("partition", "0"),
                ("replica", &follower.to_string()),
            ],
        )),
        AFTER as f64,
        "the halted follower misses what was written after it stopped"
    );
    assert_eq!(m.get("brook_replica_offline_partitions"), 0.0);
    let lag = m.get(&series(
        "brook_replica_follower_lag_seconds",
        &[
            ("topic", "replicated"),
            ("partition", "0"),
            ("replica", &follower.to_string()),
        ],
    ));
    assert!(
        lag * 1000.0 > LAG_MAX_MS as f64,
        "dropped only after replica.lag.time.max.ms: {lag} s"
    );
    drop(admin);
    // A clean shutdown would wait for the unfenced, halted node's session to run out: stop as a crash.
    for id in [leader, cluster.other_than(leader)] {
        cluster.crash(id).await;
    }
}
