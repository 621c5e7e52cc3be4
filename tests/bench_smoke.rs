//! Proves the benchmark program (examples/brook-bench) still works end to end: every workload runs with
//! tiny sizes against an in-process brook and a second broker compared pair by pair, and the table,
//! Markdown and SVG come out. Performance is never asserted here; only that every figure was measured.

// The example's modules are compiled into this test unchanged; the option parser's CLI-only paths are
// unused here.
#![allow(dead_code)]

#[path = "../examples/brook-bench/clients.rs"]
mod clients;
#[path = "../examples/brook-bench/cpu.rs"]
mod cpu;
#[path = "../examples/brook-bench/fanout.rs"]
mod fanout;
#[path = "../examples/brook-bench/fetchlat.rs"]
mod fetchlat;
#[path = "../examples/brook-bench/limits.rs"]
mod limits;
#[path = "../examples/brook-bench/opts.rs"]
mod opts;
#[path = "../examples/brook-bench/ports.rs"]
mod ports;
#[path = "../examples/brook-bench/rdkperf.rs"]
mod rdkperf;
#[path = "../examples/brook-bench/replication.rs"]
mod replication;
#[path = "../examples/brook-bench/report.rs"]
mod report;
#[path = "../examples/brook-bench/runner.rs"]
mod runner;
#[path = "../examples/brook-bench/workloads.rs"]
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use report::Kind;

/// The smallest sizes that still exercise every code path.
fn smoke_options() -> opts::Options {
    opts::Options {
        out: None,
        produce_time: Duration::from_millis(200),
        consume_bytes: 2 << 20,
        consume_record_bytes: 1024,
        latency_rate: 1000,
        latency_time: Duration::from_millis(300),
        many_partitions: 20,
        limit_bytes: 4 << 20,
        fsync_time: Duration::from_millis(100),
        limit_samples: 1,
        brook_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_brook"))),
        ..opts::Options::default()
    }
}

#[test]
fn bench_runs_every_workload_and_compares_two_brokers() {
    // Broker B: a second in-process brook on its own runtime and data directory.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime for broker B");
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = brook::Config::new();
    config
        .set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    config
        .set("metrics.listener", "127.0.0.1:0")
        .expect("metrics.listener");
    config
        .set("log.dirs", tmp.path().to_str().expect("UTF-8 temp path"))
        .expect("log.dirs");
    let broker_b = runtime
        .block_on(brook::Broker::start(config))
        .expect("broker B starts");

    let mut o = smoke_options();
    o.compare = Some(broker_b.bootstrap_servers());
    o.label_b = Some("brook B".into());
    let outcome = runner::run(&o).expect("bench run");

    // Every workload on both brokers (workload 6 on the spawned binary), none failed.
    let failures: Vec<String> = outcome
        .rows
        .iter()
        .flat_map(|r| r.results.iter().flatten().filter_map(|m| m.as_ref().err()))
        .cloned()
        .collect();
    assert!(failures.is_empty(), "workloads failed: {failures:?}");
    let kinds: Vec<Kind> = outcome.rows.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::ProduceSmall,
            Kind::Produce1k,
            Kind::Produce1k,
            Kind::Consume,
            Kind::Latency,
            Kind::Durable,
            Kind::ExactlyOncePlain,
            Kind::ExactlyOnceRatio,
            Kind::ExactlyOnceRatio,
            Kind::ExactlyOnceRatio,
            Kind::IdleRss,
            Kind::ManyRss,
            Kind::Startup,
        ],
        "one row per workload figure, in the issue's order"
    );
    for row in &outcome.rows {
        let measured: Vec<&workloads::Measured> = row
            .results
            .iter()
            .flatten()
            .filter_map(|r| r.as_ref().ok())
            .collect();
        let expected = if row.workload == 6 { 1 } else { 2 };
        assert_eq!(
            measured.len(),
            expected,
            "row {} {} ran on each broker",
            row.workload,
            row.name
        );
        for m in measured {
            assert!(
                m.headline > 0.0,
                "row {} {} has a figure: {m:?}",
                row.workload,
                row.name
            );
        }
    }
    let limits = outcome.limits.expect("machine limits measured");
    assert!(
        limits.page_cache_write_mb_s > 0.0
            && limits.loopback_mb_s > 0.0
            && limits.fsync_per_s > 0.0
            && limits.rtt_p99_ms >= limits.rtt_p50_ms
            && limits.rtt_p50_ms > 0.0
    );
    // The consume workload read exactly the backlog it wrote.
    let consume = &outcome.rows[3];
    assert!(
        consume.results[0]
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .is_some_and(|m| m.note.starts_with("2048 records")),
        "consume note names the backlog: {:?}",
        consume.results[0]
    );

    // Workload 8: the transactional rows carry their commits' latency, the others none.
    let exactly_once: Vec<&report::Row> = outcome.rows.iter().filter(|r| r.workload == 8).collect();
    for (i, row) in exactly_once.iter().enumerate() {
        let m = row.results[0]
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .expect("workload 8 measured");
        assert_eq!(
            m.latency
                .as_ref()
                .is_some_and(|l| l.count > 0 && l.p99 > 0.0),
            i >= 2,
            "{}: {m:?}",
            row.name
        );
    }

    // What a user reads: the table names both brokers and the pair ratios, the Markdown has the table and
    // the plot link, the SVG has one latency line per broker.
    let text = report::text(&outcome.rows, &outcome.labels, Some(&limits));
    assert!(
        text.contains("brook (in-process)") && text.contains("brook B"),
        "{text}"
    );
    assert!(text.contains("brook B / brook (in-process)"), "{text}");
    assert!(text.contains("loopback TCP, one stream"), "{text}");
    println!("{text}");
    let svg = report::latency_svg(&outcome.rows, &outcome.labels, "smoke").expect("latency plot");
    assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    let md = report::markdown(
        &outcome.rows,
        &outcome.labels,
        Some(&limits),
        "smoke",
        &outcome.context,
        Some("latency.svg"),
    );
    assert!(md.contains("| 4 | end-to-end latency"), "{md}");
    assert!(
        md.contains("![workload 4 latency distribution](latency.svg)"),
        "{md}"
    );

    runtime
        .block_on(broker_b.shutdown())
        .expect("broker B shuts down");
}

