//! Prometheus metrics: the name of every metric, the per-broker registry, and the `/metrics` endpoint.
//!
//! Each [`crate::Broker`] owns its own registry (a `metrics-exporter-prometheus` recorder that is never
//! installed globally), so two brokers in one process (the tests do that) never mix their counts. Events
//! (requests, produced and fetched bytes, fsyncs) are recorded through the `metrics` facade as they happen;
//! state (offsets, log sizes, replication health, groups, lag, connections, the process) is read at scrape
//! time from the LogManager, the ReplicaManager, the group coordinator and `/proc/self`, so appends pay nothing for it and a deleted
//! partition's series disappear with it.
//!
//! Names follow `brook_<area>_<what>_<unit>`. Label values are bounded: `api` and `error` by the protocol,
//! `state` by the group and transaction state machines; `topic`, `partition` and `group` grow with the topics, partitions and
//! groups an operator creates. `metrics.partition.level.enable=false` drops the `partition` label (series are
//! summed per topic) for large deployments.

pub mod endpoint;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

pub use crate::config::MetricsConfig;

pub use endpoint::MetricsEndpoint;
pub use endpoint::Scrape;

/// Every metric brook exports, in one place. Counters end in `_total`; units are part of the name.
pub mod names {
    /// Counter `{api}`: requests handled, by API (Kafka's request name).
    pub const REQUESTS: &str = "brook_requests_total";
    /// Counter `{api, error}`: error codes in responses (one per partition, group or topic that failed),
    /// by API and Kafka error name. NONE is not counted.
    pub const REQUEST_ERRORS: &str = "brook_request_errors_total";
    /// Histogram `{api}`: seconds from a request's arrival to its response being ready (long polls included).
    pub const REQUEST_DURATION: &str = "brook_request_duration_seconds";
    /// Histogram `{api}`: seconds a request spent parked (Fetch long poll, acks=-1 Produce, JoinGroup and
    /// SyncGroup waiting for the rebalance), a part of its duration.
    pub const REQUEST_PARKED: &str = "brook_request_parked_seconds";
    /// Counter `{topic}`: record batch bytes appended by Produce.
    pub const PRODUCE_BYTES: &str = "brook_produce_bytes_total";
    /// Counter `{topic}`: records appended by Produce (from the batch headers).
    pub const PRODUCE_RECORDS: &str = "brook_produce_records_total";
    /// Histogram: size in bytes of each record batch appended by Produce.
    pub const PRODUCE_BATCH_SIZE: &str = "brook_produce_batch_size_bytes";
    /// Counter `{topic}`: record batch bytes returned by Fetch.
    pub const FETCH_BYTES: &str = "brook_fetch_bytes_total";
    /// Counter `{topic}`: records returned by Fetch (from the batch headers).
    pub const FETCH_RECORDS: &str = "brook_fetch_records_total";
    /// Gauge: Fetch requests parked in a long poll now.
    pub const FETCH_PARKED: &str = "brook_fetch_parked_requests";
    /// Histogram: seconds per partition flush (fsync of the log, its indexes and directory when dirty).
    /// Its `_count` is the number of flushes.
    pub const LOG_FLUSH_DURATION: &str = "brook_log_flush_duration_seconds";
    /// Gauge `{topic, partition}`: the next offset to be written.
    pub const LOG_END_OFFSET: &str = "brook_log_end_offset";
    /// Gauge `{topic, partition}`: the first offset still in the log.
    pub const LOG_START_OFFSET: &str = "brook_log_start_offset";
    /// Gauge `{topic, partition}`: the offset below which consumers may read.
    pub const LOG_HIGH_WATERMARK: &str = "brook_log_high_watermark";
    /// Gauge `{topic, partition}`: bytes of the partition's segment files.
    pub const LOG_SIZE: &str = "brook_log_size_bytes";
    /// Gauge `{topic, partition}`: segments in the partition.
    pub const LOG_SEGMENTS: &str = "brook_log_segments";
    /// Gauge: partition logs open on this broker.
    pub const LOG_PARTITIONS: &str = "brook_log_partitions";
    /// Counter: flusher group commits in this process (every broker in it counted).
    pub const LOG_GROUP_COMMITS: &str = "brook_log_group_commits_total";
    /// Counter: partition flushes done by those group commits (process-wide).
    pub const LOG_GROUP_COMMIT_FLUSHES: &str = "brook_log_group_commit_flushes_total";
    /// Gauge `{topic, partition}`: producers whose state the partition keeps (idempotent and transactional
    /// producer ids not yet expired), as DescribeProducers lists them.
    pub const LOG_PRODUCERS: &str = "brook_log_producers";
    /// Gauge `{topic, partition}`: transactions open in the partition (a transactional batch written, no
    /// marker yet).
    pub const LOG_ONGOING_TRANSACTIONS: &str = "brook_log_ongoing_transactions";
    /// Gauge `{topic, partition}`: the last stable offset, below which read_committed consumers may read.
    pub const LOG_LAST_STABLE_OFFSET: &str = "brook_log_last_stable_offset";
    /// Gauge `{topic, partition}`: high watermark minus last stable offset, the records read_committed
    /// consumers cannot see yet (a hanging transaction shows as a lag that keeps growing).
    pub const LOG_LAST_STABLE_OFFSET_LAG: &str = "brook_log_last_stable_offset_lag_records";
    /// Gauge `{state}`: transactional ids this broker coordinates, by state (Empty, Ongoing, PrepareCommit,
    /// PrepareAbort, CompleteCommit, CompleteAbort, Dead, PrepareEpochFence).
    pub const TXN_TRANSACTIONAL_IDS: &str = "brook_txn_transactional_ids";
    /// Gauge `{group, state}`: 1 for the group's current state (Empty, PreparingRebalance,
    /// CompletingRebalance, Stable, Dead).
    pub const GROUP_STATE: &str = "brook_group_state";
    /// Gauge `{group}`: members of the group.
    pub const GROUP_MEMBERS: &str = "brook_group_members";
    /// Gauge `{group, topic, partition}`: the group's committed offset.
    pub const GROUP_COMMITTED_OFFSET: &str = "brook_group_committed_offset";
    /// Gauge `{group, topic, partition}`: high watermark minus committed offset (never negative).
    pub const GROUP_LAG: &str = "brook_group_lag_records";
    /// Gauge: partitions this broker leads.
    pub const REPLICA_LEADER_PARTITIONS: &str = "brook_replica_leader_partitions";
    /// Gauge: led partitions whose ISR is smaller than their replica set (Kafka's UnderReplicatedPartitions).
    pub const REPLICA_UNDER_REPLICATED: &str = "brook_replica_under_replicated_partitions";
    /// Gauge: led partitions whose ISR is below the effective min ISR: acks=all writes are refused.
    pub const REPLICA_UNDER_MIN_ISR: &str = "brook_replica_under_min_isr_partitions";
    /// Gauge: partitions assigned to this broker whose log could not be opened or has failed.
    pub const REPLICA_OFFLINE: &str = "brook_replica_offline_partitions";
    /// Counter: ISR shrinks this broker proposed to the controller as a leader.
    pub const REPLICA_ISR_SHRINKS: &str = "brook_replica_isr_shrinks_total";
    /// Counter: ISR expansions this broker proposed to the controller as a leader.
    pub const REPLICA_ISR_EXPANDS: &str = "brook_replica_isr_expands_total";
    /// Counter: ISR changes the controller refused or did not answer.
    pub const REPLICA_ISR_CHANGE_FAILURES: &str = "brook_replica_isr_change_failures_total";
    /// Gauge `{topic, partition, replica}`: leader log end minus the follower's, for partitions this broker
    /// leads (absent until the follower's first fetch of the leadership).
    pub const REPLICA_FOLLOWER_LAG_RECORDS: &str = "brook_replica_follower_lag_records";
    /// Gauge `{topic, partition, replica}`: seconds since the follower last held all the leader had.
    pub const REPLICA_FOLLOWER_LAG_SECONDS: &str = "brook_replica_follower_lag_seconds";
    /// Counter: record batch bytes this broker's replica fetchers fetched from leaders.
    pub const REPLICA_FETCHER_BYTES: &str = "brook_replica_fetcher_bytes_total";
    /// Counter: records this broker's replica fetchers fetched from leaders.
    pub const REPLICA_FETCHER_RECORDS: &str = "brook_replica_fetcher_records_total";
    /// Gauge `{topic, partition}`: for a followed partition, the leader's high watermark minus this replica's
    /// log end at the fetcher's last response.
    pub const REPLICA_FETCHER_LAG: &str = "brook_replica_fetcher_lag_records";
    /// Gauge: client connections open now.
    pub const CONNECTIONS_OPEN: &str = "brook_connections_open";
    /// Counter: client connections accepted (admitted under the connection limits).
    pub const CONNECTIONS_ACCEPTED: &str = "brook_connections_accepted_total";
    /// Counter: client connections closed after being accepted.
    pub const CONNECTIONS_CLOSED: &str = "brook_connections_closed_total";
    /// Counter: connections closed at once because `max.connections.per.ip` was reached (at `max.connections`
    /// new connections wait instead).
    pub const CONNECTIONS_REJECTED: &str = "brook_connections_rejected_total";
    /// Gauge: resident set size of the brook process.
    pub const PROCESS_RESIDENT_MEMORY: &str = "brook_process_resident_memory_bytes";
    /// Counter: user and system CPU time of the brook process.
    pub const PROCESS_CPU: &str = "brook_process_cpu_seconds_total";
    /// Gauge: file descriptors open in the brook process.
    pub const PROCESS_OPEN_FDS: &str = "brook_process_open_fds";
    /// Gauge: the process's soft limit on open file descriptors.
    pub const PROCESS_MAX_FDS: &str = "brook_process_max_fds";
    /// Gauge `{version}`: always 1; the version label tells which brook answers.
    pub const BUILD_INFO: &str = "brook_build_info";
}

