//! Scraping a broker's `/metrics` as Prometheus does, and a known produce/consume/group load, for
//! tests/metrics.rs and tests/grafana.rs (included with `#[path]`, next to `mod common`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::common::*;

/// An HTTP response: status code, headers (lower-case names), body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Sends `request` (raw bytes) and reads the response until the server closes the connection. Blocking;
/// inside a multi-thread runtime it lets the runtime move other tasks off this worker first.
pub fn http(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(|| http_now(addr, request))
    } else {
        http_now(addr, request)
    }
}

fn http_now(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream.write_all(request).expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let raw = String::from_utf8(raw).expect("the response is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The samples of one scrape, keyed by the series exactly as exported: `name{label="value",...}`.
#[derive(Debug)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// The value of a series; panics naming it when it is missing.
    pub fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("series {series} is not exported; got:\n{self}"))
    }

    /// The value of a series, or None.
    pub fn find(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    /// Every series of a metric (by name), with its value.
    pub fn family(&self, name: &str) -> Vec<(&str, f64)> {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

impl std::fmt::Display for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, v) in &self.0 {
            writeln!(f, "{k} {v}")?;
        }
        Ok(())
    }
}

/// GET /metrics, checked to be a 200 in Prometheus text format, parsed into samples.
pub fn scrape(addr: SocketAddr) -> Samples {
    let response = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: brook\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.headers["content-type"].starts_with("text/plain; version=0.0.4"),
        "Prometheus text format"
    );
    let mut samples = BTreeMap::new();
    for line in response.body.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "series {series} is exported twice"
        );
    }
    Samples(samples)
}

/// What [`run_load`] did, for the assertions.
pub struct Load {
    pub topic: String,
    pub group: String,
    /// Records produced per partition.
    pub produced: Vec<i64>,
    /// Offsets committed per partition.
    pub committed: Vec<i64>,
    /// The group's consumer, still a member (the group is Stable); drop it to leave.
    pub consumer: Arc<StreamConsumer>,
}

/// Value bytes of every produced record.
pub const VALUE_BYTES: usize = 100;

/// Produces `per_partition[p]` records of [`VALUE_BYTES`] to each partition of a new topic (acks=all),
/// consumes them all in a new group and commits `committed[p]` for each partition. Returns with the
/// consumer still in the group.
pub async fn run_load(
    bootstrap: &str,
    prefix: &str,
    per_partition: &[i64],
    commit: &[i64],
) -> Load {
    let topic = unique_topic(prefix);
    let partitions = per_partition.len() as i32;
    create_topic(bootstrap, &topic, partitions).await;

    let producer = producer(bootstrap, &[("acks", "all")]);
    let value = vec![b'x'; VALUE_BYTES];
    let mut deliveries = Vec::new();
    for (p, &n) in per_partition.iter().enumerate() {
        for _ in 0..n {
            deliveries.push(
                producer
                    .send_result(
                        FutureRecord::<(), _>::to(&topic)
                            .partition(p as i32)
                            .payload(&value),
                    )
                    .unwrap_or_else(|(e, _)| panic!("enqueue: {e:?}")),
            );
        }
    }
    for d in deliveries {
        d.await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e:?}"));
    }
    drop(producer);

    let group = unique_topic(&format!("{prefix}-group"));
    let mut cfg: ClientConfig = client_config(bootstrap);
    cfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100");
    let consumer: StreamConsumer = cfg.create().expect("create group consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let total: i64 = per_partition.iter().sum();
    let mut seen = vec![0i64; per_partition.len()];
    tokio::time::timeout(DEADLINE, async {
        while seen.iter().sum::<i64>() < total {
            match consumer.recv().await {
                Ok(m) => {
                    assert_eq!(m.payload().map(|p| p.len()), Some(VALUE_BYTES));
                    seen[m.partition() as usize] += 1;
                }
                Err(e) => eprintln!("consumer error (continuing): {e:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("consumed {seen:?} of {per_partition:?} within the deadline"));
    assert_eq!(seen, per_partition, "each record is consumed once");

    let mut tpl = TopicPartitionList::new();
    for (p, &offset) in commit.iter().enumerate() {
        tpl.add_partition_offset(&topic, p as i32, Offset::Offset(offset))
            .expect("valid offset");
    }
    let consumer = Arc::new(consumer);
    let committer = consumer.clone();
    blocking(move || committer.commit(&tpl, CommitMode::Sync)).expect("commit");
    Load {
        topic,
        group,
        produced: per_partition.to_vec(),
        committed: commit.to_vec(),
        consumer,
    }
}
