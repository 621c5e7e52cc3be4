//! ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0 and OffsetForLeaderEpoch v0-1 (Kafka 3.9's schemas).

use bytes::BufMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    GroupId, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::wire::{MIN_ARRAY, MIN_STRING, Reader, Writer};
use super::{LegacyError, LegacyRequest};
use crate::api::Apis;

/// ListOffsets' "latest": for a consumer, Kafka answers the high watermark whatever `max_num_offsets` says.
const LATEST: i64 = -1;

/// ListOffsets v0: replica id, then per topic per partition (index, timestamp, max_num_offsets).
pub(super) fn list_offsets_v0(r: &mut Reader) -> Result<LegacyRequest, LegacyError> {
    let replica_id = r.i32("replica_id")?;
    let mut max_num_offsets = Vec::new();
    let topics = (0..r.count("topics", MIN_STRING + MIN_ARRAY)?)
        .map(|_| {
            let name = TopicName(r.string("topic name")?);
            let partitions = (0..r.count("partitions", 4 + 8 + 4)?)
                .map(|_| {
                    let partition_index = r.i32("partition_index")?;
                    let timestamp = r.i64("timestamp")?;
                    max_num_offsets.push((
                        name.clone(),
                        partition_index,
                        r.i32("max_num_offsets")?,
                    ));
                    Ok(ListOffsetsPartition::default()
                        .with_partition_index(partition_index)
                        .with_timestamp(timestamp))
                })
                .collect::<Result<_, LegacyError>>()?;
            Ok(ListOffsetsTopic::default()
                .with_name(name)
                .with_partitions(partitions))
        })
        .collect::<Result<_, LegacyError>>()?;
    Ok(LegacyRequest::ListOffsetsV0 {
        request: ListOffsetsRequest::default()
            .with_replica_id(replica_id.into())
            .with_topics(topics),
        max_num_offsets,
    })
}

/// The ListOffsets v0 answer from the v1 path's: `old_style_offsets` instead of (timestamp, offset).
///
/// Kafka 3.9 answered v0 from segment base offsets and file times (`legacyFetchOffsetsBefore`); brook
/// answers the single offset the v1 path finds (the high watermark for latest, the log start offset for
/// earliest, the first record at or after the timestamp), which is what a `max_num_offsets` = 1 query, the
/// one clients send, got from Kafka for latest and earliest. As in Kafka, a consumer's "latest" always
/// answers the high watermark, whatever `max_num_offsets`; negative timestamps other than -1 and -2 get
/// UNSUPPORTED_VERSION (the v1 path refuses them too).
pub fn list_offsets_v0_response(
    request: &ListOffsetsRequest,
    max_num_offsets: &[(TopicName, i32, i32)],
    response: &ListOffsetsResponse,
) -> Result<Vec<u8>, LegacyError> {
    let mut w = Writer::new();
    w.count(response.topics.len())?;
    for topic in &response.topics {
        w.string(&topic.name)?;
        w.count(topic.partitions.len())?;
        for p in &topic.partitions {
            w.buf.put_i32(p.partition_index);
            w.buf.put_i16(p.error_code);
            let max = max_num_offsets
                .iter()
                .find(|(t, i, _)| *t == topic.name && *i == p.partition_index)
                .map_or(1, |&(_, _, max)| max);
            let latest = request
                .topics
                .iter()
                .filter(|t| t.name == topic.name)
                .flat_map(|t| &t.partitions)
                .any(|q| q.partition_index == p.partition_index && q.timestamp == LATEST);
            let found = p.error_code == 0 && p.offset >= 0;
            let offsets = usize::from(found && (latest || max > 0));
            w.count(offsets)?;
            if offsets == 1 {
                w.buf.put_i64(p.offset);
            }
        }
    }
    Ok(w.buf.to_vec())
}

/// OffsetCommit v0 (group id, then per partition offset and metadata) and v1 (adds generation id,
/// member id and a per-partition commit timestamp, which Kafka 3.9 ignored: the commit time is the
/// broker's clock). v0 and v1 are sent without a group instance id and with no retention time.
pub(super) fn offset_commit(r: &mut Reader, version: i16) -> Result<LegacyRequest, LegacyError> {
    let group_id = GroupId(r.string("group_id")?);
    let mut request = OffsetCommitRequest::default()
        .with_group_id(group_id)
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(-1);
    if version >= 1 {
        request = request
            .with_generation_id_or_member_epoch(r.i32("generation_id")?)
            .with_member_id(r.string("member_id")?);
    }
    let min_partition = 4 + 8 + if version >= 1 { 8 } else { 0 } + MIN_STRING;
    let topics = (0..r.count("topics", MIN_STRING + MIN_ARRAY)?)
        .map(|_| {
            let name = TopicName(r.string("topic name")?);
            let partitions = (0..r.count("partitions", min_partition)?)
                .map(|_| {
                    let partition_index = r.i32("partition_index")?;
                    let committed_offset = r.i64("committed_offset")?;
                    if version >= 1 {
                        r.i64("commit_timestamp")?;
                    }
                    Ok(OffsetCommitRequestPartition::default()
                        .with_partition_index(partition_index)
                        .with_committed_offset(committed_offset)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(r.nullable_string("committed_metadata")?))
                })
                .collect::<Result<_, LegacyError>>()?;
            Ok(OffsetCommitRequestTopic::default()
                .with_name(name)
                .with_partitions(partitions))
        })
        .collect::<Result<_, LegacyError>>()?;
    let request = request.with_topics(topics);
    Ok(if version == 0 {
        LegacyRequest::OffsetCommitV0(request)
    } else {
        LegacyRequest::OffsetCommitV1(request)
    })
}

