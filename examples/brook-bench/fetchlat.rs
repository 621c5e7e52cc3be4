//! Workload 10 (issue 17): how long one large Fetch takes, measured with raw Fetch requests (kafka-protocol,
//! a blocking socket, one request in flight) so no client library's parsing or batching is in the figure.
//!
//! A 4-partition topic gets a backlog of [`BACKLOG_PER_PARTITION`] per partition (1 KiB records, acks=1),
//! read once to bring it into the page cache; then [`FETCHES`] Fetch v12 requests each ask every partition
//! for up to [`PARTITION_MAX_BYTES`] from offset 0 (max_wait 0): the same ~4 MiB answer from the page cache
//! every time. Per request, two times from the request's last byte written by the client:
//! - **first byte**: until the response's first byte arrives: the broker's whole work on the request
//!   (decode, partition lookup, reads, framing) up to its first write, plus one loopback wake-up.
//! - **last byte**: until the whole response has been read: adds the transfer of ~4 MiB over loopback and
//!   the client's copy out of its socket, which bound it from below whatever the broker does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::clients;
use crate::opts::Options;
use crate::workloads::{Latency, Measured};

/// The rows this workload reports, in order.
pub const ROWS: [&str; 2] = [
    "Fetch of 4 x 1 MiB from the page cache: time to first byte",
    "Fetch of 4 x 1 MiB from the page cache: time to last byte",
];

const PARTITIONS: i32 = 4;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const BACKLOG_PER_PARTITION: u64 = 3 << 20;
const RECORD_BYTES: usize = 1024;
const WARM_UP: usize = 20;
const FETCHES: usize = 400;
const VERSION: i16 = 12;
/// A response larger than this is refused (the request asks for at most 4 MiB of records).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

fn topic_name(run_id: &str) -> String {
    format!("brook-bench-{run_id}-w10")
}

pub fn fetch_latency(bootstrap: &str, run_id: &str, _o: &Options) -> anyhow::Result<Vec<Measured>> {
    let topic = topic_name(run_id);
    clients::create_topic(bootstrap, &topic, PARTITIONS, &[])?;
    let result = measure(bootstrap, &topic);
    clients::delete_topic(bootstrap, &topic);
    result
}

fn measure(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<Measured>> {
    fill(bootstrap, topic)?;
    let addr = bootstrap
        .split(',')
        .next()
        .context("empty bootstrap address")?;
    let mut socket = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(clients::DEADLINE))?;
    let mut buf = vec![0u8; 8 << 20];
    let mut first = Histogram::<u64>::new(3).context("histogram")?;
    let mut last = Histogram::<u64>::new(3).context("histogram")?;
    let mut bytes = 0usize;
    for i in 0..WARM_UP + FETCHES {
        let request = encode_request(i as i32, topic)?;
        socket.write_all(&request)?;
        let sent = Instant::now();
        let mut size = [0u8; 4];
        socket.read_exact(&mut size)?;
        let first_at = sent.elapsed();
        let size = usize::try_from(i32::from_be_bytes(size)).context("negative response size")?;
        if size > MAX_RESPONSE_BYTES {
            bail!("a {size}-byte response to a 4 MiB fetch");
        }
        if buf.len() < size {
            buf.resize(size, 0);
        }
        socket.read_exact(&mut buf[..size])?;
        let last_at = sent.elapsed();
        // Checked outside the timed part: the answer must be what was asked for.
        let records = check_response(&buf[..size], i as i32)?;
        if i == 0 && records < 3 * PARTITION_MAX_BYTES as usize {
            bail!("the backlog answered only {records} bytes of records; expected about 4 MiB");
        }
        if i >= WARM_UP {
            first.record(micros(first_at))?;
            last.record(micros(last_at))?;
            bytes = size;
        }
    }
    let row = |h: &Histogram<u64>, what: &str| {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        Measured {
            latency: Some(Latency {
                count: h.len(),
                p50: ms(0.5),
                p99: ms(0.99),
                p999: ms(0.999),
                max: h.max() as f64 / 1e3,
                curve: Vec::new(),
            }),
            headline: h.value_at_quantile(0.5) as f64,
            note: format!(
                "{what}: p50 {} us, p99 {} us, max {} us over {} fetches of a {:.2} MiB response \
                 (after {WARM_UP} warm-up fetches)",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max(),
                h.len(),
                bytes as f64 / (1 << 20) as f64
            ),
            ..Measured::default()
        }
    };
    Ok(vec![
        row(
            &first,
            "request written to the response's first byte read (broker work until its first write)",
        ),
        row(
            &last,
            "request written to the response's last byte read (includes the transfer)",
        ),
    ])
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Writes the backlog (just written, it is in the page cache; the untimed warm-up fetches read it once).
fn fill(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let producer = clients::producer(
        bootstrap,
        &[("acks", "1"), ("linger.ms", "5"), ("batch.size", "1000000")],
    )?;
    let payload = clients::payload(RECORD_BYTES);
    let per_partition = BACKLOG_PER_PARTITION / RECORD_BYTES as u64;
    for partition in 0..PARTITIONS {
        for _ in 0..per_partition {
            clients::send(&producer, topic, Some(partition), &payload)?;
        }
    }
    clients::flush(&producer)
}

fn encode_request(correlation_id: i32, topic: &str) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("brook-bench-w10")));
    let partitions = (0..PARTITIONS)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(PARTITION_MAX_BYTES)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(52_428_800)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions),
        ]);
    let header_version = FetchRequest::header_version(VERSION);
    let size = header.compute_size(header_version)? + request.compute_size(VERSION)?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(i32::try_from(size)?);
    header.encode(&mut out, header_version)?;
    request.encode(&mut out, VERSION)?;
    Ok(out)
}

/// Decodes a response; returns its record bytes. Fails on a wrong correlation id or any error code.
fn check_response(frame: &[u8], correlation_id: i32) -> anyhow::Result<usize> {
    let mut body = bytes::Bytes::copy_from_slice(frame);
    let header = ResponseHeader::decode(&mut body, FetchResponse::header_version(VERSION))?;
    if header.correlation_id != correlation_id {
        bail!(
            "response {} to request {correlation_id}",
            header.correlation_id
        );
    }
    let response = FetchResponse::decode(&mut body, VERSION)?;
    if response.error_code != 0 {
        bail!("fetch failed with error {}", response.error_code);
    }
    let mut records = 0;
    for partition in response.responses.iter().flat_map(|t| &t.partitions) {
        if partition.error_code != 0 {
            bail!(
                "partition {} failed with error {}",
                partition.partition_index,
                partition.error_code
            );
        }
        records += partition.records.as_ref().map_or(0, |r| r.remaining());
    }
    Ok(records)
}
