//! DescribeProducers (KIP-664): the producers a partition's leader knows, with their epoch, last sequence
//! and open transaction, as `kafka-transactions.sh describe-producers` prints them. An open transaction's
//! start offset and coordinator epoch are what an operator needs to abort a hanging one.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use crate::api::context::RequestContext;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    match apis.partition(topic.name.0.as_str(), index) {
                        Ok(partition) => answer.with_active_producers(
                            partition
                                .log()
                                .active_producers()
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.producer_epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(p.coordinator_epoch)
                                        .with_current_txn_start_offset(p.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                        Err(error) => error_answer(answer, error),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn error_answer(answer: PartitionResponse, error: ResponseError) -> PartitionResponse {
    answer
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(match error {
            ResponseError::UnknownTopicOrPartition => "This server does not host this partition",
            ResponseError::NotLeaderOrFollower => "This server is not the leader of this partition",
            _ => "The partition cannot be described",
        })))
}
