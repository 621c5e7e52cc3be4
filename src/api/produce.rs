//! Produce: validate each partition's record batches and append them as the producer sent them (or as the
//! topic's `compression.type` re-encodes them). Records the log refuses one by one come back as Kafka's
//! `record_errors`.

use crate::api::context::RequestContext;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::error::log_error_code;
use super::{Apis, metadata_cache};
use crate::cluster::{MetadataStore, TopicImage};
use crate::log::{AppendOrigin, LogError, RecordBatchHeader, TopicPartition, VerificationGuard};
use crate::replica::{HighWatermarkWaitError, Partition};

/// How a produce request is answered.
pub enum ProduceOutcome {
    /// acks=0: no response; `failed` says whether any partition failed (Kafka then closes the connection,
    /// the only way an acks=0 producer learns of it).
    NoResponse {
        failed: Option<String>,
    },
    Respond(ProduceResponse),
    /// The high watermark has not yet passed every appended batch (acks=-1, or a durable log).
    Wait(Pin<Box<dyn Future<Output = ProduceResponse> + Send>>),
}

/// An appended partition whose high watermark (acks=-1) or own fsynced offset (acks=1 on a durable log)
/// must reach `required` before the answer.
struct Pending {
    topic: usize,
    partition: usize,
    log: Arc<Partition>,
    required: i64,
}

pub fn handle(apis: &Arc<Apis>, ctx: &RequestContext, request: ProduceRequest) -> ProduceOutcome {
    let acks = request.acks;
    if !matches!(acks, -1..=1) {
        return ProduceOutcome::Respond(refuse_all(&request, ResponseError::InvalidRequiredAcks));
    }
    // Kafka refuses the whole request when it carries transactional batches without a transactional id
    // (the id is what a transactional write is authorised against).
    if request.transactional_id.is_none() && has_transactional_batch(&request) {
        return ProduceOutcome::Respond(refuse_all(
            &request,
            ResponseError::TransactionalIdAuthorizationFailed,
        ));
    }
    let hints = (ctx.api_version >= 10).then(|| (apis.metadata.clone(), ctx.listener.clone()));
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let version = ctx.api_version;

    // KIP-890 with the transaction coordinator on another broker: ask it first (asynchronously), then
    // append what it verified, as the local check under the append lock would.
    if let Some(id) = request.transactional_id.as_ref().map(|id| id.0.to_string())
        && let Some(coordinator) = apis.txn.remote_coordinator(&id)
    {
        let wanted = remote_verifications(apis, &request);
        if !wanted.is_empty() {
            if acks == 0 {
                // Transactional producers use acks=all; one that does not cannot wait for a verification.
                return ProduceOutcome::NoResponse {
                    failed: Some("a transactional produce with acks=0 cannot be verified".into()),
                };
            }
            let apis = apis.clone();
            return ProduceOutcome::Wait(Box::pin(async move {
                let verify_timeout = timeout.clamp(MIN_VERIFY_TIMEOUT, MAX_VERIFY_TIMEOUT);
                let verdicts =
                    verify_remotely(&apis, coordinator, &id, wanted, verify_timeout).await;
                let txn = Txn {
                    transactional_id: &id,
                    version,
                };
                let appended = append_all(&apis, request, Some(txn), &verdicts);
                let response = ProduceResponse::default().with_responses(appended.responses);
                let response = match appended.pending.is_empty() {
                    true => response,
                    false => wait_for_acks(response, appended.pending, acks, timeout).await,
                };
                with_leader_hints(response, hints)
            }));
        }
    }

    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string());
    let txn = transactional_id.as_deref().map(|id| Txn {
        transactional_id: id,
        version,
    });
    let appended = append_all(apis, request, txn, &Verdicts::new());
    if acks == 0 {
        return ProduceOutcome::NoResponse {
            failed: appended.first_failure,
        };
    }
    let response = ProduceResponse::default().with_responses(appended.responses);
    if appended.pending.is_empty() {
        return ProduceOutcome::Respond(with_leader_hints(response, hints));
    }
    let pending = appended.pending;
    ProduceOutcome::Wait(Box::pin(async move {
        let response = wait_for_acks(response, pending, acks, timeout).await;
        with_leader_hints(response, hints)
    }))
}

/// The least and most time a partition leader gives a remote transaction coordinator to verify a
/// produce (within the produce's own timeout otherwise).
const MIN_VERIFY_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// The remote coordinator's answer per partition, by (topic index, partition index) in the request: the
/// guard to check at append, or the refusal.
type Verdicts = HashMap<(usize, usize), Result<VerificationGuard, ResponseError>>;

/// A partition whose transactional batch opens a transaction here, so needs the coordinator's word.
struct Wanted {
    at: (usize, usize),
    log: Arc<Partition>,
    producer_id: i64,
    producer_epoch: i16,
}

