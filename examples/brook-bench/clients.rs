//! The rdkafka clients the workloads drive: topic administration, a producer that counts delivery
//! reports without allocating per record, and consumer construction. Every wait has a deadline.

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cpu::{CpuClock, CpuUse};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::bindings as rdsys;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext,
};

/// Upper bound on any single administrative wait or flush; only a broken broker reaches it.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Settings every client shares: IPv4 loopback, errors surfaced quickly.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "30000")
        .set("topic.metadata.propagation.max.ms", "5000")
        .set("log_level", "3");
    cfg
}

/// Runs an rdkafka admin future to completion (the admin client's own thread drives the I/O).
fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("admin runtime")?;
    Ok(rt.block_on(f))
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    client_config(bootstrap)
        .create()
        .context("create admin client")
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(60)))
}

/// Creates `topic` with `partitions` and topic `configs`, then waits until metadata shows every
/// partition with a leader.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    if let Some(created) = on_mock(bootstrap, |m| m.create_topic(topic, partitions, 1)) {
        // The mock has no CreateTopics and ignores topic configs.
        created.with_context(|| format!("create {topic} on the mock cluster"))?;
        return wait_for_partitions(bootstrap, topic, partitions as usize);
    }
    let admin = admin(bootstrap)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = block_on(admin.create_topics(&[new], &admin_options()))?
        .with_context(|| format!("CreateTopics {topic}"))?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("CreateTopics {name}: {code:?}");
        }
    }
    wait_for_partitions(bootstrap, topic, partitions as usize)
}

/// Deletes bench topics so a long comparison run does not fill the broker's disk; failures are reported
/// but do not spoil the figures already taken.
pub fn delete_topic(bootstrap: &str, topic: &str) {
    if on_mock(bootstrap, |_| ()).is_some() {
        return; // No DeleteTopics there; it keeps only the newest 5 MiB of each partition in memory.
    }
    let outcome = admin(bootstrap).and_then(|a| {
        let r = block_on(a.delete_topics(&[topic], &admin_options()))?;
        r.map(|_| ()).map_err(anyhow::Error::from)
    });
    if let Err(e) = outcome {
        eprintln!("brook-bench: could not delete topic {topic}: {e:#}");
    }
}

thread_local! {
    /// librdkafka's mock cluster when `--compare-mock` started one. Not `Send` (it holds the C handle), so
    /// it lives on the thread that runs the workloads, which is the only one that creates topics.
    static MOCK: RefCell<Option<MockCluster<'static, DefaultProducerContext>>> =
        const { RefCell::new(None) };
}

