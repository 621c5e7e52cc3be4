//! Fetch: whole record batches from the requested offsets, with long polling and KIP-74 size limits.
//!
//! Fetch sessions (KIP-227) are not kept: every fetch is a full fetch and the response carries session id 0,
//! which tells clients that no session was created, as a Kafka broker whose session cache is full does.
//!
//! A fetch from a follower (`replica_id`, or `replica_state` from v15, >= 0) is served by the leader only:
//! it reads to the log end (not the high watermark), first checks the follower's last fetched epoch against
//! the leader's epoch cache (a diverging follower is told where to truncate: `diverging_epoch`), records the
//! follower's progress (which moves the high watermark and may grow the ISR), and parks on the log end.

use crate::api::context::RequestContext;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use uuid::Uuid;

use super::error::log_error_code;
use super::{Apis, metadata_cache};
use crate::cluster::MetadataStore;
use crate::log::LogError;
use crate::log::read_buffer::FileSlice;
use crate::replica::{FetchIsolation, FollowerFetch, Partition, ReplicaManager};

/// Kafka's `fetch.max.bytes` default: the most one fetch response carries, whatever the client asks.
pub const FETCH_MAX_BYTES: usize = 57_671_680;

pub enum FetchOutcome {
    Respond(FetchReply),
    /// Not enough data yet: the future answers when `min_bytes` arrive or `max_wait_ms` passes.
    Wait(Pin<Box<dyn Future<Output = FetchReply> + Send>>),
}

/// A fetch's answer: the response, and the partitions whose batches were left in their segment files to be
/// sent from there (their `records` in `response` are empty; the framing puts the file's bytes there).
pub struct FetchReply {
    pub response: FetchResponse,
    /// In response order.
    pub files: Vec<SentFromFile>,
}

/// The batches of one partition of a [`FetchReply`], left in a segment file.
pub struct SentFromFile {
    /// Index of the topic in `response.responses`, and of the partition in its `partitions`.
    pub topic: usize,
    pub partition: usize,
    pub slice: FileSlice,
}

impl From<FetchResponse> for FetchReply {
    fn from(response: FetchResponse) -> Self {
        FetchReply {
            response,
            files: Vec::new(),
        }
    }
}

/// One requested partition, resolved once so the long poll can re-read it cheaply.
struct Wanted {
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    log: Result<Arc<Partition>, ResponseError>,
    /// A follower's: the epoch of its last batch (-1: none, or a version without it) and its log start.
    last_fetched_epoch: i32,
    follower_log_start: i64,
}

/// The follower a replica fetch comes from.
struct Follower {
    replica_id: i32,
    /// Its broker epoch (`replica_state.replica_epoch`, KIP-903); -1 when the version has none.
    broker_epoch: i64,
    replicas: Arc<ReplicaManager>,
}

struct WantedTopic {
    name: TopicName,
    id: Uuid,
    /// The topic's name in the image, when it resolved (v13+ requests name topics by id only).
    resolved: Option<String>,
    partitions: Vec<Wanted>,
}

struct Plan {
    topics: Vec<WantedTopic>,
    max_bytes: usize,
    isolation: FetchIsolation,
    /// Fetch v16+: where leader hints come from (the image's source) and the request's listener.
    hints: Option<(Arc<MetadataStore>, Arc<str>)>,
    follower: Option<Follower>,
    /// KIP-392: a consumer with a `client.rack`, when `replica.selector.class` is rack-aware.
    selector: Option<RackSelector>,
    /// `fetch.sendfile.enable`: large reads are left in the segment files (see [`FetchReply`]).
    sendfile: bool,
}

/// Kafka's `RackAwareReplicaSelector`: a consumer in a rack where an in-sync follower holding its offset
/// lives is sent there (`preferred_read_replica`); the leader serves it if it is in that rack itself, or no
/// replica is.
struct RackSelector {
    client_rack: String,
    image: Arc<crate::cluster::MetadataImage>,
    /// The listener the consumer came in on: the follower must be reachable there.
    listener: Arc<str>,
    /// This broker, the leader.
    node_id: i32,
}

impl RackSelector {
    fn select(&self, log: &Partition, fetch_offset: i64) -> Option<i32> {
        if !log.is_leader() || self.in_rack(self.node_id) {
            return None;
        }
        let now_ms = crate::clock::Clock::system().now_ms();
        log.read_replica_candidates(fetch_offset, now_ms)
            .into_iter()
            .filter(|(id, _, _)| self.in_rack(*id))
            // The most data first, then the least lag.
            .max_by_key(|&(_, log_end, lag_ms)| (log_end, std::cmp::Reverse(lag_ms)))
            .map(|(id, _, _)| id)
    }

    /// The broker is in the consumer's rack and listens where the consumer connected.
    fn in_rack(&self, id: i32) -> bool {
        self.image.broker(id).is_some_and(|b| {
            b.rack.as_deref() == Some(self.client_rack.as_str())
                && b.endpoints.iter().any(|e| *e.listener == *self.listener)
        })
    }
}