/// Buckets of the request latency histograms, in seconds: 0.5 ms to 30 s (long polls reach max.wait.ms).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the fsync histogram, in seconds: a disk's fdatasync takes 0.1 ms (cache) to seconds.
const FLUSH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Buckets of the produce batch size histogram, in bytes: 64 B to 16 MiB.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// One broker's metric registry. Cheap to call when metrics are disabled: every method returns at once.
pub struct Metrics {
    /// None when `metrics.listener` is empty: nothing is recorded.
    inner: Option<Registry>,
    partition_level: bool,
}

/// The recorder and the handles of the hot paths, looked up once per API and per topic instead of by key
/// on every request (a registry lookup hashes the name and labels).
struct Registry {
    recorder: PrometheusRecorder,
    batch_sizes: Histogram,
    /// Bounded by the protocol's API keys.
    apis: RwLock<HashMap<i16, Arc<ApiHandles>>>,
    /// One entry per topic ever produced to or fetched from, like the registry's own series.
    topics: RwLock<HashMap<String, Arc<TopicHandles>>>,
}

struct ApiHandles {
    requests: Counter,
    duration: Histogram,
    parked: Histogram,
}

struct TopicHandles {
    produce_bytes: Counter,
    produce_records: Counter,
    fetch_bytes: Counter,
    fetch_records: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.inner.is_some())
            .field("partition_level", &self.partition_level)
            .finish()
    }
}

