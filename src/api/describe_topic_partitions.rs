//! DescribeTopicPartitions (api 75, KIP-966): the topics' partitions with their ISR, eligible leader
//! replicas and last known ELR, which Metadata cannot show. Kafka's Admin `describeTopics` (and with it
//! `kafka-topics --describe`) asks it first.
//!
//! As Kafka's `DescribeTopicPartitionsRequestHandler` answers it: an empty topic list means every topic;
//! topics come sorted by name, each from partition 0 except the cursor's topic, which starts at the
//! cursor's partition. At most `min(response_partition_limit, max.request.partition.size.limit)`
//! partitions (at least 1) are answered; where that cut a topic short, or left topics out, `next_cursor`
//! says where the next request starts. A named topic that does not exist answers UNKNOWN_TOPIC_OR_PARTITION
//! (INVALID_TOPIC_EXCEPTION for an illegal name); a cursor naming a topic the list lacks, or a negative
//! partition, makes the request INVALID_REQUEST. Every topic may be described (brook has no authorizer
//! yet, so none is TOPIC_AUTHORIZATION_FAILED, as for Metadata).

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::acl_operations::{ResourceType, authorized_operations};
use super::context::RequestContext;
use super::{Apis, metadata_cache};
use crate::cluster::image::is_internal_topic;
use crate::cluster::{MetadataImage, PartitionRegistration, TopicImage, topic_name};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response describes.
pub const MAX_REQUEST_PARTITION_SIZE_LIMIT: i32 = 2000;

pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    request: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    describe(&apis.metadata.image(), &ctx.listener, request)
}

/// The answer from one image, on the request's listener.
pub fn describe(
    image: &MetadataImage,
    listener: &str,
    request: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let all = request.topics.is_empty();
    let cursor = request.cursor.as_ref();
    let cursor_topic = cursor.map_or("", |c| c.topic_name.0.as_str());
    // Sorted and distinct, from the cursor's topic on.
    let names: BTreeSet<&str> = if all {
        image.topic_names().filter(|n| *n >= cursor_topic).collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.0.as_str())
            .filter(|n| *n >= cursor_topic)
            .collect()
    };
    if let Some(cursor) = cursor
        && ((!all && !names.contains(cursor_topic)) || cursor.partition_index < 0)
    {
        return invalid_request(request);
    }
    let start = |name: &str| match cursor {
        Some(c) if name == cursor_topic => c.partition_index,
        _ => 0,
    };
    let mut remaining = request
        .response_partition_limit
        .clamp(1, MAX_REQUEST_PARTITION_SIZE_LIMIT) as usize;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining == 0 {
            // Every partition of the topics before was answered: the next request starts at this one.
            next_cursor = Some(cursor_at(name, 0));
            break;
        }
        let Some(topic) = image.topic(name) else {
            if !all {
                topics.push(unknown_topic(name));
            }
            continue;
        };
        let from = usize::try_from(start(name)).unwrap_or(0);
        let upto = topic.partitions.len().min(from.saturating_add(remaining));
        let partitions: Vec<_> = (from..upto)
            .map(|i| partition(image, listener, i, &topic.partitions[i]))
            .collect();
        remaining -= partitions.len();
        topics.push(described_topic(topic, partitions));
        if upto < topic.partitions.len() {
            next_cursor = Some(cursor_at(name, upto));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor_at(topic: &str, partition: usize) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_index(i32::try_from(partition).unwrap_or(i32::MAX))
}

fn ids(nodes: &[i32]) -> Vec<BrokerId> {
    nodes.iter().map(|&n| BrokerId(n)).collect()
}

/// One partition as Kafka's metadata cache describes it: the replica and ISR lists unfiltered, the leader
/// -1 unless it is alive with the request's listener, the replicas a client cannot reach offline.
fn partition(
    image: &MetadataImage,
    listener: &str,
    index: usize,
    registration: &PartitionRegistration,
) -> DescribeTopicPartitionsResponsePartition {
    let alive = |id: i32| metadata_cache::alive_broker_node(image, id, listener).is_some();
    let offline: Vec<i32> = registration
        .replicas
        .iter()
        .copied()
        .filter(|&id| !alive(id))
        .collect();
    let leader = if alive(registration.leader) {
        registration.leader
    } else {
        -1
    };
    DescribeTopicPartitionsResponsePartition::default()
        .with_partition_index(i32::try_from(index).unwrap_or(i32::MAX))
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(registration.leader_epoch)
        .with_replica_nodes(ids(&registration.replicas))
        .with_isr_nodes(ids(&registration.isr))
        .with_eligible_leader_replicas(Some(ids(&registration.elr)))
        .with_last_known_elr(Some(ids(&registration.last_known_elr)))
        .with_offline_replicas(ids(&offline))
}

fn described_topic(
    topic: &TopicImage,
    partitions: Vec<DescribeTopicPartitionsResponsePartition>,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations(ResourceType::Topic, true))
}