#[test]
fn bench_options_parse_sizes_and_reject_unknown_flags() {
    let o = opts::parse(
        ["--consume-bytes", "64M", "--workloads", "4,1", "--out", "-"].map(String::from),
    )
    .expect("valid options")
    .expect("not --help");
    assert_eq!(o.consume_bytes, 64 << 20);
    assert_eq!(o.workloads, [1, 4]);
    assert!(o.out.is_none());
    assert!(opts::parse(["--frobnicate".to_string(), "1".into()]).is_err());
    assert!(opts::parse(["--workloads".to_string(), "12".into()]).is_err());
    assert!(opts::parse(["--workloads".to_string(), "10,11".into()]).is_ok());
    assert!(opts::parse(["--help".to_string()]).expect("help").is_none());
    let o = opts::parse(["--compare-mock", "--repeat", "3"].map(String::from))
        .expect("valid options")
        .expect("not --help");
    assert!(o.compare_mock);
    assert_eq!(o.repeat, 3);
    assert!(opts::parse(["--repeat".to_string(), "0".into()]).is_err());
}

#[test]
fn bench_repeats_and_compares_with_librdkafkas_mock_cluster() {
    let o = opts::Options {
        workloads: vec![1, 4],
        compare_mock: true,
        repeat: 3,
        ..smoke_options()
    };
    let outcome = runner::run(&o).expect("bench run");
    assert_eq!(outcome.labels[1], "librdkafka mock cluster (in memory)");
    let w1 = outcome
        .rows
        .iter()
        .find(|r| r.workload == 1)
        .expect("workload 1 row");
    for result in &w1.results[..2] {
        let m = result
            .as_ref()
            .expect("measured on both brokers")
            .as_ref()
            .expect("no failure");
        assert!(m.headline > 0.0, "{m:?}");
        assert!(m.note.starts_with("median of 3 runs ("), "{}", m.note);
    }
    // The mock answers a long poll only when it expires: not a latency reference.
    let w4 = outcome
        .rows
        .iter()
        .find(|r| r.workload == 4)
        .expect("workload 4 row");
    assert!(matches!(w4.results[0], Some(Ok(_))));
    assert!(w4.results[1].is_none(), "workload 4 is skipped on the mock");
}

#[test]
fn bench_replication_runs_on_a_three_node_cluster() {
    // Two short rounds: the ratios are medians of per-round ratios, and the follower check runs each round.
    let o = opts::Options {
        workloads: vec![9],
        repeat: 2,
        ..smoke_options()
    };
    let outcome = runner::run(&o).expect("bench run");
    let rows: Vec<&report::Row> = outcome.rows.iter().filter(|r| r.workload == 9).collect();
    let kinds: Vec<Kind> = rows.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::ReplicationProduce,
            Kind::ReplicationRatio,
            Kind::ReplicationConsume,
            Kind::ReplicationRatio,
        ]
    );
    for row in rows {
        let m = row
            .results
            .last()
            .and_then(|r| r.as_ref())
            .expect("measured on the spawned cluster")
            .as_ref()
            .unwrap_or_else(|e| panic!("{} failed: {e}", row.name));
        assert!(m.headline > 0.0, "{}: {m:?}", row.name);
        assert!(m.mb_per_s.is_some_and(|v| v > 0.0), "{}: {m:?}", row.name);
    }
    // The follower row says where its bytes came from (the workload fails if node 2 did not serve them).
    let follower = &outcome.rows[3];
    let note = &follower
        .results
        .last()
        .and_then(|r| r.as_ref())
        .and_then(|r| r.as_ref().ok())
        .expect("follower row")
        .note;
    assert!(note.contains("MB received per node: "), "{note}");
    println!(
        "{}",
        report::text(&outcome.rows, &outcome.labels, outcome.limits.as_ref())
    );
}

/// Workload 9 starts its cluster again when a node's port was taken: what brook really says then must be
/// what the bench looks for, and a start that failed otherwise must not look like it.
#[test]
fn a_taken_port_is_recognised_in_brooks_own_words() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let data = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brook"))
        .args([
            "--override",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
        ])
        .args(["--override", &format!("log.dirs={}", data.path().display())])
        .args(["--override", "metrics.listener=127.0.0.1:0"])
        .output()
        .expect("run brook");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(replication::port_taken(&stderr), "{stderr}");
    assert!(!replication::port_taken(
        "brook: invalid value 'x' for configuration key 'listeners'"
    ));
}