/// The value behind a lock, also after a panic elsewhere (the maps only ever gain complete entries).
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    fn new() -> Registry {
        let recorder = build_recorder();
        let batch_sizes =
            metrics::with_local_recorder(&recorder, || histogram!(names::PRODUCE_BATCH_SIZE));
        metrics::with_local_recorder(&recorder, describe);
        Registry {
            recorder,
            batch_sizes,
            apis: Default::default(),
            topics: Default::default(),
        }
    }

    fn api(&self, api: ApiKey) -> Arc<ApiHandles> {
        if let Some(handles) = read(&self.apis).get(&(api as i16)) {
            return handles.clone();
        }
        let name = api_name(api);
        let handles = metrics::with_local_recorder(&self.recorder, || ApiHandles {
            requests: counter!(names::REQUESTS, "api" => name),
            duration: histogram!(names::REQUEST_DURATION, "api" => name),
            parked: histogram!(names::REQUEST_PARKED, "api" => name),
        });
        write(&self.apis)
            .entry(api as i16)
            .or_insert_with(|| Arc::new(handles))
            .clone()
    }

    fn topic(&self, topic: &str) -> Arc<TopicHandles> {
        if let Some(handles) = read(&self.topics).get(topic) {
            return handles.clone();
        }
        let label = topic.to_owned();
        let handles = metrics::with_local_recorder(&self.recorder, || TopicHandles {
            produce_bytes: counter!(names::PRODUCE_BYTES, "topic" => label.clone()),
            produce_records: counter!(names::PRODUCE_RECORDS, "topic" => label.clone()),
            fetch_bytes: counter!(names::FETCH_BYTES, "topic" => label.clone()),
            fetch_records: counter!(names::FETCH_RECORDS, "topic" => label.clone()),
        });
        write(&self.topics)
            .entry(label)
            .or_insert_with(|| Arc::new(handles))
            .clone()
    }
}

impl Metrics {
    /// A registry for one broker; a disabled one when `config.listener` is None.
    pub fn new(config: &MetricsConfig) -> Metrics {
        Metrics {
            inner: config.listener.is_some().then(Registry::new),
            partition_level: config.partition_level,
        }
    }