fn unknown_topic(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let error = if topic_name::validate(name).is_err() {
        ResponseError::InvalidTopicException
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_id(Uuid::nil())
        .with_is_internal(is_internal_topic(name))
        .with_topic_authorized_operations(authorized_operations(ResourceType::Topic, true))
}

/// Kafka's error response: every topic of the request with the error (none when it asked for all).
fn invalid_request(request: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_name(Some(t.name.clone()))
                .with_topic_id(Uuid::nil())
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kafka_protocol::messages::describe_topic_partitions_request::{self, TopicRequest};

    use super::*;
    use crate::api::metadata_cache::test_support::broker;
    use crate::cluster::{MetadataDelta, TopicDelta};

    /// Brokers 1-3 (3 fenced) and topics `a` and `b` of three partitions each; `b-0` has lost its ISR and
    /// keeps 1 and 3 eligible.
    fn image() -> MetadataImage {
        let topic = |name: &str, id: u128| {
            let mut partitions = vec![
                PartitionRegistration {
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    leader: 1,
                    leader_epoch: 4,
                    ..Default::default()
                };
                3
            ];
            if name == "b" {
                partitions[0] = PartitionRegistration {
                    isr: vec![],
                    leader: -1,
                    elr: vec![1, 3],
                    last_known_elr: vec![1],
                    ..partitions[0].clone()
                };
            }
            TopicDelta::Created(Arc::new(TopicImage {
                name: name.into(),
                id: Uuid::from_u128(id),
                partitions,
                configs: BTreeMap::new(),
            }))
        };
        MetadataImage::default().apply(&MetadataDelta {
            topics: vec![topic("b", 2), topic("a", 1)],
            brokers: vec![
                broker(1, false, &[("PLAINTEXT", 9092)]),
                broker(2, false, &[("PLAINTEXT", 9093)]),
                broker(3, true, &[("PLAINTEXT", 9094)]),
            ],
            ..Default::default()
        })
    }

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        TopicRequest::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(t.into())))
                    .with_partition_index(p)
            }))
    }

    /// Topic name and partition indexes of each topic answered.
    fn shape(response: &DescribeTopicPartitionsResponse) -> Vec<(String, i16, Vec<i32>)> {
        response
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().unwrap().0.to_string(),
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect()
    }

    fn cursor(response: &DescribeTopicPartitionsResponse) -> Option<(String, i32)> {
        response
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index))
    }

    #[test]
    fn every_topic_sorted_with_isr_elr_and_last_known_elr() {
        let image = image();
        let response = describe(&image, "PLAINTEXT", &request(&[], 2000, None));
        assert_eq!(
            shape(&response),
            vec![
                ("a".into(), 0, vec![0, 1, 2]),
                ("b".into(), 0, vec![0, 1, 2])
            ]
        );
        assert_eq!(cursor(&response), None);
        let b0 = &response.topics[1].partitions[0];
        assert_eq!(b0.leader_id, BrokerId(-1));
        assert_eq!(b0.isr_nodes, Vec::<BrokerId>::new());
        assert_eq!(
            b0.eligible_leader_replicas,
            Some(vec![BrokerId(1), BrokerId(3)])
        );
        assert_eq!(b0.last_known_elr, Some(vec![BrokerId(1)]));
        assert_eq!(b0.offline_replicas, vec![BrokerId(3)], "3 is fenced");
        assert_eq!(response.topics[1].topic_id, Uuid::from_u128(2));
        let a1 = &response.topics[0].partitions[1];
        assert_eq!((a1.leader_id, a1.leader_epoch), (BrokerId(1), 4));
        assert_eq!(a1.eligible_leader_replicas, Some(vec![]));
    }

    #[test]
    fn the_partition_limit_pages_with_a_cursor() {
        let image = image();
        let first = describe(&image, "PLAINTEXT", &request(&[], 4, None));
        assert_eq!(
            shape(&first),
            vec![("a".into(), 0, vec![0, 1, 2]), ("b".into(), 0, vec![0])]
        );
        assert_eq!(cursor(&first), Some(("b".into(), 1)));
        let second = describe(&image, "PLAINTEXT", &request(&[], 4, Some(("b", 1))));
        assert_eq!(shape(&second), vec![("b".into(), 0, vec![1, 2])]);
        assert_eq!(cursor(&second), None);
        // A limit that ends exactly at a topic's end points the cursor at the next topic.
        let exact = describe(&image, "PLAINTEXT", &request(&["a", "b"], 3, None));
        assert_eq!(shape(&exact), vec![("a".into(), 0, vec![0, 1, 2])]);
        assert_eq!(cursor(&exact), Some(("b".into(), 0)));
        // Zero or less still answers one partition; more than Kafka's cap is capped.
        let one = describe(&image, "PLAINTEXT", &request(&["a"], 0, None));
        assert_eq!(shape(&one), vec![("a".into(), 0, vec![0])]);
        assert_eq!(cursor(&one), Some(("a".into(), 1)));
    }

    #[test]
    fn unknown_topics_and_bad_cursors_answer_kafkas_errors() {
        let image = image();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let invalid_name = ResponseError::InvalidTopicException.code();
        let response = describe(
            &image,
            "PLAINTEXT",
            &request(&["zz", "a", "bad name", "a"], 10, None),
        );
        assert_eq!(
            shape(&response),
            vec![
                ("a".into(), 0, vec![0, 1, 2]),
                ("bad name".into(), invalid_name, vec![]),
                ("zz".into(), unknown, vec![]),
            ]
        );
        assert_eq!(response.topics[2].topic_id, Uuid::nil());

        let invalid = ResponseError::InvalidRequest.code();
        let missing = describe(&image, "PLAINTEXT", &request(&["a"], 10, Some(("b", 0))));
        assert_eq!(shape(&missing), vec![("a".into(), invalid, vec![])]);
        let negative = describe(&image, "PLAINTEXT", &request(&["a"], 10, Some(("a", -1))));
        assert_eq!(shape(&negative), vec![("a".into(), invalid, vec![])]);
    }
}
