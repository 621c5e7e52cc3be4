//! OffsetCommit, OffsetFetch and OffsetDelete: committed offsets of a group, kept by the
//! [`OffsetStore`](crate::group::offset_store::OffsetStore) after the coordinator has checked the member.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::groups::Outcome;
use crate::group::OffsetAndMetadata;
use crate::group::offset_store::GroupStoreError;
use crate::log::TopicPartition;

/// The error a client sees when the offsets topic could not take a write.
pub(super) fn store_error(e: &GroupStoreError) -> ResponseError {
    // Debug: the cause (disk full, partition offline) is logged once where it happens; commits retry it.
    tracing::debug!(error = %e, "offset store write failed");
    match e {
        GroupStoreError::Log(_) | GroupStoreError::NotDurable(_) => {
            ResponseError::CoordinatorNotAvailable
        }
        _ => ResponseError::UnknownServerError,
    }
}

pub(super) fn partition_known(apis: &Apis, topic: &str, partition: i32) -> bool {
    apis.metadata
        .topic(topic)
        .is_some_and(|t| t.partition(partition).is_some())
}

pub fn offset_commit(
    apis: &Apis,
    _ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> Outcome<OffsetCommitResponse> {
    let group = req.group_id.0.to_string();
    let check = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        apis.groups.validate_commit(
            &group,
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|i| i.as_str()),
        )
    };
    let now = apis.groups.clock().now_ms();
    let max_metadata = apis.config.groups.offset_metadata_max_bytes;
    // (topic index, partition index) of every partition written, to report a failed write on.
    let mut written: Vec<(usize, usize)> = Vec::new();
    let mut offsets = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for (ti, topic) in req.topics.iter().enumerate() {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.as_str())
                .unwrap_or("");
            let error = if let Err(e) = check {
                Some(e)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else if !partition_known(apis, topic.name.0.as_str(), p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                written.push((ti, pi));
                offsets.push((
                    TopicPartition {
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                    },
                    OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_string(),
                        commit_timestamp_ms: now,
                    },
                ));
                None
            };
            partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error.map(|e| e.code()).unwrap_or(0)),
            );
        }
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    if offsets.is_empty() {
        return Outcome::Respond(OffsetCommitResponse::default().with_topics(topics));
    }
    let fail = move |topics: &mut Vec<OffsetCommitResponseTopic>, error: ResponseError| {
        for &(ti, pi) in &written {
            if let Some(p) = topics.get_mut(ti).and_then(|t| t.partitions.get_mut(pi)) {
                p.error_code = error.code();
            }
        }
    };
    match apis.groups.store().commit(&group, offsets) {
        Ok(wait) => Outcome::Wait(Box::pin(async move {
            if let Err(e) = wait.await {
                fail(&mut topics, store_error(&e));
            }
            OffsetCommitResponse::default().with_topics(topics)
        })),
        Err(e) => {
            fail(&mut topics, store_error(&e));
            Outcome::Respond(OffsetCommitResponse::default().with_topics(topics))
        }
    }
}

/// A partition's committed offset (None = nothing committed), or why it is not answered.
type Fetched = Result<Option<OffsetAndMetadata>, ResponseError>;

/// A topic's requested partitions with their committed offsets.
type TopicOffsets = (TopicName, Vec<(i32, Fetched)>);

