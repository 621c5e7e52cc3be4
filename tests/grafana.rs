//! The Grafana dashboard against reality: a real Prometheus server (Debian's `prometheus` package) scrapes
//! an in-process brook every second under a produce/consume/group load, then every panel query and every
//! template variable query of grafana/dashboards/*.json is evaluated through Prometheus's HTTP API. A query
//! that errors fails at once; one that returns no data fails once the deadline passes. The follower and
//! replica fetcher panels are checked against a three-node cluster instead.
//!
//! Without the `prometheus` binary the test is skipped with a line saying so, unless CI=true.

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use serde_json::Value;

/// How long the panel queries may take to all return data once the load is done.
const DATA_DEADLINE: Duration = Duration::from_secs(25);

/// A Prometheus server started by this test; killed (by its own pid) when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[SocketAddr]) -> Prometheus {
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let targets = targets.join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: brook\n    \
                 static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .expect("write prometheus.yml");
        // Free now; Prometheus binds it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("create prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path_and_query`; (status, body). HTTP/1.0, so the body is never chunked.
    fn get(&self, path_and_query: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path_and_query} HTTP/1.0\r\nHost: prometheus\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    }

    /// Evaluates an instant query: Ok(number of series) or Err(Prometheus's error).
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(promql)))
            .map_err(|e| format!("cannot reach prometheus: {e}"))?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!("{}: {}", json["errorType"], json["error"]));
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Grafana's variables as the test sets them: every instance, topic and group; rate windows of a few
/// 1-second scrapes.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in [
        ("$__rate_interval", "10s"),
        ("$__interval", "2s"),
        ("$__range", "1m"),
        ("${instance}", ".*"),
        ("$instance", ".*"),
        ("${topic}", ".*"),
        ("$topic", ".*"),
        ("${group}", ".*"),
        ("$group", ".*"),
    ] {
        out = out.replace(var, value);
    }
    assert!(!out.contains('$'), "unknown template variable in {expr}");
    out
}

/// Metrics a single broker cannot have: followers' lag (it leads partitions without followers) and the
/// replica fetchers' traffic and lag (it follows nothing). Panels on them are checked to evaluate and to be
/// empty there, and to return data from a three-node cluster.
const CLUSTER_ONLY: &[&str] = &["brook_replica_follower_", "brook_replica_fetcher_"];

/// A query to check: where it comes from, and the PromQL (variables substituted).
struct Check {
    what: String,
    promql: String,
    /// For a `label_values(selector, label)` variable: the label the series must carry.
    label: Option<String>,
}

impl Check {
    fn cluster_only(&self) -> bool {
        CLUSTER_ONLY.iter().any(|m| self.promql.contains(m))
    }
}

