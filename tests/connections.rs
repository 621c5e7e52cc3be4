//! Many idle connections against a `brook` process: every one is answered, stays open, and stock clients
//! keep working beside them. Prints the broker's resident memory per idle connection and the time to open
//! them (printed, never asserted).
//!
//! The broker runs as a separate process (the built `brook` binary) so that its memory can be measured on
//! its own and so that the 10,000 client sockets (in this process) and the 10,000 server sockets (in the
//! broker) each fit under a 20,000 file-descriptor limit. `BROOK_TEST_IDLE_CONNECTIONS` overrides the
//! count (default 10,000).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::process;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const DEFAULT_IDLE_CONNECTIONS: usize = 10_000;
/// Connections being opened at once (each: connect, one ApiVersions round trip).
const OPEN_CONCURRENCY: usize = 200;
const API_VERSIONS_KEY: i16 = 18;

/// A `brook` process on an ephemeral loopback port, killed (and its data removed) when dropped.
struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl BrokerProcess {
    fn start(overrides: &[(&str, &str)]) -> BrokerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = process::brook_command();
        command
            .args(["--override", "listeners=PLAINTEXT://127.0.0.1:0"])
            .args([
                "--override",
                &format!("log.dirs={}", dir.path().join("data").display()),
            ]);
        for (key, value) in overrides {
            command.args(["--override", &format!("{key}={value}")]);
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn brook");
        // The bound address is announced on stderr, which keeps being drained.
        let addr = process::announced_addr(&mut child);
        BrokerProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Resident set size of the broker process, in bytes (VmRSS from /proc).
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the broker's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ApiVersions v0 request frame (request header v1, empty body).
fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let client_id = b"idle";
    let mut body = Vec::with_capacity(16);
    body.extend(API_VERSIONS_KEY.to_be_bytes());
    body.extend(0i16.to_be_bytes());
    body.extend(correlation_id.to_be_bytes());
    body.extend((client_id.len() as i16).to_be_bytes());
    body.extend(client_id);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Sends one ApiVersions v0 request and checks the answer: same correlation id, no error, a non-empty list
/// of APIs that includes ApiVersions itself.
async fn api_versions_round_trip(
    stream: &mut TcpStream,
    correlation_id: i32,
) -> Result<(), String> {
    stream
        .write_all(&api_versions_frame(correlation_id))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let size = stream
        .read_u32()
        .await
        .map_err(|e| format!("read size: {e}"))? as usize;
    if !(10..=64 * 1024).contains(&size) {
        return Err(format!("implausible response size {size}"));
    }
    let mut response = vec![0u8; size];
    stream
        .read_exact(&mut response)
        .await
        .map_err(|e| format!("read response: {e}"))?;
    let correlation = i32::from_be_bytes(response[0..4].try_into().expect("4 bytes"));
    let error = i16::from_be_bytes(response[4..6].try_into().expect("2 bytes"));
    let apis = i32::from_be_bytes(response[6..10].try_into().expect("4 bytes"));
    if correlation != correlation_id || error != 0 || apis <= 0 {
        return Err(format!(
            "correlation {correlation} (sent {correlation_id}), error {error}, {apis} apis"
        ));
    }
    let lists_itself = response[10..]
        .chunks_exact(6)
        .take(apis as usize)
        .any(|api| i16::from_be_bytes([api[0], api[1]]) == API_VERSIONS_KEY);
    if !lists_itself {
        return Err("ApiVersions missing from its own list".into());
    }
    Ok(())
}

/// Opens `count` connections, each answered once, with at most OPEN_CONCURRENCY under way.
async fn open_idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    let mut failures = Vec::new();
    while open.len() + failures.len() < count {
        while next < count && tasks.len() < OPEN_CONCURRENCY {
            let id = next as i32;
            next += 1;
            tasks.spawn(async move {
                let mut stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                api_versions_round_trip(&mut stream, id).await?;
                Ok::<_, String>(stream)
            });
        }
        match tasks.join_next().await {
            Some(Ok(Ok(stream))) => open.push(stream),
            Some(Ok(Err(e))) => failures.push(e),
            Some(Err(e)) => failures.push(format!("task: {e}")),
            None => break,
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} connections failed, first: {}",
        failures.len(),
        failures[0]
    );
    open
}

/// 10,000 connections that each did one ApiVersions round trip and then sit idle are all held, cost the
/// broker little memory each, and do not disturb a producer and a consumer; afterwards each of them still
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_are_held_while_clients_work() {
    let count = std::env::var("BROOK_TEST_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_IDLE_CONNECTIONS);
    let mut broker = BrokerProcess::start(&[]);
    let addr = broker.addr;

    // Warm up (runtime threads, lazy statics, allocator arenas) so the baseline is a serving broker.
    let mut warm = open_idle_connections(addr, 4).await;
    for (i, stream) in warm.iter_mut().enumerate() {
        api_versions_round_trip(stream, 1_000_000 + i as i32)
            .await
            .expect("warm-up connection answers twice");
    }
    drop(warm);
    let rss_before = broker.rss_bytes();

    let started = Instant::now();
    let mut idle = open_idle_connections(addr, count).await;
    let open_time = started.elapsed();
    let rss_after = broker.rss_bytes();
    assert_eq!(idle.len(), count);
    let per_connection = rss_after.saturating_sub(rss_before) as f64 / count as f64;
    println!(
        "{count} idle connections: opened and answered in {:.2} s ({:.0} connections/s); broker RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes ({:.2} KiB) per connection",
        open_time.as_secs_f64(),
        count as f64 / open_time.as_secs_f64(),
        rss_before as f64 / (1 << 20) as f64,
        rss_after as f64 / (1 << 20) as f64,
        per_connection,
        per_connection / 1024.0
    );

    // A stock producer and consumer work normally beside them.
    let bootstrap = addr.to_string();
    let topic = common::unique_topic("idle-conns");
    common::create_topic(&bootstrap, &topic, 1).await;
    let producer = common::producer(&bootstrap, &[("acks", "all")]);
    const MESSAGES: usize = 200;
    for i in 0..MESSAGES {
        let payload = format!("message-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .partition(0)
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i} with {count} idle connections: {e:?}"));
    }
    let consumer = common::consumer(&bootstrap, &[]);
    common::assign(&consumer, &topic, &[(0, 0)]);
    let received = common::consume_n(&consumer, MESSAGES, common::DEADLINE).await;
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.payload(), Some(format!("message-{i}").as_bytes()));
    }

    // The idle connections were held, not dropped: each answers a second request.
    let rss_with_clients = broker.rss_bytes();
    let mut tasks = JoinSet::new();
    let mut failures = Vec::new();
    for (i, mut stream) in idle.drain(..).enumerate() {
        if tasks.len() >= OPEN_CONCURRENCY
            && let Some(Ok(Err(e))) = tasks.join_next().await
        {
            failures.push(e);
        }
        tasks.spawn(async move { api_versions_round_trip(&mut stream, -(i as i32) - 1).await });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("task: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} idle connections no longer answered, first: {}",
        failures.len(),
        failures[0]
    );
    println!(
        "broker RSS with a producer and consumer beside them: {:.1} MiB",
        rss_with_clients as f64 / (1 << 20) as f64
    );
    assert!(broker.is_running(), "the broker process is still running");
}

/// An ApiVersions v3 request frame (request header v2) whose client software name pads it to about 1 KiB.
fn padded_api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let name = format!("pipeline-{}", "x".repeat(990));
    let version = "1.0";
    let mut body = Vec::with_capacity(1024);
    body.extend(API_VERSIONS_KEY.to_be_bytes());
    body.extend(3i16.to_be_bytes());
    body.extend(correlation_id.to_be_bytes());
    body.extend(4i16.to_be_bytes());
    body.extend(b"pipe");
    body.push(0); // header tagged fields
    for text in [name.as_str(), version] {
        // Compact string: unsigned varint of length + 1, then the bytes.
        let mut len = text.len() as u32 + 1;
        while len >= 0x80 {
            body.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        body.push(len as u8);
        body.extend(text.as_bytes());
    }
    body.push(0); // body tagged fields
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// A client that pipelines requests and never reads the responses: the broker stops reading once
/// queued.max.requests (default 500) replies wait, so the client's writes stall long before it has sent
/// all it wanted, and the broker's memory stays bounded. Once the client reads, every request it sent is
/// answered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_stalls_at_the_queue_limit_with_bounded_broker_memory() {
    /// The client tries to send this many requests (64 MiB): more than kernel buffers can hold.
    const WANTED: usize = 65_536;
    /// No write progress for this long means the broker stopped reading.
    const STALL: Duration = Duration::from_secs(1);
    let broker = BrokerProcess::start(&[]);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = socket.connect(broker.addr).await.expect("connect");
    // Same length for every request: only the correlation id changes.
    let request_len = padded_api_versions_frame(0).len();
    let rss_before = broker.rss_bytes();

    let mut sent_bytes = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    let mut next_request = 0usize;
    let stalled = loop {
        if pending.is_empty() {
            if next_request == WANTED {
                break false;
            }
            pending = padded_api_versions_frame(next_request as i32);
            next_request += 1;
        }
        match tokio::time::timeout(STALL, stream.writable()).await {
            Err(_) => break true,
            Ok(ready) => ready.expect("writable"),
        }
        sent_bytes += write_some(&stream, &mut pending);
    };
    let rss_stalled = broker.rss_bytes();
    let growth = rss_stalled.saturating_sub(rss_before);
    println!(
        "client that never reads: sent {} of {WANTED} requests ({:.1} MiB), then {}; broker RSS grew {:.2} MiB",
        sent_bytes / request_len,
        sent_bytes as f64 / (1 << 20) as f64,
        if stalled {
            "its writes stalled"
        } else {
            "never stalled"
        },
        growth as f64 / (1 << 20) as f64
    );
    assert!(
        stalled,
        "the broker kept reading all {WANTED} requests from a client that never reads"
    );
    assert!(
        growth < 32 << 20,
        "broker memory grew by {growth} bytes for one connection"
    );

    // Reading releases the back-pressure: finish the partial request, then every request is answered.
    let requests = sent_bytes.div_ceil(request_len);
    let mut received = 0usize;
    let mut inbox: Vec<u8> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    while received < requests {
        let interest = if sent_bytes.is_multiple_of(request_len) {
            tokio::io::Interest::READABLE
        } else {
            tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE
        };
        let ready = tokio::time::timeout_at(deadline, stream.ready(interest))
            .await
            .unwrap_or_else(|_| panic!("only {received} of {requests} responses arrived"))
            .expect("ready");
        if ready.is_writable() && !sent_bytes.is_multiple_of(request_len) {
            sent_bytes += write_some(&stream, &mut pending);
        }
        if ready.is_readable() {
            match stream.try_read(&mut scratch) {
                Ok(0) => panic!("broker closed after {received} of {requests} responses"),
                Ok(n) => inbox.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        // Take whole responses: size, correlation id, error code.
        let mut consumed = 0;
        while let Some(size) = inbox
            .get(consumed..consumed + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        {
            let Some(response) = inbox.get(consumed + 4..consumed + 4 + size) else {
                break;
            };
            let correlation = i32::from_be_bytes(response[0..4].try_into().expect("4 bytes"));
            let error = i16::from_be_bytes(response[4..6].try_into().expect("2 bytes"));
            assert_eq!(correlation, received as i32, "responses in request order");
            assert_eq!(error, 0, "ApiVersions error code");
            received += 1;
            consumed += 4 + size;
        }
        inbox.drain(..consumed);
    }
    assert_eq!(received, requests);
}

/// Writes as much of `pending` as the socket takes now, removing it from `pending`; the bytes written.
fn write_some(stream: &TcpStream, pending: &mut Vec<u8>) -> usize {
    match stream.try_write(pending) {
        Ok(n) => {
            pending.drain(..n);
            n
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("write failed: {e}"),
    }
}

/// True once the peer has closed `stream` (EOF or reset) within the deadline.
async fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut scratch = [0u8; 1024];
    let wait = async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(common::DEADLINE, wait).await.is_ok()
}

/// The connection limits set through the broker's configuration reach the listener: over
/// max.connections.per.ip a new connection is closed; at max.connections it waits for a free slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_from_config_are_enforced() {
    let per_ip = common::start_broker(&[("max.connections.per.ip", "2")]).await;
    let addr = per_ip.broker.local_addr();
    let mut open = open_idle_connections(addr, 2).await;
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_by_broker(&mut extra).await,
        "a third connection from one address is closed"
    );
    api_versions_round_trip(&mut open[0], 7)
        .await
        .expect("the first two connections still work");
    drop(open);
    per_ip.shutdown().await;

    let capped = common::start_broker(&[("max.connections", "2")]).await;
    let addr = capped.broker.local_addr();
    let mut open = open_idle_connections(addr, 2).await;
    let mut waiting = TcpStream::connect(addr).await.expect("connect");
    let mut answered = tokio::spawn(async move { api_versions_round_trip(&mut waiting, 9).await });
    api_versions_round_trip(&mut open[1], 8)
        .await
        .expect("the open connections still work");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut answered)
            .await
            .is_err(),
        "a third connection waits"
    );
    open.remove(0);
    tokio::time::timeout(common::DEADLINE, answered)
        .await
        .expect("the waiting connection is served once a slot frees")
        .expect("task")
        .expect("ApiVersions answered");
    drop(open);
    capped.shutdown().await;
}

/// connections.max.idle.ms from the configuration closes a connection that sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_after_connections_max_idle_ms() {
    let broker = common::start_broker(&[("connections.max.idle.ms", "300")]).await;
    let mut idle = open_idle_connections(broker.broker.local_addr(), 1).await;
    let started = Instant::now();
    assert!(
        closed_by_broker(&mut idle[0]).await,
        "idle connection closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed after {:?}, before the idle time",
        started.elapsed()
    );
    broker.shutdown().await;
}
