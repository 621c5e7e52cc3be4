//! Produce: validate each partition's record batches and append them as the producer sent them (or as the
//! topic's `compression.type` re-encodes them). Records the log refuses one by one come back as Kafka's
//! `record_errors`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::error::log_error_code;
use super::{Apis, LEADER_EPOCH};
use crate::log::PartitionLog;

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

/// An appended partition whose high watermark must reach `required` before the answer.
struct Pending {
    topic: usize,
    partition: usize,
    log: Arc<PartitionLog>,
    required: i64,
}

pub fn handle(apis: &Apis, request: ProduceRequest) -> ProduceOutcome {
    let acks = request.acks;
    if !matches!(acks, -1..=1) {
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
                            .map(|p| {
                                error_response(p.index, ResponseError::InvalidRequiredAcks, None)
                            })
                            .collect(),
                    )
            })
            .collect();
        return ProduceOutcome::Respond(ProduceResponse::default().with_responses(responses));
    }

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
            let log = resolved
                .as_ref()
                .map_err(|e| *e)
                .and_then(|meta| apis.partition_of(meta, data.index));
            let response = match log {
                Err(error) => error_response(data.index, error, None),
                Ok(log) => {
                    let records = data.records.unwrap_or_default();
                    match log.append(BytesMut::from(&records[..]), LEADER_EPOCH) {
                        Ok(info) => {
                            apis.metrics
                                .produced(log.topic_partition().topic.as_str(), &records);
                            // acks=-1 waits for the high watermark; so does acks=1 on a durable log,
                            // where the leader's write only counts once fsynced. Elsewhere the high
                            // watermark is already past the batch and nothing waits.
                            if acks != 0 && log.high_watermark() <= info.last_offset {
                                pending.push(Pending {
                                    topic: topic_index,
                                    partition: partition_index,
                                    log: log.clone(),
                                    required: info.last_offset + 1,
                                });
                            }
                            PartitionProduceResponse::default()
                                .with_index(data.index)
                                .with_base_offset(info.base_offset)
                                .with_log_append_time_ms(info.log_append_time)
                                .with_log_start_offset(info.log_start_offset)
                        }
                        Err(error) => {
                            tracing::debug!(partition = %log.topic_partition(), %error, "produce rejected");
                            // Kafka's RecordValidationException: the records at fault, by index in their
                            // batch (Produce v8+; older versions encode the error code alone).
                            error_response(
                                data.index,
                                log_error_code(&error),
                                Some(error.to_string()),
                            )
                            .with_record_errors(
                                error
                                    .record_errors()
                                    .iter()
                                    .map(|e| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(e.batch_index)
                                            .with_batch_index_error_message(Some(
                                                StrBytes::from_string(e.message.clone()),
                                            ))
                                    })
                                    .collect(),
                            )
                        }
                    }
                }
            };
            if response.error_code != 0 && first_failure.is_none() {
                first_failure = Some(format!(
                    "partition {}-{}: error {}",
                    topic.name.0.as_str(),
                    data.index,
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

    if acks == 0 {
        return ProduceOutcome::NoResponse {
            failed: first_failure,
        };
    }
    let response = ProduceResponse::default().with_responses(responses);
    if pending.is_empty() {
        return ProduceOutcome::Respond(response);
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    ProduceOutcome::Wait(Box::pin(wait_for_high_watermark(
        response, pending, timeout,
    )))
}

/// Answers once every appended batch is below the high watermark, or REQUEST_TIMED_OUT for those that did
/// not get there within the request's timeout.
async fn wait_for_high_watermark(
    mut response: ProduceResponse,
    pending: Vec<Pending>,
    timeout: Duration,
) -> ProduceResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    for p in pending {
        let mut watermark = p.log.subscribe_high_watermark();
        let log = &p.log;
        let settled = watermark.wait_for(|hw| *hw >= p.required || log.is_closed());
        let reached = matches!(tokio::time::timeout_at(deadline, settled).await, Ok(Ok(_)));
        let error = if log.is_failed() {
            // The data may never reach the disk: never acknowledge it.
            Some(ResponseError::KafkaStorageError)
        } else if log.high_watermark() >= p.required {
            None
        } else if log.is_closed() {
            // Deleted while we waited, as when a partition moves away from a Kafka leader.
            Some(ResponseError::NotLeaderOrFollower)
        } else if !reached {
            Some(ResponseError::RequestTimedOut)
        } else {
            None
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