/// The partitions of `request` led here whose first batch is transactional data from a producer with no
/// transaction open on the partition. Anything else (unknown topics, bad batches) is left to the append.
fn remote_verifications(apis: &Apis, request: &ProduceRequest) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for (ti, topic) in request.topic_data.iter().enumerate() {
        let Ok(meta) = apis.resolve_topic(topic.name.0.as_str(), topic.topic_id) else {
            continue;
        };
        for (pi, data) in topic.partition_data.iter().enumerate() {
            let Some(Ok(h)) = data.records.as_deref().map(RecordBatchHeader::parse) else {
                continue;
            };
            if !h.is_transactional() || h.is_control() {
                continue;
            }
            if let Ok(log) = produce_target(apis, &meta, data.index)
                && !log.log().has_ongoing_txn(h.producer_id())
            {
                wanted.push(Wanted {
                    at: (ti, pi),
                    log,
                    producer_id: h.producer_id(),
                    producer_epoch: h.producer_epoch(),
                });
            }
        }
    }
    wanted
}

/// Asks `coordinator` about every wanted partition (one request per producer id and epoch, normally one),
/// each partition's guard taken before the question leaves.
async fn verify_remotely(
    apis: &Apis,
    coordinator: i32,
    transactional_id: &str,
    wanted: Vec<Wanted>,
    timeout: Duration,
) -> Verdicts {
    let mut groups: BTreeMap<(i64, i16), Vec<Wanted>> = BTreeMap::new();
    for w in wanted {
        groups
            .entry((w.producer_id, w.producer_epoch))
            .or_default()
            .push(w);
    }
    let mut verdicts = Verdicts::new();
    for ((producer_id, producer_epoch), group) in groups {
        let guards: Vec<VerificationGuard> = group
            .iter()
            .map(|w| w.log.log().start_verification(producer_id))
            .collect();
        let partitions: Vec<TopicPartition> = group
            .iter()
            .map(|w| w.log.topic_partition().clone())
            .collect();
        let answers = apis
            .txn
            .verify_remotely(
                coordinator,
                transactional_id,
                producer_id,
                producer_epoch,
                &partitions,
                timeout,
            )
            .await;
        for ((w, guard), answer) in group.iter().zip(guards).zip(answers) {
            verdicts.insert(w.at, answer.map(|()| guard));
        }
    }
    verdicts
}

/// Every partition's append and answer, in request order.
struct Appended {
    responses: Vec<TopicProduceResponse>,
    pending: Vec<Pending>,
    first_failure: Option<String>,
}