pub fn handle(apis: &Apis, ctx: &RequestContext, request: FetchRequest) -> FetchOutcome {
    if request.session_id != 0 {
        return FetchOutcome::Respond(
            FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code())
                .with_session_id(0)
                .into(),
        );
    }
    let (replica_id, broker_epoch) = if ctx.api_version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    let follower = (replica_id >= 0).then(|| Follower {
        replica_id,
        broker_epoch,
        replicas: apis.replicas.clone(),
    });
    let topics = request
        .topics
        .into_iter()
        .map(|topic| wanted_topic(apis, ctx, topic, follower.as_ref()))
        .collect();
    let plan = Plan {
        topics,
        max_bytes: (request.max_bytes.max(0) as usize).min(FETCH_MAX_BYTES),
        isolation: if follower.is_some() {
            FetchIsolation::LogEnd
        } else {
            FetchIsolation::for_consumer(request.isolation_level)
        },
        hints: (ctx.api_version >= 16).then(|| (apis.metadata.clone(), ctx.listener.clone())),
        selector: Some(request.rack_id.to_string())
            .filter(|rack| {
                !rack.is_empty()
                    && follower.is_none()
                    && ctx.api_version >= 11
                    && apis.config.rack_aware_replica_selector
            })
            .map(|client_rack| RackSelector {
                client_rack,
                image: apis.metadata.image(),
                listener: ctx.listener.clone(),
                node_id: apis.node_id,
            }),
        follower,
        sendfile: apis.config.fetch_sendfile,
    };

    // Subscribe before the first read: an append between the read and the wait must still wake us.
    // read_committed reads stop at the last stable offset, which moves only when the high watermark does
    // while no transaction is open (LSO == HW). Once transactions hold the LSO back, a parked
    // read_committed fetch must also wake when the LSO moves (a marker completing a transaction below the
    // high watermark): subscribe to the partition's LSO watch here for those fetches.
    let watches: Vec<watch::Receiver<i64>> = plan
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| {
            p.log.as_ref().ok().map(|log| {
                // A follower waits for new data; a consumer for data it may see.
                if plan.follower.is_some() {
                    log.subscribe_log_end()
                } else {
                    log.subscribe_high_watermark()
                }
            })
        })
        .collect();
    let (response, bytes, failed) = read(&plan);
    // A fetch can never carry more than max_bytes, so asking for more would only ever time out.
    let min_bytes = (request.min_bytes.max(0) as usize).min(plan.max_bytes.max(1));
    if bytes >= min_bytes || failed || request.max_wait_ms <= 0 {
        return FetchOutcome::Respond(response);
    }
    let max_wait = Duration::from_millis(request.max_wait_ms as u64);
    let parked = Parked::new(apis.parked_fetches.clone());
    let stopping = apis.stopping.subscribe();
    FetchOutcome::Wait(Box::pin(async move {
        let _parked = parked;
        long_poll(plan, watches, min_bytes, max_wait, stopping).await
    }))
}

/// One requested topic, each partition resolved once: the leader's (or, KIP-392, a follower's for a
/// consumer's v11+ fetch), checked against the request's epoch and, for a follower's fetch, its replicas.
fn wanted_topic(
    apis: &Apis,
    ctx: &RequestContext,
    topic: kafka_protocol::messages::fetch_request::FetchTopic,
    follower: Option<&Follower>,
) -> WantedTopic {
    let resolved = apis.resolve_topic(topic.topic.0.as_str(), topic.topic_id);
    let partitions = topic
        .partitions
        .into_iter()
        .map(|p| {
            let log = resolved.as_ref().map_err(|e| *e).and_then(|meta| {
                // KIP-392: a consumer's v11+ fetch may read from a follower held here.
                let log = if follower.is_none() && ctx.api_version >= 11 {
                    apis.replicas.fetchable_partition_at(
                        meta,
                        p.partition,
                        p.current_leader_epoch,
                    )?
                } else {
                    apis.replicas
                        .leader_partition_at(meta, p.partition, p.current_leader_epoch)?
                };
                match follower {
                    Some(f) => {
                        check_replica(&log, f.replica_id, p.current_leader_epoch).map(|()| log)
                    }
                    None => Ok(log),
                }
            });
            Wanted {
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                log,
                last_fetched_epoch: if ctx.api_version >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
                follower_log_start: p.log_start_offset,
            }
        })
        .collect();
    WantedTopic {
        name: topic.topic,
        id: topic.topic_id,
        resolved: resolved.ok().map(|t| t.name.clone()),
        partitions,
    }
}

/// Counts a fetch as parked from the moment it decides to wait until its future completes or is dropped.
struct Parked(Arc<AtomicUsize>);