    /// A registry that records nothing (for brokers and tests without metrics).
    pub fn disabled() -> Metrics {
        Metrics {
            inner: None,
            partition_level: true,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether per-partition series are exported (`metrics.partition.level.enable`).
    pub fn partition_level(&self) -> bool {
        self.partition_level
    }

    /// The registry as Prometheus text (the event metrics; scrape-time gauges are added by a [`Scrape`]).
    pub fn render_registry(&self) -> String {
        self.inner
            .as_ref()
            .map(|r| r.recorder.handle().render())
            .unwrap_or_default()
    }

    /// Folds recorded histogram samples into their buckets, so memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        if let Some(r) = &self.inner {
            r.recorder.handle().run_upkeep();
        }
    }

    /// A request answered, with how long it took from arrival to response.
    pub fn request_done(&self, api: ApiKey, duration: Duration) {
        if let Some(r) = &self.inner {
            let handles = r.api(api);
            handles.requests.increment(1);
            handles.duration.record(duration.as_secs_f64());
        }
    }

    pub fn request_parked(&self, api: ApiKey, parked: Duration) {
        if let Some(r) = &self.inner {
            r.api(api).parked.record(parked.as_secs_f64());
        }
    }

    /// Counts the error codes of one response (NONE is skipped). Errors are rare: looked up by key.
    pub fn response_errors(&self, api: ApiKey, codes: &[i16]) {
        let Some(r) = &self.inner else {
            return;
        };
        if codes.iter().all(|&c| c == 0) {
            return;
        }
        metrics::with_local_recorder(&r.recorder, || {
            let api = api_name(api);
            for &code in codes.iter().filter(|&&c| c != 0) {
                counter!(names::REQUEST_ERRORS, "api" => api, "error" => error_name(code))
                    .increment(1);
            }
        });
    }

    /// Record batches appended to `topic` by a Produce: bytes, records (from the batch headers) and each
    /// batch's size.
    pub fn produced(&self, topic: &str, records: &[u8]) {
        let Some(r) = &self.inner else {
            return;
        };
        let mut count = 0u64;
        for batch in batches(records) {
            count += batch.records;
            r.batch_sizes.record(batch.bytes as f64);
        }
        let handles = r.topic(topic);
        handles.produce_bytes.increment(records.len() as u64);
        handles.produce_records.increment(count);
    }

    /// Record batches a Fetch returns from `topic`.
    pub fn fetched(&self, topic: &str, records: &[u8]) {
        let Some(r) = &self.inner else {
            return;
        };
        if records.is_empty() {
            return;
        }
        let count: u64 = batches(records).map(|b| b.records).sum();
        let handles = r.topic(topic);
        handles.fetch_bytes.increment(records.len() as u64);
        handles.fetch_records.increment(count);
    }

    /// [`Metrics::fetched`] of batches not in memory (sent from a segment file), counted when they were found.
    pub fn fetched_counted(&self, topic: &str, bytes: u64, records: u64) {
        let Some(r) = &self.inner else {
            return;
        };
        if bytes == 0 {
            return;
        }
        let handles = r.topic(topic);
        handles.fetch_bytes.increment(bytes);
        handles.fetch_records.increment(records);
    }

    /// The histogram the LogManager's flusher records partition flushes into (a no-op when disabled).
    pub fn flush_histogram(&self) -> Histogram {
        match &self.inner {
            Some(r) => {
                metrics::with_local_recorder(&r.recorder, || histogram!(names::LOG_FLUSH_DURATION))
            }
            None => Histogram::noop(),
        }
    }
}

fn build_recorder() -> PrometheusRecorder {
    let builder = PrometheusBuilder::new();
    let with_buckets = [
        (names::REQUEST_DURATION, LATENCY_BUCKETS),
        (names::REQUEST_PARKED, LATENCY_BUCKETS),
        (names::LOG_FLUSH_DURATION, FLUSH_BUCKETS),
        (names::PRODUCE_BATCH_SIZE, BATCH_SIZE_BUCKETS),
    ]
    .into_iter()
    .try_fold(builder, |b, (name, buckets)| {
        b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
    });
    // Only an empty bucket list is refused, and every list above is a non-empty constant.
    with_buckets
        .expect("histogram bucket lists are non-empty constants")
        .build_recorder()
}

