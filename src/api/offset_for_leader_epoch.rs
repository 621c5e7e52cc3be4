//! OffsetForLeaderEpoch: where a leader epoch ended, from the partition's leader epoch cache. Consumers ask
//! it after a leader change to detect log truncation (KIP-320).

use crate::api::context::RequestContext;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Apis;

/// Kafka's "no epoch" and "no offset" answers.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let meta = apis.metadata.topic(topic.topic.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let found = meta
                        .as_ref()
                        .ok_or(kafka_protocol::ResponseError::UnknownTopicOrPartition)
                        .and_then(|meta| {
                            apis.replicas.leader_partition_at(
                                meta,
                                p.partition,
                                p.current_leader_epoch,
                            )
                        })
                        .map(|partition| partition.end_offset_for_epoch(p.leader_epoch));
                    match found {
                        Ok((epoch, offset)) => {
                            answer.with_leader_epoch(epoch).with_end_offset(offset)
                        }
                        Err(error) => answer
                            .with_error_code(error.code())
                            .with_leader_epoch(UNDEFINED_EPOCH)
                            .with_end_offset(UNDEFINED_EPOCH_OFFSET),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
