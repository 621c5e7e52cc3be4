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
    let isolation = isolation_for(request.replica_id.0, request.isolation_level);
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

/// Kafka's consumer replica id in ListOffsets and Fetch.
const CONSUMER_REPLICA_ID: i32 = -1;

/// What LATEST (and a timestamp) may see: a consumer reads up to the high watermark (the last stable
/// offset under read_committed); a replica (any other `replica_id`: a follower asking after
/// OFFSET_OUT_OF_RANGE, Kafka's `fetchOffsetAndTruncate`) is answered from the whole log, LATEST being the
/// leader's log end offset, as Kafka does (no isolation for a non-consumer).
fn isolation_for(replica_id: i32, isolation_level: i8) -> FetchIsolation {
    if replica_id == CONSUMER_REPLICA_ID {
        FetchIsolation::for_consumer(isolation_level)
    } else {
        FetchIsolation::LogEnd
    }
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
    let not_available = || {
        query.isolation != FetchIsolation::LogEnd
            && log
                .epoch_start_offset()
                .is_some_and(|start| start > log.high_watermark())
    };
    let found = match query.timestamp {
        LATEST if not_available() => return Err(ResponseError::OffsetNotAvailable),
        // Consumers read up to the high watermark (the last stable offset under read_committed), so
        // "latest" is that, as in Kafka; a replica's is the log end offset.
        LATEST => Some((log.latest_offset(query.isolation), -1)),
        EARLIEST => Some((log.log_start_offset(), -1)),
        ts if ts >= 0 => {
            let found = log
                .offset_for_timestamp(ts, query.isolation)
                .map_err(|e| log_error_code(&e))?;
            // Not found below what is visible may only mean not committed yet.
            if found.is_none() && not_available() {
                return Err(ResponseError::OffsetNotAvailable);
            }
            found
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::BytesMut;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::test_apis as apis;
    use crate::log::AppendOrigin;
    use crate::log::batch_builder::BatchBuilder;

    fn latest(apis: &Apis, replica_id: i32, isolation_level: i8) -> i64 {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(replica_id))
            .with_isolation_level(isolation_level)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(LATEST),
                    ]),
            ]);
        let ctx = RequestContext::for_test(kafka_protocol::messages::ApiKey::ListOffsets, 7);
        let r = handle(apis, &ctx, &request, 7);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        p.offset
    }

    #[test]
    fn a_replica_is_answered_the_log_end_a_consumer_what_it_may_read() {
        assert_eq!(isolation_for(-1, 0), FetchIsolation::HighWatermark);
        assert_eq!(isolation_for(-1, 1), FetchIsolation::TxnCommitted);
        assert_eq!(isolation_for(2, 1), FetchIsolation::LogEnd);

        let dir = tempfile::tempdir().unwrap();
        let apis = apis(dir.path());
        apis.create_topic("t", 1, BTreeMap::new()).unwrap();
        let partition = apis.partition("t", 0).unwrap();
        let mut txn = BatchBuilder::new().producer(3, 0, 0).transactional(true);
        txn.append(1, None, Some(b"open"), &[]).unwrap();
        partition
            .append_records_to_leader(txn.build().unwrap(), AppendOrigin::Client)
            .unwrap();
        partition
            .append_records_to_leader(
                BytesMut::from(&crate::log::record_batch::test_support::batch(2, 5, 1)[..]),
                AppendOrigin::Client,
            )
            .unwrap();
        assert_eq!(partition.log_end_offset(), 3);
        assert_eq!(
            latest(&apis, -1, 1),
            0,
            "read_committed stops at the open transaction"
        );
        assert_eq!(latest(&apis, 2, 1), 3, "a follower gets the log end offset");
        apis.logs.shutdown().unwrap();
    }
}