/// Every panel target and template variable query of every dashboard in grafana/dashboards.
fn dashboard_checks() -> Vec<Check> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut checks = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read dashboard"))
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let mut panels: Vec<&Value> = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            panels.push(panel);
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for panel in panels.into_iter().filter(|p| p["type"] != "row") {
            let title = panel["title"].as_str().unwrap_or("?");
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!targets.is_empty(), "{name}: panel {title} has no query");
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: panel {title} uses the datasource variable"
            );
            for target in targets {
                let expr = target["expr"].as_str().expect("a PromQL expr");
                checks.push(Check {
                    what: format!("{name}: panel \"{title}\" {}", target["refId"]),
                    promql: substitute(expr),
                    label: None,
                });
            }
        }
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if var["type"] != "query" {
                continue;
            }
            let definition = var["query"]["query"].as_str().expect("variable query");
            let inner = definition
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!("{name}: variable query {definition} is not label_values()")
                });
            let (selector, label) = inner
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            checks.push(Check {
                what: format!("{name}: variable ${}", var["name"].as_str().unwrap_or("?")),
                promql: substitute(selector.trim()),
                label: Some(label.trim().to_string()),
            });
        }
    }
    checks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let checks = dashboard_checks();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the prometheus binary is missing (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: the prometheus binary is not installed (apt-get install prometheus)");
        return;
    }
    let b = start_broker(&[
        ("metrics.listener", "127.0.0.1:0"),
        ("group.initial.rebalance.delay.ms", "0"),
        // Every append fsyncs, so the fsync panels have data.
        ("log.flush.interval.messages", "1"),
    ])
    .await;
    let metrics_addr = b.broker.metrics_addr().expect("metrics are enabled");
    let tmp = tempfile::tempdir().expect("temp dir");
    let prometheus = Prometheus::start(tmp.path(), &[metrics_addr]);
    let ready = poll_until(Duration::from_secs(20), "prometheus is ready", || {
        matches!(blocking(|| prometheus.get("/-/ready")), Ok((200, _))).then_some(())
    });
    ready.await;

    // Produce, consume and commit in a group (left Stable), and one failing request.
    let load = scrape::run_load(&b.bootstrap, "dash", &[30, 20, 10], &[25, 20, 0]).await;
    let admin = admin(&b.bootstrap);
    let again = admin
        .create_topics(
            &[NewTopic::new(&load.topic, 3, TopicReplication::Fixed(1))],
            &admin_options(),
        )
        .await
        .expect("CreateTopics request");
    assert!(again[0].is_err(), "the topic exists already");

    let deadline = Instant::now() + DATA_DEADLINE;
    let (cluster_only, mut pending): (Vec<&Check>, Vec<&Check>) =
        checks.iter().partition(|c| c.cluster_only());
    assert!(
        !cluster_only.is_empty(),
        "the Cluster row has follower and fetcher panels"
    );
    loop {
        let mut still = Vec::new();
        for check in pending {
            match blocking(|| prometheus.query(&check.promql)) {
                Err(e) => panic!("{}: query {} failed: {e}", check.what, check.promql),
                Ok(result) => {
                    let found = match &check.label {
                        None => !result.is_empty(),
                        Some(label) => result.iter().any(|s| s["metric"].get(label).is_some()),
                    };
                    if !found {
                        still.push(check);
                    }
                }
            }
        }
        if still.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<String> = still
                .iter()
                .map(|c| format!("{}: {}", c.what, c.promql))
                .collect();
            panic!(
                "{} queries returned no data:\n{}\nprometheus log:\n{}",
                missing.len(),
                missing.join("\n"),
                prometheus.log()
            );
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{} dashboard queries returned data",
        checks.len() - cluster_only.len()
    );
    // Scraped several times by now: a cluster-only metric would have shown up.
    for check in &cluster_only {
        match blocking(|| prometheus.query(&check.promql)) {
            Err(e) => panic!("{}: query {} failed: {e}", check.what, check.promql),
            Ok(result) => assert!(
                result.is_empty(),
                "{}: a single broker has no followers and fetches nothing, yet {} gave {result:?}",
                check.what,
                check.promql
            ),
        }
    }
    eprintln!(
        "{} cluster-only queries evaluated, empty on a single broker",
        cluster_only.len()
    );

    drop(admin);
    let consumer = load.consumer;
    blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
    drop(prometheus);
    b.shutdown().await;
}

/// The Cluster row's follower and fetcher panels, which a single broker leaves empty, return data from a
/// three-node cluster with a replicated topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_panels_return_data_from_a_three_node_cluster() {
    use common::cluster::TestCluster;

    let checks: Vec<Check> = dashboard_checks()
        .into_iter()
        .filter(Check::cluster_only)
        .collect();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the prometheus binary is missing (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: the prometheus binary is not installed (apt-get install prometheus)");
        return;
    }
    let cluster = TestCluster::start(3, &[("metrics.listener", "127.0.0.1:0")]).await;
    let admin = admin(&cluster.bootstrap(1));
    let new = NewTopic::new("dash-replicated", 1, TopicReplication::Fixed(3));
    let created = admin
        .create_topics([&new], &admin_options())
        .await
        .expect("CreateTopics request");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let bootstrap = cluster.bootstrap_all();
    let p = producer(&bootstrap, &[("acks", "all")]);
    for i in 0..10 {
        let value = format!("v{i}");
        p.send(
            rdkafka::producer::FutureRecord::<(), _>::to("dash-replicated").payload(&value),
            rdkafka::util::Timeout::After(Duration::from_secs(30)),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
    }
    drop(p);
    let targets: Vec<SocketAddr> = cluster
        .nodes
        .iter()
        .flatten()
        .map(|b| b.metrics_addr().expect("metrics are enabled"))
        .collect();
    let tmp = tempfile::tempdir().expect("temp dir");
    let prometheus = Prometheus::start(tmp.path(), &targets);
    poll_until(Duration::from_secs(20), "prometheus is ready", || {
        matches!(blocking(|| prometheus.get("/-/ready")), Ok((200, _))).then_some(())
    })
    .await;

    let deadline = Instant::now() + DATA_DEADLINE;
    let mut pending: Vec<&Check> = checks.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for check in pending {
            match blocking(|| prometheus.query(&check.promql)) {
                Err(e) => panic!("{}: query {} failed: {e}", check.what, check.promql),
                Ok(result) if result.is_empty() => still.push(check),
                Ok(_) => {}
            }
        }
        if !still.is_empty() && Instant::now() > deadline {
            let missing: Vec<String> = still
                .iter()
                .map(|c| format!("{}: {}", c.what, c.promql))
                .collect();
            panic!(
                "{} cluster queries returned no data:\n{}\nprometheus log:\n{}",
                missing.len(),
                missing.join("\n"),
                prometheus.log()
            );
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!("{} cluster queries returned data", checks.len());
    drop(prometheus);
    drop(admin);
    cluster.shutdown().await;
}