/// `f` applied to the mock cluster when `bootstrap` is its address.
fn on_mock<R>(
    bootstrap: &str,
    f: impl FnOnce(&MockCluster<'static, DefaultProducerContext>) -> R,
) -> Option<R> {
    MOCK.with_borrow(|m| {
        m.as_ref()
            .filter(|m| m.bootstrap_servers() == bootstrap)
            .map(f)
    })
}

/// Starts librdkafka's in-process mock cluster (one broker, messages kept in memory, nothing on disk) and
/// returns its bootstrap address: broker B of `--compare-mock`, the client's own ceiling.
pub fn start_mock() -> anyhow::Result<String> {
    let mock = MockCluster::new(1).context("start librdkafka's mock cluster")?;
    let bootstrap = mock.bootstrap_servers();
    MOCK.set(Some(mock));
    Ok(bootstrap)
}

/// Polls metadata (10 ms to 200 ms apart) until `topic` has `partitions` partitions with leaders.
pub fn wait_for_partitions(bootstrap: &str, topic: &str, partitions: usize) -> anyhow::Result<()> {
    let probe: BaseConsumer = client_config(bootstrap)
        .create()
        .context("create metadata probe")?;
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Ok(md) = probe.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && t.partitions().len() == partitions
            && t.partitions().iter().all(|p| p.leader() >= 0)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {topic} never showed {partitions} partitions with leaders");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Counts failed deliveries (the only reports the bench's producers ask for); keeps the first error's text.
#[derive(Default)]
pub struct Counting {
    pub failed: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {}
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

pub type CountingProducer = BaseProducer<Counting>;

/// A producer with the bench's settings plus `overrides` (acks, linger.ms, ...).
pub fn producer(bootstrap: &str, overrides: &[(&str, &str)]) -> anyhow::Result<CountingProducer> {
    let mut cfg = client_config(bootstrap);
    cfg.set("message.timeout.ms", "60000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none")
        // Only failures come back as delivery reports: a report per record would cost the sending
        // thread more than the send itself. `flush` still waits for every acknowledgment, and any
        // failure fails the run.
        .set("delivery.report.only.error", "true");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    BaseProducer::from_config_and_context(&cfg, Counting::default()).context("create producer")
}

/// Enqueues one record, serving delivery reports while librdkafka's queue is full.
pub fn send(
    producer: &CountingProducer,
    topic: &str,
    partition: Option<i32>,
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut deadline = None;
    loop {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                wait_for_room(producer, &mut deadline)?;
            }
            Err((e, _)) => return Err(e).context("enqueue record"),
        }
    }
}

/// Serves reports for a while because librdkafka's queue is full; fails once it has stayed full for
/// [`DEADLINE`] since the first call with this `deadline` (set then: a clock read per record is measurable
/// at millions of records per second).
fn wait_for_room(
    producer: &CountingProducer,
    deadline: &mut Option<Instant>,
) -> anyhow::Result<()> {
    if Instant::now() > *deadline.get_or_insert_with(|| Instant::now() + DEADLINE) {
        bail!("producer queue stayed full for {DEADLINE:?}");
    }
    // rust-rdkafka's poll loops until its deadline and spins through the last millisecond (librdkafka
    // takes whole milliseconds): a short poll here would burn the CPU the broker and librdkafka's own
    // threads need. The queue is far larger than 10 ms of sending.
    producer.poll(Duration::from_millis(10));
    Ok(())
}

/// Waits for every enqueued record's delivery report; fails if any record failed.
pub fn flush(producer: &CountingProducer) -> anyhow::Result<()> {
    producer.flush(DEADLINE).context("flush producer")?;
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = ctx
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        bail!("{failed} records failed, first: {first}");
    }
    Ok(())
}

/// Figures of one timed produce phase.
#[derive(Debug, Clone, Copy)]
pub struct ProduceRun {
    pub records: u64,
    pub bytes: u64,
    pub secs: f64,
    pub cpu: CpuUse,
}

/// Sends `record_bytes` records for `time` (or until `max_records`), then waits for every delivery; the
/// clock stops when the last acknowledgment arrives. A warm-up of 1,000 records (metadata, connections)
/// runs before the clock starts.
pub fn produce_for(
    producer: &CountingProducer,
    topic: &str,
    record_bytes: usize,
    time: Duration,
    max_records: u64,
) -> anyhow::Result<ProduceRun> {
    let payload = payload(record_bytes);
    for _ in 0..1000 {
        send(producer, topic, None, &payload)?;
    }
    flush(producer)?;
    let started = Instant::now();
    let cpu = CpuClock::now();
    let mut batch = BatchSender::new(producer, topic, &payload)?;
    let mut sent = 0u64;
    while sent < max_records {
        let n = (max_records - sent).min(SEND_BATCH as u64) as usize;
        batch.send(n)?;
        sent += n as u64;
        producer.poll(Duration::ZERO);
        if started.elapsed() >= time {
            break;
        }
    }
    drop(batch);
    // Every record was acknowledged once flush returns without a failure report.
    flush(producer)?;
    let secs = started.elapsed().as_secs_f64();
    let records = sent;
    Ok(ProduceRun {
        cpu: cpu.since(),
        records,
        bytes: records * record_bytes as u64,
        secs,
    })
}