impl Parked {
    fn new(count: Arc<AtomicUsize>) -> Parked {
        count.fetch_add(1, Ordering::Relaxed);
        Parked(count)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Parks on the requested partitions' high watermarks and re-reads whenever one moves.
async fn long_poll(
    plan: Plan,
    mut watches: Vec<watch::Receiver<i64>>,
    min_bytes: usize,
    max_wait: Duration,
    mut stopping: watch::Receiver<bool>,
) -> FetchReply {
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        if watches.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            return read(&plan).0;
        }
        let closed = {
            let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                (result, index, _) = changed => result.is_err().then_some(index),
                _ = tokio::time::sleep_until(deadline) => return read(&plan).0,
                _ = stopping.wait_for(|stop| *stop) => return read(&plan).0,
            }
        };
        if let Some(index) = closed {
            // The partition was deleted: stop watching it; the re-read reports the error.
            watches.swap_remove(index);
        }
        let (response, bytes, failed) = read(&plan);
        if bytes >= min_bytes || failed {
            return response;
        }
    }
}

/// Reads every planned partition within the size limits. Returns the reply, the record bytes in it and
/// whether any partition failed (a failure answers at once rather than waiting).
fn read(plan: &Plan) -> (FetchReply, usize, bool) {
    let mut used = 0usize;
    let mut failed = false;
    let mut files = Vec::new();
    let responses = plan
        .topics
        .iter()
        .enumerate()
        .map(|(topic_index, topic)| {
            let partitions = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, wanted)| {
                    let (data, file) = read_partition(plan, wanted, &mut used);
                    failed |= data.error_code != 0;
                    if let Some(slice) = file {
                        files.push(SentFromFile {
                            topic: topic_index,
                            partition: index,
                            slice,
                        });
                    }
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.name.clone())
                .with_topic_id(topic.id)
                .with_partitions(partitions)
        })
        .collect();
    let response = FetchResponse::default().with_responses(responses);
    let reply = FetchReply {
        response: with_leader_hints(plan, response),
        files,
    };
    (reply, used, failed)
}

/// KIP-951 (Fetch v16+): a partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names its
/// current leader and epoch, and the leader's endpoint on the request's listener goes into
/// `node_endpoints`, so the consumer moves there without waiting for a metadata refresh.
fn with_leader_hints(plan: &Plan, mut response: FetchResponse) -> FetchResponse {
    let Some((metadata, listener)) = &plan.hints else {
        return response;
    };
    let hinted = [
        ResponseError::NotLeaderOrFollower.code(),
        ResponseError::FencedLeaderEpoch.code(),
    ];
    if !response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| hinted.contains(&p.error_code))
    {
        return response;
    }
    let image = metadata.image();
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    for (topic, wanted) in response.responses.iter_mut().zip(&plan.topics) {
        for partition in &mut topic.partitions {
            if !hinted.contains(&partition.error_code) {
                continue;
            }
            let hint = metadata_cache::current_leader(
                &image,
                wanted.resolved.as_deref().unwrap_or_default(),
                partition.partition_index,
                listener,
            );
            partition.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(hint.leader_id))
                .with_leader_epoch(hint.leader_epoch);
            if let Some(node) = hint.node
                && !endpoints.iter().any(|e| e.node_id.0 == node.id)
            {
                endpoints.push(
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(node.id))
                        .with_host(StrBytes::from_string(node.host))
                        .with_port(i32::from(node.port))
                        .with_rack(node.rack.map(StrBytes::from_string)),
                );
            }
        }
    }
    response.with_node_endpoints(endpoints)
}

/// A fetch from a broker that holds no replica of the partition (Kafka's `followerReplicaOrThrow`):
/// UNKNOWN_LEADER_EPOCH when it names an epoch (it may know of a reassignment this leader has not applied
/// yet), NOT_LEADER_OR_FOLLOWER otherwise.
fn check_replica(
    log: &Partition,
    replica_id: i32,
    current_leader_epoch: i32,
) -> Result<(), ResponseError> {
    if log.has_replica(replica_id) {
        Ok(())
    } else if current_leader_epoch >= 0 {
        Err(ResponseError::UnknownLeaderEpoch)
    } else {
        Err(ResponseError::NotLeaderOrFollower)
    }
}

/// KIP-320/Fetch v12: where a follower's log stops agreeing with the leader's. Its last fetched epoch ends,
/// in the leader's epoch cache, below the fetch offset (or is unknown here, answered with the largest epoch
/// before it): the follower truncates to that end and fetches again. Err when the leader has no answer.
fn diverging_epoch(log: &Partition, wanted: &Wanted) -> Result<Option<EpochEndOffset>, LogError> {
    if wanted.last_fetched_epoch < 0 {
        return Ok(None);
    }
    let (epoch, end_offset) = log.end_offset_for_epoch(wanted.last_fetched_epoch);
    if epoch < 0 || end_offset < 0 {
        return Err(LogError::OffsetOutOfRange {
            offset: wanted.fetch_offset,
            log_start: log.log_start_offset(),
            log_end: log.log_end_offset(),
        });
    }
    Ok(
        (epoch < wanted.last_fetched_epoch || end_offset < wanted.fetch_offset).then(|| {
            EpochEndOffset::default()
                .with_epoch(epoch)
                .with_end_offset(end_offset)
        }),
    )
}