/// OffsetCommit v0 as a KRaft broker of Kafka 3.9 answers it: v0 offsets lived in ZooKeeper, so when any
/// named partition exists the whole request is refused with UNSUPPORTED_VERSION; partitions of unknown
/// topics are UNKNOWN_TOPIC_OR_PARTITION when nothing else is left. The response has the v0-v2 format.
pub fn offset_commit_v0_refusal(
    apis: &Apis,
    request: &OffsetCommitRequest,
) -> OffsetCommitResponse {
    let exists = |topic: &TopicName, partition: i32| {
        apis.metadata
            .topic(topic)
            .is_some_and(|t| t.partition(partition).is_some())
    };
    let any_known = request.topics.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| exists(&t.name, p.partition_index))
    });
    let error = if any_known {
        ResponseError::UnsupportedVersion
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    let topics = request
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch v0: group id, then per topic the partition indexes (the same layout as v1).
pub(super) fn offset_fetch_v0(r: &mut Reader) -> Result<OffsetFetchRequest, LegacyError> {
    let group_id = GroupId(r.string("group_id")?);
    let topics = (0..r.count("topics", MIN_STRING + MIN_ARRAY)?)
        .map(|_| {
            Ok(OffsetFetchRequestTopic::default()
                .with_name(TopicName(r.string("topic name")?))
                .with_partition_indexes(r.i32_array("partition_indexes")?))
        })
        .collect::<Result<_, LegacyError>>()?;
    Ok(OffsetFetchRequest::default()
        .with_group_id(group_id)
        .with_topics(Some(topics)))
}

/// OffsetFetch v0 as a KRaft broker of Kafka 3.9 answers it: v0 read ZooKeeper, so every partition gets
/// UNSUPPORTED_VERSION with no offset. v0's response is byte for byte v1's, which the codec encodes.
pub fn offset_fetch_v0_refusal(request: &OffsetFetchRequest) -> OffsetFetchResponse {
    let topics = request
        .topics
        .iter()
        .flatten()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|&i| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(i)
                                .with_committed_offset(-1)
                                .with_metadata(Some(StrBytes::default()))
                                .with_error_code(ResponseError::UnsupportedVersion.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// OffsetForLeaderEpoch v0-1: per topic per partition (index, leader epoch); v2 added the current leader
/// epoch (absent here: no fencing) and v3 the replica id (absent: Kafka's default, -2, a debug consumer).
pub(super) fn offset_for_leader_epoch(
    r: &mut Reader,
) -> Result<OffsetForLeaderEpochRequest, LegacyError> {
    let topics = (0..r.count("topics", MIN_STRING + MIN_ARRAY)?)
        .map(|_| {
            let topic = TopicName(r.string("topic")?);
            let partitions = (0..r.count("partitions", 8)?)
                .map(|_| {
                    Ok(OffsetForLeaderPartition::default()
                        .with_partition(r.i32("partition")?)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(r.i32("leader_epoch")?))
                })
                .collect::<Result<_, LegacyError>>()?;
            Ok(OffsetForLeaderTopic::default()
                .with_topic(topic)
                .with_partitions(partitions))
        })
        .collect::<Result<_, LegacyError>>()?;
    Ok(OffsetForLeaderEpochRequest::default()
        .with_replica_id((-2).into())
        .with_topics(topics))
}

/// OffsetForLeaderEpoch v0 (error, partition, end offset) and v1 (adds the leader epoch); no throttle time.
pub fn offset_for_leader_epoch_response(
    version: i16,
    response: &OffsetForLeaderEpochResponse,
) -> Result<Vec<u8>, LegacyError> {
    let mut w = Writer::new();
    w.count(response.topics.len())?;
    for topic in &response.topics {
        w.string(&topic.topic)?;
        w.count(topic.partitions.len())?;
        for p in &topic.partitions {
            w.buf.put_i16(p.error_code);
            w.buf.put_i32(p.partition);
            if version >= 1 {
                w.buf.put_i32(p.leader_epoch);
            }
            w.buf.put_i64(p.end_offset);
        }
    }
    Ok(w.buf.to_vec())
}