/// Record contents: a non-repeating byte pattern (compression is off; this keeps it honest if enabled).
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A consumer for `assign()`: librdkafka wants a group.id even then; nothing is ever committed.
pub fn consumer(bootstrap: &str, overrides: &[(&str, &str)]) -> anyhow::Result<BaseConsumer> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut cfg = client_config(bootstrap);
    let group = format!(
        "brook-bench-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    cfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    cfg.create().context("create consumer")
}

/// Assigns partitions `0..partitions` of `topic` from offset 0. Metadata first: librdkafka, assigned a
/// partition whose leader it does not know yet, retries the offset lookup only 500 ms later.
pub fn assign_from_start<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .context("consumer metadata")?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .context("assignment")?;
    }
    consumer.assign(&tpl).context("assign")
}

/// Records handed to librdkafka per call in the timed produce phases.
pub const SEND_BATCH: usize = 1024;

/// Hands copies of one payload to librdkafka `SEND_BATCH` at a time with `rd_kafka_produce_batch` (what
/// librdkafka's own rdkafka_performance tool does with -B): one queue lock per batch instead of one per
/// record, and no topic lookup by name per record. Partitioning is librdkafka's (keyless: sticky), and
/// what reaches the broker is unchanged: librdkafka still builds its batches by linger.ms and batch.size.
/// With rust-rdkafka's per-record `send` the sending thread, not the broker, set the pace of workload 1.
pub struct BatchSender<'a> {
    producer: &'a CountingProducer,
    topic: *mut rdsys::rd_kafka_topic_t,
    messages: Vec<rdsys::rd_kafka_message_t>,
    payload: &'a [u8],
}

impl<'a> BatchSender<'a> {
    pub fn new(
        producer: &'a CountingProducer,
        topic: &str,
        payload: &'a [u8],
    ) -> anyhow::Result<Self> {
        let name = CString::new(topic).context("topic name")?;
        // SAFETY: the client handle outlives this sender (it borrows the producer); a null
        // configuration means the producer's topic defaults.
        let topic = unsafe {
            rdsys::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        anyhow::ensure!(!topic.is_null(), "rd_kafka_topic_new failed for {name:?}");
        Ok(BatchSender {
            producer,
            topic,
            messages: Vec::with_capacity(SEND_BATCH),
            payload,
        })
    }

    /// Enqueues `n` records, serving reports while librdkafka's queue is full.
    pub fn send(&mut self, n: usize) -> anyhow::Result<()> {
        self.messages.clear();
        for _ in 0..n {
            // SAFETY: rd_kafka_message_t is a plain C struct for which all-zero is a valid value.
            let mut m: rdsys::rd_kafka_message_t = unsafe { std::mem::zeroed() };
            m.payload = self.payload.as_ptr() as *mut _;
            m.len = self.payload.len();
            self.messages.push(m);
        }
        let mut deadline = None;
        while !self.messages.is_empty() {
            // SAFETY: `messages` holds `len` initialised entries whose payload points into `payload`,
            // which outlives the call; RD_KAFKA_MSG_F_COPY makes librdkafka copy it, so nothing is
            // retained after the call returns. The count fits an int (at most SEND_BATCH).
            unsafe {
                rdsys::rd_kafka_produce_batch(
                    self.topic,
                    rdkafka::producer::PARTITION_UA,
                    rdsys::RD_KAFKA_MSG_F_COPY,
                    self.messages.as_mut_ptr(),
                    self.messages.len() as i32,
                );
            }
            // The ones not enqueued carry their error; keep those for another try.
            let mut failure = None;
            self.messages.retain(|m| {
                if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return false;
                }
                if m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    failure.get_or_insert(m.err);
                }
                true
            });
            if let Some(err) = failure {
                bail!("enqueue record: {}", RDKafkaErrorCode::from(err));
            }
            if !self.messages.is_empty() {
                for m in &mut self.messages {
                    m.err = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
                }
                wait_for_room(self.producer, &mut deadline)?;
            }
        }
        Ok(())
    }
}

impl Drop for BatchSender<'_> {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_topic_new and destroyed once; librdkafka keeps its own reference
        // for records still queued.
        unsafe { rdsys::rd_kafka_topic_destroy(self.topic) };
    }
}
