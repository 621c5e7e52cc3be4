//! WriteTxnMarkers v1 (key 27): COMMIT or ABORT markers written to the partitions this broker leads.
//! brook's own transaction coordinator writes its markers in process; this request comes from an operator's
//! `kafka-transactions.sh abort` (KIP-664), which closes a hanging transaction (one whose coordinator no
//! longer knows it) with the producer epoch and coordinator epoch that DescribeProducers showed.
//!
//! Each partition is answered on its own, as Kafka does: UNKNOWN_TOPIC_OR_PARTITION when this broker has no
//! such partition, NOT_LEADER_OR_FOLLOWER when it does not lead it, and the producer state's verdict on the
//! marker (INVALID_PRODUCER_EPOCH for an older epoch, TRANSACTION_COORDINATOR_FENCED for an older
//! coordinator epoch). A marker counts once the high watermark passes it. A `__consumer_offsets` partition
//! goes through the group coordinator, whose shard replays the marker and commits or drops the offsets the
//! transaction staged there.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::Apis;
use super::context::RequestContext;
use super::error::log_error_code;
use super::groups::Outcome;
use crate::cluster::OFFSETS_TOPIC;
use crate::log::AppendOrigin;
use crate::log::batch_builder::end_transaction_marker;
use crate::replica::HighWatermarkWaitError;

/// How long a marker may wait for its high watermark: Kafka's `request.timeout.ms` default, which it uses
/// for these appends (the request has no timeout of its own).
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The most partitions one request may name; a frame cannot hold more than a few million anyway, and each
/// partition costs a future here.
const MAX_PARTITIONS: usize = 100_000;

/// Writes every marker of the request now and answers once each partition's is committed (or failed,
/// or timed out). A request naming more than [`MAX_PARTITIONS`] partitions writes nothing: every partition
/// is answered INVALID_REQUEST.
pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    req: WriteTxnMarkersRequest,
) -> Outcome<WriteTxnMarkersResponse> {
    let total: usize = req
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .map(|t| t.partition_indexes.len())
        .sum();
    let markers = req.markers.into_iter().map(|marker| {
        let topics = marker.topics.into_iter().map(|topic| {
            let partitions = topic.partition_indexes.into_iter().map(|index| {
                let written = if total > MAX_PARTITIONS {
                    None
                } else {
                    Some(write_marker(
                        apis,
                        topic.name.as_str(),
                        index,
                        marker.producer_id.0,
                        marker.producer_epoch,
                        marker.transaction_result,
                        marker.coordinator_epoch,
                    ))
                };
                async move {
                    let error = match written {
                        None => Some(ResponseError::InvalidRequest),
                        Some(written) => {
                            match tokio::time::timeout(MARKER_TIMEOUT, written).await {
                                Ok(result) => result.err(),
                                Err(_) => Some(ResponseError::RequestTimedOut),
                            }
                        }
                    };
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                }
            });
            let partitions = futures_util::future::join_all(partitions.collect::<Vec<_>>());
            async move {
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions.await)
            }
        });
        let topics = futures_util::future::join_all(topics.collect::<Vec<_>>());
        async move {
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics.await)
        }
    });
    let markers = futures_util::future::join_all(markers.collect::<Vec<_>>());
    Outcome::Wait(Box::pin(async move {
        WriteTxnMarkersResponse::default().with_markers(markers.await)
    }))
}

/// Appends one marker now (under the partition's append lock, so markers of one request land in request
/// order) and returns what resolves once it is committed.
fn write_marker(
    apis: &Apis,
    topic: &str,
    index: i32,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ResponseError>> + Send>> {
    let partition = match apis.partition(topic, index) {
        Ok(partition) => partition,
        Err(e) => return Box::pin(std::future::ready(Err(e))),
    };
    if topic == OFFSETS_TOPIC {
        let groups = apis.groups.clone();
        return Box::pin(async move {
            groups
                .complete_transaction(
                    index,
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                )
                .await
                .map_err(|e| match e.response_error() {
                    // Kafka's translation: the group shard not being ready means "not the leader yet",
                    // the answer a marker writer retries.
                    ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress => {
                        ResponseError::NotLeaderOrFollower
                    }
                    other => other,
                })
        });
    }
    let marker = match end_transaction_marker(
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch,
        apis.txn.clock().now_ms(),
    ) {
        Ok(marker) => marker,
        Err(_) => return Box::pin(std::future::ready(Err(ResponseError::UnknownServerError))),
    };
    match partition.append_records_to_leader(marker, AppendOrigin::Coordinator) {
        Ok(info) => {
            let committed = partition.wait_for_high_watermark(info.last_offset + 1);
            Box::pin(async move {
                committed.await.map_err(|e| match e {
                    HighWatermarkWaitError::Failed => ResponseError::KafkaStorageError,
                    HighWatermarkWaitError::Closed | HighWatermarkWaitError::NotLeader => {
                        ResponseError::NotLeaderOrFollower
                    }
                })
            })
        }
        Err(e) => {
            tracing::debug!(topic, partition = index, error = %e, "transaction marker refused");
            Box::pin(std::future::ready(Err(log_error_code(&e))))
        }
    }
}