/// One partition's answer, and the file slice holding its batches when they are left in the segment.
fn read_partition(
    plan: &Plan,
    wanted: &Wanted,
    used: &mut usize,
) -> (PartitionData, Option<FileSlice>) {
    let mut file = None;
    let data = read_partition_data(plan, wanted, used, &mut file);
    (data, file)
}

fn read_partition_data(
    plan: &Plan,
    wanted: &Wanted,
    used: &mut usize,
    file: &mut Option<FileSlice>,
) -> PartitionData {
    let base = PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_preferred_read_replica((-1).into())
        .with_records(Some(bytes::Bytes::new()));
    let log = match &wanted.log {
        Ok(log) => log,
        Err(error) => return unavailable(base, *error),
    };
    if log.is_closed() {
        // Deleted while the fetch was parked, or taken offline by a disk failure.
        return unavailable(
            base,
            if log.is_failed() {
                ResponseError::KafkaStorageError
            } else {
                ResponseError::UnknownTopicOrPartition
            },
        );
    }
    let read_committed = plan.isolation == FetchIsolation::TxnCommitted;
    let base = base.with_aborted_transactions(read_committed.then(Vec::new));
    if let Some(preferred) = plan
        .selector
        .as_ref()
        .and_then(|s| s.select(log, wanted.fetch_offset))
    {
        // The consumer moves to that replica; nothing is read here.
        return offsets_only(base, log).with_preferred_read_replica(BrokerId(preferred));
    }
    // The log end before the read: a follower fetching at it is caught up (Kafka's `leaderEndOffset`).
    let leader_log_end = log.log_end_offset();
    if plan.follower.is_some() {
        match diverging_epoch(log, wanted) {
            Ok(None) => {}
            // The follower's state is not recorded: its fetch offset is not in agreement with ours.
            Ok(Some(diverging)) => return offsets_only(base, log).with_diverging_epoch(diverging),
            Err(error) => {
                return offsets_only(base, log).with_error_code(log_error_code(&error).code());
            }
        }
    }
    let result = read_records(plan, wanted, log, *used);
    if let (Some(follower), Ok(_)) = (&plan.follower, &result)
        && let Err(error) = follower.replicas.record_follower_fetch(
            log,
            &FollowerFetch {
                replica_id: follower.replica_id,
                broker_epoch: follower.broker_epoch,
                fetch_offset: wanted.fetch_offset,
                log_start_offset: wanted.follower_log_start,
                leader_log_end,
            },
        )
    {
        return offsets_only(base, log).with_error_code(error.code());
    }
    match result {
        Ok(Some(data)) => {
            *used += data.records.len() + data.file.as_ref().map_or(0, FileSlice::len);
            *file = data.file;
            // Null under read_uncommitted: a client given a list drops those records (franz-go did).
            let aborted = data.aborted_transactions.map(|txns| {
                txns.iter()
                    .map(|t| {
                        AbortedTransaction::default()
                            .with_producer_id(t.producer_id.into())
                            .with_first_offset(t.first_offset)
                    })
                    .collect()
            });
            base.with_aborted_transactions(aborted)
                .with_high_watermark(data.high_watermark)
                .with_last_stable_offset(log.last_stable_offset().min(data.high_watermark))
                .with_log_start_offset(data.log_start_offset)
                .with_records(Some(data.records))
        }
        Ok(None) => offsets_only(base, log),
        Err(error) => {
            log_read_failure(log, &error);
            offsets_only(base, log).with_error_code(log_error_code(&error).code())
        }
    }
}