/// Appends each partition of `request` as the leader (`verdicts`: what a remote coordinator verified).
fn append_all(
    apis: &Apis,
    request: ProduceRequest,
    txn: Option<Txn<'_>>,
    verdicts: &Verdicts,
) -> Appended {
    let acks = request.acks;
    let mut pending = Vec::new();
    let mut first_failure = None;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for (topic_index, topic) in request.topic_data.into_iter().enumerate() {
        let resolved = apis
            .resolve_topic(topic.name.0.as_str(), topic.topic_id)
            .and_then(|meta| {
                // The group coordinator alone writes its internal topic, as in Kafka.
                if meta.is_internal() {
                    Err(ResponseError::InvalidTopicException)
                } else {
                    Ok(meta)
                }
            });
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (partition_index, data) in topic.partition_data.into_iter().enumerate() {
            let verdict = verdicts.get(&(topic_index, partition_index)).copied();
            let (response, waiting) = append_partition(apis, &resolved, data, acks, txn, verdict);
            if let Some((log, required)) = waiting {
                pending.push(Pending {
                    topic: topic_index,
                    partition: partition_index,
                    log,
                    required,
                });
            }
            if response.error_code != 0 && first_failure.is_none() {
                first_failure = Some(format!(
                    "partition {}-{}: error {}",
                    topic.name.0.as_str(),
                    response.index,
                    response.error_code
                ));
            }
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    Appended {
        responses,
        pending,
        first_failure,
    }
}

/// KIP-951 (Produce v10+): every partition answered NOT_LEADER_OR_FOLLOWER names its current leader and
/// epoch, and the leader's endpoint on the request's listener goes into `node_endpoints`, so the producer
/// moves there without waiting for a metadata refresh (Kafka's `getCurrentLeader`). `hints` is the image's
/// source and the listener, None for older versions.
fn with_leader_hints(
    mut response: ProduceResponse,
    hints: Option<(Arc<MetadataStore>, Arc<str>)>,
) -> ProduceResponse {
    let Some((metadata, listener)) = hints else {
        return response;
    };
    // The hot path: nothing to hint unless a partition answers NOT_LEADER_OR_FOLLOWER.
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    if !response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .any(|p| p.error_code == not_leader)
    {
        return response;
    }
    let image = metadata.image();
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    for topic in &mut response.responses {
        let name = match topic.name.0.as_str() {
            "" => image.topic_by_id(topic.topic_id).map(|t| t.name.clone()),
            name => Some(name.to_string()),
        };
        for partition in &mut topic.partition_responses {
            if partition.error_code != ResponseError::NotLeaderOrFollower.code() {
                continue;
            }
            let hint = metadata_cache::current_leader(
                &image,
                name.as_deref().unwrap_or_default(),
                partition.index,
                &listener,
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

/// True when any batch of any partition is transactional. Only headers are read; a malformed buffer is
/// left for the log's validation to refuse.
fn has_transactional_batch(request: &ProduceRequest) -> bool {
    request.topic_data.iter().any(|topic| {
        topic.partition_data.iter().any(|p| {
            let Some(records) = p.records.as_deref() else {
                return false;
            };
            let mut pos = 0;
            while let Ok(h) = RecordBatchHeader::parse(&records[pos..]) {
                if h.is_transactional() {
                    return true;
                }
                match h.total_size() {
                    Some(size) if pos + size < records.len() => pos += size,
                    _ => break,
                }
            }
            false
        })
    })
}

/// The same error for every partition of the request.
fn refuse_all(request: &ProduceRequest, error: ResponseError) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(
                    topic
                        .partition_data
                        .iter()
                        .map(|p| error_response(p.index, error, None))
                        .collect(),
                )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// The request's transactional id, for verifying transactional batches with their coordinator.
#[derive(Clone, Copy)]
struct Txn<'a> {
    transactional_id: &'a str,
    version: i16,
}

/// What a produce answers when the transaction coordinator did not verify a transactional batch
/// (KIP-890 part 1, Kafka's ReplicaManager): a partition outside the transaction is INVALID_TXN_STATE
/// before v11 and TRANSACTION_ABORTABLE from it; a fenced producer INVALID_PRODUCER_EPOCH; a coordinator
/// that cannot answer now NOT_ENOUGH_REPLICAS, which older clients retry.
fn verification_error(refusal: ResponseError, version: i16) -> ResponseError {
    match refusal {
        ResponseError::TransactionAbortable if version < 11 => ResponseError::InvalidTxnState,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::ConcurrentTransactions
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::NotCoordinator
        | ResponseError::NetworkException => ResponseError::NotEnoughReplicas,
        other => other,
    }
}

/// The partition a produce writes to: one this broker leads while the quorum has it unfenced. A fenced
/// broker leads nothing, whatever its (possibly replayed, stale) metadata says: the client is sent to ask
/// for metadata instead of having its write wait out its timeout, and no transaction is verified for it.
fn produce_target(
    apis: &Apis,
    topic: &TopicImage,
    index: i32,
) -> Result<Arc<Partition>, (ResponseError, Option<String>)> {
    let log = apis.partition_of(topic, index).map_err(|e| (e, None))?;
    if apis.is_fenced() {
        let message = format!(
            "broker {} is fenced by the metadata quorum: it leads nothing until unfenced",
            apis.node_id
        );
        return Err((ResponseError::NotLeaderOrFollower, Some(message)));
    }
    Ok(log)
}

/// Appends one partition's batches as the leader. Returns its answer, and the partition and offset its
/// high watermark must reach first when the answer has to wait.
fn append_partition(
    apis: &Apis,
    topic: &Result<Arc<TopicImage>, ResponseError>,
    data: PartitionProduceData,
    acks: i16,
    txn: Option<Txn<'_>>,
    verdict: Option<Result<VerificationGuard, ResponseError>>,
) -> (PartitionProduceResponse, Option<(Arc<Partition>, i64)>) {
    let log = match topic
        .as_ref()
        .map_err(|e| (*e, None))
        .and_then(|meta| produce_target(apis, meta, data.index))
    {
        Ok(log) => log,
        Err((error, message)) => return (error_response(data.index, error, message), None),
    };
    // acks=all needs min.insync.replicas in the ISR before anything is written (Kafka's
    // NOT_ENOUGH_REPLICAS); acks=1 and 0 never wait for followers.
    if acks == -1
        && let Err(error) = log.check_enough_replicas()
    {
        return (
            error_response(
                data.index,
                error,
                Some(format!(
                    "The size of the current ISR of {} is below min.insync.replicas",
                    log.topic_partition()
                )),
            ),
            None,
        );
    }
    let records = data.records.unwrap_or_default();
    let refusal = Cell::new(None);
    let appended = match txn {
        None => log.append_records_to_leader(BytesMut::from(&records[..]), AppendOrigin::Client),
        Some(txn) => {
            let verify = |producer_id, producer_epoch| {
                let answer = match verdict {
                    // Verified by the coordinator on another broker: holds unless a marker for this
                    // producer was written here since the question left (its transaction ended).
                    Some(Ok(guard)) if guard.producer_id == producer_id => {
                        if log.log().verification_holds(guard) {
                            Ok(())
                        } else {
                            Err(ResponseError::InvalidTxnState)
                        }
                    }
                    Some(Err(refused)) => Err(refused),
                    // Not asked remotely (a transaction looked open here when the request arrived): a
                    // remote coordinator cannot be asked under the append lock, so the producer retries.
                    _ if apis.txn.remote_coordinator(txn.transactional_id).is_some() => {
                        Err(ResponseError::NotCoordinator)
                    }
                    _ => apis.txn.verify_transaction(
                        txn.transactional_id,
                        producer_id,
                        producer_epoch,
                        log.topic_partition(),
                    ),
                };
                refusal.set(answer.err());
                answer.is_ok()
            };
            log.append_records_verified(BytesMut::from(&records[..]), &verify)
        }
    };
    match appended {
        Err(LogError::TransactionNotVerified(why)) => {
            let refused = refusal.get().unwrap_or(ResponseError::InvalidTxnState);
            let version = txn.map_or(0, |t| t.version);
            tracing::debug!(partition = %log.topic_partition(), %why, ?refused, "transactional produce not verified");
            (
                error_response(data.index, verification_error(refused, version), Some(why)),
                None,
            )
        }
        Ok(info) => {
            if !info.duplicate {
                apis.metrics
                    .produced(log.topic_partition().topic.as_str(), &records);
            }
            // acks=-1 waits for the high watermark (every in-sync replica has the batch); acks=1 answers
            // after the leader's own write, which on a durable log counts once fsynced.
            let required = info.last_offset + 1;
            let waiting = match acks {
                -1 => log.high_watermark() < required,
                1 => log.local_offset() < required,
                _ => false,
            }
            .then(|| (log.clone(), required));
            let response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(info.base_offset)
                .with_log_append_time_ms(info.log_append_time)
                .with_log_start_offset(info.log_start_offset);
            (response, waiting)
        }
        Err(error) => {
            tracing::debug!(partition = %log.topic_partition(), %error, "produce rejected");
            (rejected(data.index, &error), None)
        }
    }
}

/// A refused append's answer. Kafka's RecordValidationException names the records at fault, by index in
/// their batch (Produce v8+; older versions encode the error code alone).
fn rejected(index: i32, error: &LogError) -> PartitionProduceResponse {
    let record_errors = error
        .record_errors()
        .iter()
        .map(|e| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(e.batch_index)
                .with_batch_index_error_message(Some(StrBytes::from_string(e.message.clone())))
        })
        .collect();
    error_response(index, log_error_code(error), Some(error.to_string()))
        .with_record_errors(record_errors)
}

/// Answers once every appended batch is acknowledged as `acks` asks (acks=-1: below the high watermark;
/// acks=1: held by this replica), or REQUEST_TIMED_OUT for those that did not get there within the
/// request's timeout.
async fn wait_for_acks(
    mut response: ProduceResponse,
    pending: Vec<Pending>,
    acks: i16,
    timeout: Duration,
) -> ProduceResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    for p in pending {
        let waited = if acks == -1 {
            tokio::time::timeout_at(deadline, p.log.wait_for_high_watermark(p.required)).await
        } else {
            tokio::time::timeout_at(deadline, p.log.wait_for_local_offset(p.required)).await
        };
        let error = match waited {
            // The ISR may have shrunk below min.insync.replicas while the write replicated.
            Ok(Ok(())) if acks == -1 => p.log.check_enough_replicas_after_append().err(),
            Ok(Ok(())) => None,
            // The data may never reach the disk: never acknowledge it.
            Ok(Err(HighWatermarkWaitError::Failed)) => Some(ResponseError::KafkaStorageError),
            // Deleted while we waited, as when a partition moves away from a Kafka leader.
            Ok(Err(HighWatermarkWaitError::Closed | HighWatermarkWaitError::NotLeader)) => {
                Some(ResponseError::NotLeaderOrFollower)
            }
            Err(_) if p.log.is_failed() => Some(ResponseError::KafkaStorageError),
            Err(_) => Some(ResponseError::RequestTimedOut),
        };
        if let Some(error) = error {
            let partition = &mut response.responses[p.topic].partition_responses[p.partition];
            partition.error_code = error.code();
            partition.base_offset = -1;
        }
    }
    response
}

fn error_response(
    index: i32,
    error: ResponseError,
    message: Option<String>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}
