//! ListOffsets: the earliest and latest offsets of a partition, the first offset at a timestamp, or the
//! record with the largest timestamp (KIP-734).

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Apis;
use super::error::log_error_code;
use crate::replica::FetchIsolation;

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// KIP-734 (v7+): the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405 (v8+): the first offset kept locally; without tiered storage, the log start offset.
const EARLIEST_LOCAL: i64 = -4;
/// KIP-1005 (v9+): the last offset in tiered storage; there is none, so no offset.
const LATEST_TIERED: i64 = -5;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let isolation = FetchIsolation::for_consumer(request.isolation_level);
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
                    let query = Query {
                        current_leader_epoch: p.current_leader_epoch,
                        timestamp: p.timestamp,
                        isolation,
                        version,
                    };
                    match lookup(apis, topic.name.0.as_str(), p.partition_index, query) {
                        // Versions before 4 have no leader epoch field; the codec refuses a value there.
                        Ok((Some((offset, timestamp)), epoch)) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Ok((None, _)) => response,
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

/// One partition's question.
struct Query {
    current_leader_epoch: i32,
    timestamp: i64,
    isolation: FetchIsolation,
    version: i16,
}

/// The (offset, timestamp) for a ListOffsets query (None when no record is at or after the timestamp),
/// with the leader epoch of the partition that answered.
fn lookup(
    apis: &Apis,
    topic: &str,
    partition: i32,
    query: Query,
) -> Result<(Option<(i64, i64)>, i32), ResponseError> {
    let meta = apis
        .metadata
        .topic(topic)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let log = apis
        .replicas
        .leader_partition_at(&meta, partition, query.current_leader_epoch)?;
    // KIP-207: a new leader does not know what its predecessor committed until its high watermark reaches
    // the start of its own epoch; "latest" (and a timestamp beyond what is visible) is not available yet.
    let not_available = query.isolation != FetchIsolation::LogEnd
        && log
            .epoch_start_offset()
            .is_some_and(|start| start > log.high_watermark());
    let found = match query.timestamp {
        LATEST if not_available => return Err(ResponseError::OffsetNotAvailable),
        // Consumers read up to the high watermark (the last stable offset under read_committed), so
        // "latest" is that, as in Kafka.
        LATEST => Some((log.latest_offset(query.isolation), -1)),
        ts if ts >= 0 && not_available => match log
            .offset_for_timestamp(ts, query.isolation)
            .map_err(|e| log_error_code(&e))?
        {
            Some(found) => Some(found),
            None => return Err(ResponseError::OffsetNotAvailable),
        },
        EARLIEST => Some((log.log_start_offset(), -1)),
        ts if ts >= 0 => log
            .offset_for_timestamp(ts, query.isolation)
            .map_err(|e| log_error_code(&e))?,
        MAX_TIMESTAMP if query.version >= 7 => log
            .offset_of_max_timestamp(query.isolation)
            .map_err(|e| log_error_code(&e))?,
        EARLIEST_LOCAL if query.version >= 8 => Some((log.log_start_offset(), -1)),
        LATEST_TIERED if query.version >= 9 => None,
        // A special timestamp the request's version does not know.
        _ => return Err(ResponseError::UnsupportedVersion),
    };
    Ok((found, log.leader_epoch()))
}