/// HELP lines of the event metrics.
fn describe() {
    describe_counter!(names::REQUESTS, "Requests handled, by API.");
    describe_counter!(
        names::REQUEST_ERRORS,
        "Error codes in responses (one per failed partition, group or topic), by API and error."
    );
    describe_histogram!(
        names::REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its response being ready, long polls included."
    );
    describe_histogram!(
        names::REQUEST_PARKED,
        Unit::Seconds,
        "Time a request spent parked (fetch long poll, acks=-1 produce, rebalance), part of its duration."
    );
    describe_counter!(
        names::PRODUCE_BYTES,
        Unit::Bytes,
        "Record batch bytes appended by Produce."
    );
    describe_counter!(names::PRODUCE_RECORDS, "Records appended by Produce.");
    describe_histogram!(
        names::PRODUCE_BATCH_SIZE,
        Unit::Bytes,
        "Size of each record batch appended by Produce."
    );
    describe_counter!(
        names::FETCH_BYTES,
        Unit::Bytes,
        "Record batch bytes returned by Fetch."
    );
    describe_counter!(names::FETCH_RECORDS, "Records returned by Fetch.");
    describe_histogram!(
        names::LOG_FLUSH_DURATION,
        Unit::Seconds,
        "Time per partition flush (fsync); the count is the number of flushes."
    );
}

/// Kafka's name of an API ("Produce", "Fetch", ...), interned once.
fn api_name(api: ApiKey) -> &'static str {
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            // Bounded: one short string per API key of the protocol, leaked once for the process.
            ApiKey::iter()
                .map(|k| (k as i16, &*format!("{k:?}").leak()))
                .collect()
        })
        .get(&(api as i16))
        .copied()
        .unwrap_or("Unknown")
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), interned once per code seen; codes the
/// protocol does not define share the name `UNKNOWN`, so the label stays bounded.
fn error_name(code: i16) -> &'static str {
    static NAMES: OnceLock<std::sync::Mutex<HashMap<i16, &'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(name) = names.get(&code) {
        return name;
    }
    let name = match kafka_protocol::ResponseError::try_from_code(code) {
        None => "NONE",
        Some(kafka_protocol::ResponseError::Unknown(_)) => "UNKNOWN",
        // Bounded: the protocol defines about 130 codes, each leaked at most once.
        Some(error) => screaming_snake(&error.to_string()).leak(),
    };
    names.insert(code, name);
    name
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// One record batch seen through its header only.
struct BatchHeader {
    bytes: usize,
    records: u64,
}

/// Offset of batchLength, and the bytes before the part it counts.
const LENGTH_OFFSET: usize = 8;
const LOG_OVERHEAD: usize = 12;
/// Offset of recordCount in a v2 batch header, and the header's size.
const RECORD_COUNT_OFFSET: usize = 57;
const BATCH_HEADER_BYTES: usize = 61;

/// The whole v2 batches in `records`, read from their headers only (records are never decoded). Stops at a
/// truncated or malformed batch; a count that is negative counts as 0.
fn batches(records: &[u8]) -> impl Iterator<Item = BatchHeader> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = records.get(pos..)?;
        let length = rest.get(LENGTH_OFFSET..LOG_OVERHEAD)?;
        let length = i32::from_be_bytes(length.try_into().ok()?);
        let total = LOG_OVERHEAD.checked_add(usize::try_from(length).ok()?)?;
        if total < BATCH_HEADER_BYTES || total > rest.len() {
            return None;
        }
        let count = &rest[RECORD_COUNT_OFFSET..BATCH_HEADER_BYTES];
        let count = i32::from_be_bytes(count.try_into().ok()?);
        pos += total;
        Some(BatchHeader {
            bytes: total,
            records: u64::try_from(count).unwrap_or(0),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record_batch::test_support::batch;

    #[test]
    fn batch_headers_give_sizes_and_record_counts() {
        let mut records = batch(3, 10, 1);
        let first = records.len();
        records.extend_from_slice(&batch(5, 20, 2));
        let seen: Vec<(usize, u64)> = batches(&records).map(|b| (b.bytes, b.records)).collect();
        assert_eq!(seen, vec![(first, 3), (records.len() - first, 5)]);
        // A truncated tail (as a fetch may return) is not counted.
        let seen = batches(&records[..records.len() - 1]).count();
        assert_eq!(seen, 1);
        assert_eq!(batches(&[0u8; 11]).count(), 0);
        let mut negative = batch(1, 10, 1);
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(batches(&negative).count(), 0);
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(79), "MEMBER_ID_REQUIRED");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(31_000), "UNKNOWN");
        assert_eq!(api_name(ApiKey::OffsetCommit), "OffsetCommit");
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let metrics = Metrics::disabled();
        metrics.produced("t", &batch(1, 10, 1));
        assert_eq!(metrics.render_registry(), "");
    }
}