/// One group's committed offsets for the requested partitions (None = every committed partition), by topic.
/// Offsets staged by an open transaction are never answered; with `require_stable` (v7+) a partition that
/// has one is UNSTABLE_OFFSET_COMMIT, so the consumer retries once the transaction has ended (Kafka's
/// `fetchOffsets`).
fn fetch_group(
    apis: &Apis,
    group: &str,
    requested: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<TopicOffsets> {
    let store = apis.groups.store();
    let stable = |tp: &TopicPartition, committed: Option<OffsetAndMetadata>| -> Fetched {
        if require_stable && store.has_pending_offset(group, tp) {
            Err(ResponseError::UnstableOffsetCommit)
        } else {
            Ok(committed)
        }
    };
    match requested {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| {
                        let tp = TopicPartition {
                            topic: name.0.to_string(),
                            partition: p,
                        };
                        let committed = store.fetch(group, &tp);
                        (p, stable(&tp, committed))
                    })
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut by_topic: Vec<TopicOffsets> = Vec::new();
            for (tp, om) in store.fetch_all(group) {
                let fetched = stable(&tp, Some(om));
                match by_topic.iter_mut().find(|(n, _)| n.0.as_str() == tp.topic) {
                    Some((_, list)) => list.push((tp.partition, fetched)),
                    None => by_topic.push((
                        TopicName(StrBytes::from_string(tp.topic.clone())),
                        vec![(tp.partition, fetched)],
                    )),
                }
            }
            by_topic
        }
    }
}

/// The fields of one partition's answer: error code, offset, leader epoch, metadata (-1, -1, "" when
/// nothing is committed or the partition is answered an error).
fn answer(fetched: &Fetched) -> (i16, i64, i32, Option<StrBytes>) {
    match fetched {
        Ok(Some(om)) => (
            0,
            om.offset,
            om.leader_epoch,
            Some(StrBytes::from_string(om.metadata.clone())),
        ),
        Ok(None) => (0, -1, -1, Some(StrBytes::default())),
        Err(e) => (e.code(), -1, -1, Some(StrBytes::default())),
    }
}

pub fn offset_fetch(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let require_stable = version >= 7 && req.require_stable;
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                // Asked of a broker that does not coordinate the group: find the coordinator again.
                if let Err(e) = apis.groups.store().check_coordinator(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(e.code());
                }
                let requested = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                        .collect()
                });
                let topics = fetch_group(apis, g.group_id.0.as_str(), requested, require_stable)
                    .into_iter()
                    .map(|(name, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|(p, fetched)| {
                                        let (error, offset, epoch, metadata) = answer(fetched);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_error_code(error)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(e) = apis
        .groups
        .store()
        .check_coordinator(req.group_id.0.as_str())
    {
        return OffsetFetchResponse::default().with_error_code(e.code());
    }
    let requested = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
            .collect()
    });
    let topics = fetch_group(apis, req.group_id.0.as_str(), requested, require_stable)
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, fetched)| {
                            let (error, offset, epoch, metadata) = answer(fetched);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_error_code(error)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub fn offset_delete(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &OffsetDeleteRequest,
) -> Outcome<OffsetDeleteResponse> {
    let group = req.group_id.0.as_str();
    if let Err(e) = apis.groups.store().check_coordinator(group) {
        return Outcome::Respond(OffsetDeleteResponse::default().with_error_code(e.code()));
    }
    if !apis.groups.group_exists(group) {
        return Outcome::Respond(
            OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code()),
        );
    }
    let mut deletable = Vec::new();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = t.name.0.as_str();
            let subscribed = apis.groups.is_subscribed(group, topic);
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let error = if !partition_known(apis, topic, p.partition_index) {
                                Some(ResponseError::UnknownTopicOrPartition)
                            } else if subscribed {
                                Some(ResponseError::GroupSubscribedToTopic)
                            } else {
                                deletable.push(TopicPartition {
                                    topic: topic.to_string(),
                                    partition: p.partition_index,
                                });
                                None
                            };
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.map(|e| e.code()).unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    let response = OffsetDeleteResponse::default().with_topics(topics);
    if deletable.is_empty() {
        return Outcome::Respond(response);
    }
    match apis.groups.store().delete_offsets(group, &deletable) {
        Ok(wait) => Outcome::Wait(Box::pin(async move {
            match wait.await {
                Ok(()) => response,
                Err(e) => response.with_error_code(store_error(&e).code()),
            }
        })),
        Err(e) => Outcome::Respond(response.with_error_code(store_error(&e).code())),
    }
}
