//! ListOffsets: the earliest and latest offsets of a partition, the first offset at a timestamp, or the
//! record with the largest timestamp (KIP-734).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::error::log_error_code;
use super::fetch::check_leader_epoch;
use super::{Apis, LEADER_EPOCH};

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// KIP-734 (v7+): the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405 (v8+): the first offset kept locally; without tiered storage, the log start offset.
const EARLIEST_LOCAL: i64 = -4;
/// KIP-1005 (v9+): the last offset in tiered storage; there is none, so no offset.
const LATEST_TIERED: i64 = -5;

pub fn handle(apis: &Apis, request: &ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // Versions before 4 have no leader epoch field; the codec refuses a value there.
    let epoch = if version >= 4 { LEADER_EPOCH } else { -1 };
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    match lookup(
                        apis,
                        topic.name.0.as_str(),
                        p.partition_index,
                        p.current_leader_epoch,
                        p.timestamp,
                        version,
                    ) {
                        Ok(Some((offset, timestamp))) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(epoch),
                        Ok(None) => response,
                        Err(error) => response.with_error_code(error.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (offset, timestamp) for a ListOffsets query; None when no record is at or after the timestamp.
fn lookup(
    apis: &Apis,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
    timestamp: i64,
    version: i16,
) -> Result<Option<(i64, i64)>, ResponseError> {
    check_leader_epoch(leader_epoch)?;
    let log = apis.partition(topic, partition)?;
    match timestamp {
        // Consumers read up to the high watermark, so "latest" is the high watermark, as in Kafka.
        LATEST => Ok(Some((log.high_watermark(), -1))),
        EARLIEST => Ok(Some((log.log_start_offset(), -1))),
        ts if ts >= 0 => log
            .offset_for_timestamp(ts)
            .map(|found| found.filter(|(offset, _)| *offset < log.high_watermark()))
            .map_err(|e| log_error_code(&e)),
        MAX_TIMESTAMP if version >= 7 => log
            .offset_of_max_timestamp()
            .map_err(|e| log_error_code(&e)),
        EARLIEST_LOCAL if version >= 8 => Ok(Some((log.log_start_offset(), -1))),
        LATEST_TIERED if version >= 9 => Ok(None),
        // A special timestamp the request's version does not know.
        _ => Err(ResponseError::UnsupportedVersion),
    }
}