/// A partition that cannot be read at all: its error and no offsets.
fn unavailable(base: PartitionData, error: ResponseError) -> PartitionData {
    base.with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

/// Reads the partition within what is left of the request's bytes after `used`; None when nothing may be
/// read. KIP-74: the first partition that has data returns at least one whole batch, so a batch larger
/// than the limits can never stall a consumer.
fn read_records(
    plan: &Plan,
    wanted: &Wanted,
    log: &Partition,
    used: usize,
) -> Result<Option<crate::log::FetchData>, LogError> {
    let budget = wanted
        .partition_max_bytes
        .min(plan.max_bytes.saturating_sub(used));
    let min_one = used == 0;
    if budget == 0 && !min_one {
        return Ok(None);
    }
    log.read_for_fetch(
        wanted.fetch_offset,
        budget,
        min_one,
        plan.isolation,
        plan.sendfile,
    )
    .map(Some)
}

/// Logs a failed read as it deserves: not at all for a client's out-of-range offset, at debug for an
/// offline partition (logged once when it went offline), else a throttled warning.
fn log_read_failure(log: &Partition, error: &LogError) {
    match error {
        LogError::OffsetOutOfRange { .. } => {}
        LogError::Offline(_) => {
            tracing::debug!(partition = %log.topic_partition(), %error, "fetch failed")
        }
        _ => {
            static READ_FAILED: super::LogThrottle = super::LogThrottle::new();
            if let Some(times) = READ_FAILED.hit() {
                tracing::warn!(partition = %log.topic_partition(), %error, times, "fetch failed");
            }
        }
    }
}

fn offsets_only(base: PartitionData, log: &Partition) -> PartitionData {
    let high_watermark = log.high_watermark();
    base.with_high_watermark(high_watermark)
        .with_last_stable_offset(log.last_stable_offset().min(high_watermark))
        .with_log_start_offset(log.log_start_offset())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::BytesMut;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};

    use super::*;
    use crate::api::test_apis;
    use crate::log::batch_builder::end_transaction_marker;
    use crate::log::record_batch::test_support::batch;
    use crate::log::{AbortedTxn, AppendOrigin, RecordBatchHeader};

    /// A Fetch of `tx-0` at `version` that answers at once (no wait, no minimum), shaped by `shape`.
    fn fetch_tx0(
        apis: &Apis,
        version: i16,
        partition: FetchPartition,
        shape: impl FnOnce(FetchRequest) -> FetchRequest,
    ) -> PartitionData {
        let request = shape(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(TopicName("tx".into()))
                        .with_partitions(vec![partition.with_partition(0)]),
                ]),
        );
        let ctx = RequestContext::for_test(ApiKey::Fetch, version);
        let FetchOutcome::Respond(mut response) = handle(apis, &ctx, request) else {
            panic!("min_bytes 0 answers at once");
        };
        assert!(response.files.is_empty(), "small reads are in memory");
        response.response.responses.remove(0).partitions.remove(0)
    }

    fn fetch(
        apis: &Apis,
        offset: i64,
        partition_max_bytes: i32,
        isolation_level: i8,
    ) -> PartitionData {
        let partition = FetchPartition::default()
            .with_fetch_offset(offset)
            .with_partition_max_bytes(partition_max_bytes);
        let data = fetch_tx0(apis, 12, partition, |r| {
            r.with_isolation_level(isolation_level)
        });
        assert_eq!(data.error_code, 0);
        data
    }

    /// (base offset, is control) of each batch returned.
    fn batches(data: &PartitionData) -> Vec<(i64, bool)> {
        let records = data.records.as_ref().unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            let h = RecordBatchHeader::parse(&records[pos..]).unwrap();
            out.push((h.base_offset(), h.is_control()));
            pos += h.total_size().unwrap();
        }
        out
    }

    fn aborted(data: &PartitionData) -> Option<Vec<(i64, i64)>> {
        data.aborted_transactions.as_ref().map(|txns| {
            txns.iter()
                .map(|t| (t.producer_id.0, t.first_offset))
                .collect()
        })
    }

    #[test]
    fn read_committed_lists_the_aborted_transactions_of_what_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = apis.partition("tx", 0).unwrap();
        let data = |n| BytesMut::from(&batch(n, 10, 1)[..]);
        let marker =
            |pid| BytesMut::from(&end_transaction_marker(pid, 0, false, 0, 1).unwrap()[..]);
        // 0-1 plain, 2-3 producer 7's, 4 its ABORT, 5-6 producer 8's, 7 its ABORT.
        for (records, origin) in [
            (data(2), AppendOrigin::Client),
            (data(2), AppendOrigin::Client),
            (marker(7), AppendOrigin::Coordinator),
            (data(2), AppendOrigin::Client),
            (marker(8), AppendOrigin::Coordinator),
        ] {
            partition.append_records_to_leader(records, origin).unwrap();
        }
        for (pid, first, last) in [(7, 2, 4), (8, 5, 7)] {
            partition
                .log()
                .append_aborted_txn(AbortedTxn {
                    producer_id: pid,
                    first_offset: first,
                    last_offset: last,
                    last_stable_offset: first,
                })
                .unwrap();
        }
        let everything = vec![(0, false), (2, false), (4, true), (5, false), (7, true)];

        let committed = fetch(&apis, 0, 1 << 20, 1);
        assert_eq!(
            batches(&committed),
            everything,
            "markers go to every consumer"
        );
        assert_eq!(aborted(&committed), Some(vec![(7, 2), (8, 5)]));
        assert_eq!(committed.last_stable_offset, partition.last_stable_offset());
        assert_eq!(committed.last_stable_offset, 8);

        // One batch each (KIP-74's minimum): the list ends where the returned data does.
        let first = fetch(&apis, 0, 1, 1);
        assert_eq!(batches(&first), vec![(0, false)]);
        assert_eq!(aborted(&first), Some(vec![]));
        let second = fetch(&apis, 2, 1, 1);
        assert_eq!(batches(&second), vec![(2, false)]);
        assert_eq!(aborted(&second), Some(vec![(7, 2)]));
        let after_first_abort = fetch(&apis, 5, 1 << 20, 1);
        assert_eq!(aborted(&after_first_abort), Some(vec![(8, 5)]));
        let at_end = fetch(&apis, 8, 1 << 20, 1);
        assert!(batches(&at_end).is_empty());
        assert_eq!(aborted(&at_end), Some(vec![]));

        let uncommitted = fetch(&apis, 0, 1 << 20, 0);
        assert_eq!(
            batches(&uncommitted),
            everything,
            "aborted data is returned"
        );
        assert_eq!(aborted(&uncommitted), None);
        assert_eq!(uncommitted.last_stable_offset, 8);
    }

    /// Makes broker 1 (the test broker) the leader of `tx-0` with `replicas` and `isr` at a new leader
    /// epoch, as the metadata image of a cluster would.
    fn lead_with(apis: &Apis, replicas: &[i32], isr: &[i32]) -> Arc<Partition> {
        apis.metadata.lead_for_test("tx", 0, 1, replicas, isr);
        apis.partition("tx", 0).unwrap()
    }

    /// A follower's fetch of `tx-0` from `offset`, its last batch at `last_fetched_epoch`.
    fn replica_fetch(
        apis: &Apis,
        replica: i32,
        offset: i64,
        last_fetched_epoch: i32,
    ) -> PartitionData {
        use kafka_protocol::messages::fetch_request::ReplicaState;
        let partition = FetchPartition::default()
            .with_fetch_offset(offset)
            .with_last_fetched_epoch(last_fetched_epoch)
            .with_partition_max_bytes(1 << 20);
        fetch_tx0(apis, 15, partition, |r| {
            r.with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(replica))
                    .with_replica_epoch(-1),
            )
        })
    }

    #[test]
    fn the_high_watermark_waits_for_the_in_sync_followers_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = lead_with(&apis, &[1, 2], &[1, 2]);
        partition
            .append_records_to_leader(BytesMut::from(&batch(3, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        assert_eq!(partition.high_watermark(), 0, "follower 2 has not fetched");
        // A consumer sees nothing yet; the follower reads past the high watermark.
        assert!(batches(&fetch(&apis, 0, 1 << 20, 0)).is_empty());
        let first = replica_fetch(&apis, 2, 0, -1);
        assert_eq!(first.error_code, 0);
        assert_eq!(batches(&first), vec![(0, false)]);
        assert_eq!(
            partition.high_watermark(),
            0,
            "a fetch at 0 acknowledges nothing"
        );
        let second = replica_fetch(&apis, 2, 3, partition.leader_epoch());
        assert_eq!(second.error_code, 0);
        assert_eq!(partition.high_watermark(), 3);
        assert_eq!(batches(&fetch(&apis, 0, 1 << 20, 0)), vec![(0, false)]);
        // A broker that holds no replica is refused.
        let stranger = replica_fetch(&apis, 7, 0, -1);
        assert_eq!(
            stranger.error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
    }

    #[test]
    fn a_diverging_follower_is_told_where_its_epoch_ends() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = lead_with(&apis, &[1, 2], &[1]);
        let first_epoch = partition.leader_epoch();
        partition
            .append_records_to_leader(BytesMut::from(&batch(2, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        let partition = lead_with(&apis, &[1, 2], &[1]);
        partition
            .append_records_to_leader(BytesMut::from(&batch(2, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        // The follower wrote offsets 2..5 in the first epoch under another leader: it must cut at 2.
        let diverged = replica_fetch(&apis, 2, 5, first_epoch);
        assert_eq!(diverged.error_code, 0);
        assert_eq!(diverged.diverging_epoch.epoch, first_epoch);
        assert_eq!(diverged.diverging_epoch.end_offset, 2);
        assert!(batches(&diverged).is_empty());
        // In agreement: no divergence, data returned.
        let agreed = replica_fetch(&apis, 2, 2, first_epoch);
        assert_eq!(agreed.diverging_epoch.epoch, -1);
        assert_eq!(batches(&agreed), vec![(2, false)]);
        // A follower ahead of the leader's log end in the current epoch cuts back to it ...
        let ahead = replica_fetch(&apis, 2, 9, partition.leader_epoch());
        assert_eq!(ahead.diverging_epoch.end_offset, 4);
        // ... and without an epoch to compare, it is out of range.
        let ahead = replica_fetch(&apis, 2, 9, -1);
        assert_eq!(ahead.error_code, ResponseError::OffsetOutOfRange.code());
    }

    #[test]
    fn acks_all_is_refused_below_min_insync_replicas_and_the_high_watermark_waits() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic(
            "tx",
            1,
            BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]),
        )
        .unwrap();
        let partition = lead_with(&apis, &[1, 2], &[1]);
        assert_eq!(
            partition.check_enough_replicas(),
            Err(ResponseError::NotEnoughReplicas)
        );
        // acks=1 appends; the high watermark stays put while the ISR is below the minimum.
        partition
            .append_records_to_leader(BytesMut::from(&batch(2, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        assert_eq!(partition.high_watermark(), 0);
        // Follower 2 catches up, but nothing grows the ISR here (no controller), so it stays {1}.
        replica_fetch(&apis, 2, 2, partition.leader_epoch());
        assert_eq!(partition.high_watermark(), 0, "strict min ISR");
        let _ = lead_with(&apis, &[1, 2], &[1, 2]);
        let partition = apis.partition("tx", 0).unwrap();
        assert!(partition.check_enough_replicas().is_ok());
    }

    /// ListOffsets LATEST of `tx-0` for a consumer: the error code and the offset.
    fn latest(apis: &Apis) -> (i16, i64) {
        use kafka_protocol::messages::ListOffsetsRequest;
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName("tx".into()))
                    .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
            ]);
        let ctx = RequestContext::for_test(ApiKey::ListOffsets, 7);
        let mut response = crate::api::list_offsets::handle(apis, &ctx, &request, 7);
        let p = response.topics.remove(0).partitions.remove(0);
        (p.error_code, p.offset)
    }

    #[test]
    fn a_new_leader_has_no_latest_offset_until_its_high_watermark_reaches_its_epoch_start() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = lead_with(&apis, &[1, 2], &[1, 2]);
        let written_in = partition.leader_epoch();
        partition
            .append_records_to_leader(BytesMut::from(&batch(3, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        assert_eq!(
            latest(&apis),
            (0, 0),
            "the epoch started at 0: nothing committed yet"
        );
        // A new leadership starts at offset 3, above the high watermark (0).
        let partition = lead_with(&apis, &[1, 2], &[1, 2]);
        assert_eq!(partition.epoch_start_offset(), Some(3));
        assert_eq!(latest(&apis).0, ResponseError::OffsetNotAvailable.code());
        // The follower holds the batch (written in the previous epoch): the high watermark reaches 3.
        replica_fetch(&apis, 2, 3, written_in);
        assert_eq!(latest(&apis), (0, 3));
    }

    fn register(apis: &Apis, id: i32, rack: &str) {
        apis.metadata
            .register_broker(crate::cluster::BrokerRegistration {
                id,
                endpoints: vec![crate::cluster::BrokerEndpoint {
                    listener: "PLAINTEXT".into(),
                    security_protocol: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                }],
                rack: Some(rack.into()),
                ..Default::default()
            });
    }

    /// A consumer's Fetch of `tx-0` at `offset` from `rack`.
    fn consumer_fetch(apis: &Apis, offset: i64, rack: &str, version: i16) -> PartitionData {
        let partition = FetchPartition::default()
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20);
        fetch_tx0(apis, version, partition, |r| {
            r.with_rack_id(StrBytes::from_string(rack.into()))
        })
    }

    #[test]
    fn a_rack_aware_leader_sends_a_consumer_to_an_in_sync_follower_in_its_rack() {
        let dir = tempfile::tempdir().unwrap();
        let mut apis = test_apis(dir.path());
        apis.config.rack_aware_replica_selector = true;
        register(&apis, 1, "r1");
        register(&apis, 2, "r2");
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = lead_with(&apis, &[1, 2], &[1, 2]);
        partition
            .append_records_to_leader(BytesMut::from(&batch(3, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        replica_fetch(&apis, 2, 3, partition.leader_epoch());
        let sent = consumer_fetch(&apis, 0, "r2", 11);
        assert_eq!(sent.preferred_read_replica, BrokerId(2));
        assert!(batches(&sent).is_empty());
        // Its own rack, no rack, or a follower that lacks the offset: the leader serves.
        assert_eq!(
            consumer_fetch(&apis, 0, "r1", 11).preferred_read_replica,
            BrokerId(-1)
        );
        assert_eq!(
            consumer_fetch(&apis, 0, "", 11).preferred_read_replica,
            BrokerId(-1)
        );
        assert_eq!(
            consumer_fetch(&apis, 5, "r2", 11).preferred_read_replica,
            BrokerId(-1)
        );
        // Without the selector nobody is redirected.
        apis.config.rack_aware_replica_selector = false;
        assert_eq!(
            consumer_fetch(&apis, 0, "r2", 11).preferred_read_replica,
            BrokerId(-1)
        );
    }

    #[test]
    fn a_follower_serves_consumers_up_to_its_high_watermark_from_fetch_v11() {
        use crate::cluster::{MetadataDelta, PartitionRegistration, TopicDelta};
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = apis.partition("tx", 0).unwrap();
        partition
            .append_records_to_leader(BytesMut::from(&batch(3, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        let before = apis.metadata.topic("tx").unwrap();
        let mut after = (*before).clone();
        after.partitions[0] = PartitionRegistration {
            replicas: vec![2, 1],
            isr: vec![2, 1],
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            ..Default::default()
        };
        apis.metadata.publish_delta(&MetadataDelta {
            topics: vec![TopicDelta::Changed {
                before,
                after: Arc::new(after),
            }],
            ..Default::default()
        });
        let read = consumer_fetch(&apis, 0, "", 11);
        assert_eq!(read.error_code, 0);
        assert_eq!(batches(&read), vec![(0, false)]);
        assert_eq!(read.high_watermark, 3);
        let old = consumer_fetch(&apis, 0, "", 10);
        assert_eq!(old.error_code, ResponseError::NotLeaderOrFollower.code());
    }

    /// A fetch of partition 0 of `tx` at `offset` for at most `max_bytes`, answered at once.
    fn fetch_reply(apis: &Apis, offset: i64, max_bytes: i32) -> FetchReply {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName("tx".into()))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let ctx = RequestContext::for_test(ApiKey::Fetch, 12);
        let FetchOutcome::Respond(reply) = handle(apis, &ctx, request) else {
            panic!("min_bytes 0 answers at once");
        };
        reply
    }

    #[test]
    fn a_large_read_is_left_in_the_segment_with_the_batches_a_copy_would_hold() {
        use crate::log::partition_log::{SEND_FROM_FILE_MAX_BATCHES, SEND_FROM_FILE_MIN_BYTES};
        let dir = tempfile::tempdir().unwrap();
        let mut apis = test_apis(dir.path());
        apis.config.fetch_sendfile = true;
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = apis.partition("tx", 0).unwrap();
        // 24 batches of 100 records of 100 bytes (about 11 KiB each).
        for _ in 0..24 {
            partition
                .append_records_to_leader(
                    BytesMut::from(&batch(100, 100, 1)[..]),
                    AppendOrigin::Client,
                )
                .unwrap();
        }
        for (offset, max_bytes) in [(0, 1 << 20), (0, 100_000), (550, 90_000)] {
            let reply = fetch_reply(&apis, offset, max_bytes);
            assert_eq!(reply.files.len(), 1, "offset {offset}, max {max_bytes}");
            let file = &reply.files[0];
            assert_eq!((file.topic, file.partition), (0, 0));
            let data = &reply.response.responses[0].partitions[0];
            assert_eq!(data.records.as_deref(), Some(&[][..]));
            let copied = partition
                .read(
                    offset,
                    max_bytes as usize,
                    true,
                    FetchIsolation::HighWatermark,
                )
                .unwrap()
                .records;
            let sent = file.slice.read_prefix(file.slice.len()).unwrap();
            assert_eq!(&sent[..], &copied[..], "offset {offset}, max {max_bytes}");
            assert!(sent.len() <= max_bytes as usize && sent.len() >= SEND_FROM_FILE_MIN_BYTES);
            let batches = batches(&data.clone().with_records(Some(copied)));
            let records: u64 = batches.len() as u64 * 100;
            assert_eq!(file.slice.records(), records);
        }
        // Under the minimum, or more batches than a header walk reads: copied as before.
        let small = fetch_reply(&apis, 0, 30_000);
        assert!(small.files.is_empty());
        assert!(
            !small.response.responses[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .is_empty()
        );
        for _ in 0..SEND_FROM_FILE_MAX_BATCHES {
            partition
                .append_records_to_leader(
                    BytesMut::from(&batch(1, 10, 1)[..]),
                    AppendOrigin::Client,
                )
                .unwrap();
        }
        let many = fetch_reply(&apis, 1_500, 1 << 20);
        assert!(
            many.files.is_empty(),
            "{} small batches",
            SEND_FROM_FILE_MAX_BATCHES + 5
        );
        // Without fetch.sendfile.enable every read is copied.
        apis.config.fetch_sendfile = false;
        assert!(fetch_reply(&apis, 0, 1 << 20).files.is_empty());
        let records = many.response.responses[0].partitions[0]
            .records
            .clone()
            .unwrap();
        assert!(records.len() >= SEND_FROM_FILE_MIN_BYTES);
    }

    #[tokio::test]
    async fn a_parked_read_committed_fetch_wakes_when_the_stable_offset_moves() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("tx", 1, BTreeMap::new()).unwrap();
        let partition = apis.partition("tx", 0).unwrap();
        let request = FetchRequest::default()
            .with_max_wait_ms(30_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_isolation_level(1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName("tx".into()))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let ctx = RequestContext::for_test(ApiKey::Fetch, 12);
        let FetchOutcome::Wait(parked) = handle(&apis, &ctx, request) else {
            panic!("nothing to read yet: the fetch parks");
        };
        // The LSO is the high watermark while no transaction is open: the marker of a transaction moves it.
        let marker = end_transaction_marker(7, 0, true, 0, 1).unwrap();
        partition
            .append_records_to_leader(BytesMut::from(&marker[..]), AppendOrigin::Coordinator)
            .unwrap();
        let mut response = tokio::time::timeout(std::time::Duration::from_secs(10), parked)
            .await
            .expect("woken well before max_wait_ms");
        let data = response.response.responses.remove(0).partitions.remove(0);
        assert_eq!(batches(&data), vec![(0, true)]);
        assert_eq!(aborted(&data), Some(vec![]));
        assert_eq!(data.last_stable_offset, 1);
    }
}
