//! DeleteRecords: moves partitions' log start offsets up on demand (Kafka's `deleteRecordsBefore`).
//!
//! The new start takes effect at once (fetches below it get OFFSET_OUT_OF_RANGE, ListOffsets earliest
//! returns it); the retention thread then removes the segments wholly below it and writes the log start
//! offset checkpoint, so the new start survives a restart. No file work happens on the request path.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::Apis;
use super::error::log_error_code;

pub fn handle(apis: &Apis, request: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut moved = false;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let meta = apis.metadata.topic(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let outcome = match &meta {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        // Kafka refuses to delete records of internal topics.
                        Some(m) if m.is_internal() => Err(ResponseError::InvalidTopicException),
                        Some(m) => apis.partition_of(m, p.partition_index).and_then(|log| {
                            // As in Kafka: only logs with the delete policy may lose records on demand.
                            if !log.config().cleanup_policy.delete {
                                return Err(ResponseError::PolicyViolation);
                            }
                            let before = log.log_start_offset();
                            let low = log
                                .delete_records_before(p.offset)
                                .map_err(|e| log_error_code(&e))?;
                            moved |= low > before;
                            Ok(low)
                        }),
                    };
                    match outcome {
                        Ok(low) => result.with_low_watermark(low),
                        Err(e) => result.with_error_code(e.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    if moved {
        apis.logs.wake_retention();
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
