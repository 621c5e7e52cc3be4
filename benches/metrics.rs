//! Cost of metrics. (1) A scrape of `GET /metrics` with many partitions and consumer groups, against a scrape
//! of an empty broker in the same run: the page is computed at scrape time, so this is what a Prometheus
//! server pays per scrape. (2) Recording one produced batch, against a disabled registry: what the produce
//! path pays per partition. Run with `cargo bench --bench metrics`; BROOK_BENCH_PARTITIONS (default 1000
//! over 10 topics) and BROOK_BENCH_GROUPS (default 10, each committing every partition) scale the load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use brook::metrics::{Metrics, MetricsConfig};
use brook::{Broker, Config};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TOPICS: usize = 10;
const SCRAPES: usize = 50;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One scrape: (time, page bytes, sample lines).
fn scrape(addr: SocketAddr) -> (Duration, usize, usize) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .expect("send");
    let mut page = Vec::new();
    stream.read_to_end(&mut page).expect("read");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&page);
    assert!(text.starts_with("HTTP/1.1 200"), "scrape failed");
    let samples = text
        .lines()
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("HTTP") && l.contains(' ')
        })
        .count();
    (elapsed, page.len(), samples)
}

fn report(name: &str, addr: SocketAddr) -> Duration {
    let mut times = Vec::with_capacity(SCRAPES);
    let (mut bytes, mut samples) = (0, 0);
    for _ in 0..SCRAPES {
        let (t, b, s) = scrape(addr);
        times.push(t);
        (bytes, samples) = (b, s);
    }
    times.sort();
    let p50 = percentile(&times, 0.5);
    println!(
        "{name:<34} p50 {:>8.3} ms  p99 {:>8.3} ms  page {:>9} bytes  {:>6} series",
        ms(p50),
        ms(percentile(&times, 0.99)),
        bytes,
        samples
    );
    p50
}

async fn broker(dir: &std::path::Path) -> Broker {
    let mut config = Config::new();
    for (k, v) in [
        ("listeners", "PLAINTEXT://127.0.0.1:0"),
        ("metrics.listener", "127.0.0.1:0"),
        ("log.dirs", dir.to_str().expect("UTF-8 temp path")),
        // Small preallocated indexes: a thousand partitions must not need 20 GB of sparse files.
        ("log.index.size.max.bytes", "65536"),
    ] {
        config.set(k, v).expect("valid setting");
    }
    Broker::start(config).await.expect("broker starts")
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    cfg
}

fn main() {
    let partitions = env_usize("BROOK_BENCH_PARTITIONS", 1000).max(TOPICS);
    let groups = env_usize("BROOK_BENCH_GROUPS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let empty_dir = tempfile::tempdir().expect("temp dir");
        let empty = broker(empty_dir.path()).await;
        let baseline = tokio::task::block_in_place(|| {
            report(
                "scrape, empty broker",
                empty.metrics_addr().expect("metrics on"),
            )
        });

        let dir = tempfile::tempdir().expect("temp dir");
        let b = broker(dir.path()).await;
        let bootstrap = b.bootstrap_servers();
        let admin: AdminClient<DefaultClientContext> = client(&bootstrap).create().expect("admin");
        let per_topic = partitions / TOPICS;
        let names: Vec<String> = (0..TOPICS).map(|t| format!("bench-{t}")).collect();
        let new: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, per_topic as i32, TopicReplication::Fixed(1)))
            .collect();
        admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("create topics");
        tokio::task::block_in_place(|| {
            for g in 0..groups {
                let consumer: BaseConsumer = client(&bootstrap)
                    .set("group.id", format!("bench-group-{g}"))
                    .create()
                    .expect("consumer");
                let mut tpl = TopicPartitionList::new();
                for name in &names {
                    for p in 0..per_topic {
                        tpl.add_partition_offset(name, p as i32, Offset::Offset(0))
                            .expect("offset");
                    }
                }
                consumer.commit(&tpl, CommitMode::Sync).expect("commit");
            }
        });
        let loaded = tokio::task::block_in_place(|| {
            report(
                &format!("scrape, {} partitions, {groups} groups", per_topic * TOPICS),
                b.metrics_addr().expect("metrics on"),
            )
        });
        println!(
            "scrape cost ratio (loaded / empty): {:.1}x; {:.2} us per partition",
            loaded.as_secs_f64() / baseline.as_secs_f64(),
            (loaded.saturating_sub(baseline)).as_secs_f64() * 1e6 / (per_topic * TOPICS) as f64
        );
        drop(admin);
        b.shutdown().await.expect("shutdown");
        empty.shutdown().await.expect("shutdown");
    });

    // The produce path: one produced batch recorded, enabled against disabled.
    // A 1 KiB batch of 10 records, as far as its header says (records are never decoded).
    let mut batch = vec![0u8; 1024];
    batch[8..12].copy_from_slice(&(1024i32 - 12).to_be_bytes());
    batch[57..61].copy_from_slice(&10i32.to_be_bytes());
    let time = |metrics: &Metrics| {
        const CALLS: u32 = 200_000;
        let started = Instant::now();
        for _ in 0..CALLS {
            metrics.produced(std::hint::black_box("orders"), std::hint::black_box(&batch));
        }
        started.elapsed() / CALLS
    };
    let disabled = time(&Metrics::disabled());
    let enabled = Metrics::new(&MetricsConfig::default());
    let on = time(&enabled);
    enabled.run_upkeep();
    println!(
        "record one produced batch: {:>6.0} ns enabled, {:>6.1} ns disabled",
        on.as_secs_f64() * 1e9,
        disabled.as_secs_f64() * 1e9
    );
}
