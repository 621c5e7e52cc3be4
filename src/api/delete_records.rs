//! DeleteRecords: moves partitions' log start offsets up on demand (Kafka's `deleteRecordsBefore`).
//!
//! The new start takes effect at once (fetches below it get OFFSET_OUT_OF_RANGE, ListOffsets earliest
//! returns it); the retention thread then removes the segments wholly below it and writes the log start
//! offset checkpoint, so the new start survives a restart. No file work happens on the request path.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::Apis;
use super::error::log_error_code;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &DeleteRecordsRequest,
) -> DeleteRecordsResponse {
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
                            if !log.log().config().cleanup_policy.delete {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::log::record_batch::test_support::batch;

    use crate::api::test_apis as apis;

    fn request(topic: &str, offset: i64) -> DeleteRecordsRequest {
        DeleteRecordsRequest::default().with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ]),
        ])
    }

    fn answer(apis: &Apis, topic: &str, offset: i64) -> (i16, i64) {
        let r = handle(
            apis,
            &RequestContext::for_test(kafka_protocol::messages::ApiKey::DeleteRecords, 2),
            &request(topic, offset),
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    }

    #[test]
    fn delete_records_answers_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let apis = apis(dir.path());
        apis.create_topic("plain", 1, BTreeMap::new()).unwrap();
        let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        apis.create_topic("compacted", 1, compact).unwrap();
        apis.create_topic(crate::group::OFFSETS_TOPIC, 1, BTreeMap::new())
            .unwrap();
        let log = apis.partition("plain", 0).unwrap();
        log.append_records_to_leader(
            bytes::BytesMut::from(&batch(5, 10, 1)[..]),
            crate::log::AppendOrigin::Client,
        )
        .unwrap();

        assert_eq!(answer(&apis, "plain", 3), (0, 3));
        assert_eq!(log.log_start_offset(), 3);
        assert_eq!(
            answer(&apis, "plain", 6).0,
            ResponseError::OffsetOutOfRange.code()
        );
        assert_eq!(
            answer(&apis, "plain", -1),
            (0, 5),
            "-1 is the high watermark"
        );
        assert_eq!(
            answer(&apis, "missing", 0).0,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            answer(&apis, crate::group::OFFSETS_TOPIC, 0).0,
            ResponseError::InvalidTopicException.code()
        );
        assert_eq!(
            answer(&apis, "compacted", 0).0,
            ResponseError::PolicyViolation.code()
        );
        apis.logs.shutdown().unwrap();
    }
}
