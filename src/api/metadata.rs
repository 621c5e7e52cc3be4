//! Metadata: the brokers, the cluster id and the topics with their partitions and leaders.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::Apis;
use super::acl_operations::{ResourceType, authorized_operations};
use crate::cluster::{MetadataImage, TopicImage, topic_name};

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let image = apis.metadata.image();

    // Version 0 asks for every topic with an empty list; later versions with a null one.
    let requested = match &request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        None => image
            .topics()
            .iter()
            .map(|t| topic_response(apis, t))
            .collect(),
        Some(requested) => {
            // Versions before 4 always allowed auto-creation.
            let allow_create = apis.config.auto_create_topics_enable
                && (version < 4 || request.allow_auto_topic_creation);
            requested
                .iter()
                .map(|t| {
                    let name = t.name.as_ref().map(|n| n.0.as_str().to_string());
                    requested_topic(apis, name, t.topic_id, allow_create)
                })
                .collect()
        }
    };

    // Every topic entry, error entries included, as Kafka does (the flag only exists from v8).
    let topic_operations = authorized_operations(
        ResourceType::Topic,
        request.include_topic_authorized_operations,
    );
    for topic in &mut topics {
        topic.topic_authorized_operations = topic_operations;
    }
    MetadataResponse::default()
        .with_brokers(brokers(&image))
        .with_cluster_id(Some(StrBytes::from_string(apis.cluster_id.clone())))
        .with_controller_id(BrokerId(apis.node_id))
        .with_topics(topics)
        // Only v8-10 carry the flag; later versions ask DescribeCluster instead.
        .with_cluster_authorized_operations(authorized_operations(
            ResourceType::Cluster,
            request.include_cluster_authorized_operations,
        ))
}

fn requested_topic(
    apis: &Apis,
    name: Option<String>,
    id: Uuid,
    allow_create: bool,
) -> MetadataResponseTopic {
    let error_topic = |error: ResponseError, name: Option<String>, id: Uuid| {
        MetadataResponseTopic::default()
            .with_error_code(error.code())
            .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(id)
    };
    let name = match name {
        Some(name) => name,
        None if !id.is_nil() => {
            return match apis.metadata.topic_by_id(id) {
                Some(topic) => topic_response(apis, &topic),
                None => error_topic(ResponseError::UnknownTopicId, None, id),
            };
        }
        None => return error_topic(ResponseError::InvalidRequest, None, id),
    };
    if let Some(topic) = apis.metadata.topic(&name) {
        return topic_response(apis, &topic);
    }
    if topic_name::validate(&name).is_err() {
        return error_topic(
            ResponseError::InvalidTopicException,
            Some(name),
            Uuid::nil(),
        );
    }
    if !allow_create {
        return error_topic(
            ResponseError::UnknownTopicOrPartition,
            Some(name),
            Uuid::nil(),
        );
    }
    match apis.auto_create(&name) {
        Ok(topic) => topic_response(apis, &topic),
        Err(error) => error_topic(error, Some(name), Uuid::nil()),
    }
}

/// The live brokers with the endpoint of the listener clients use.
fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .live_brokers()
        .filter_map(|broker| {
            let endpoint = broker.endpoints.first()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(broker.id))
                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(broker.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

fn topic_response(apis: &Apis, topic: &TopicImage) -> MetadataResponseTopic {
    let ids = |nodes: &[i32]| nodes.iter().map(|&n| BrokerId(n)).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .zip(0..)
        .map(|(registration, partition)| {
            let response = MetadataResponsePartition::default()
                .with_partition_index(partition)
                .with_leader_epoch(registration.leader_epoch)
                .with_replica_nodes(ids(&registration.replicas));
            // The image names this broker the leader, but its log could not be opened: as Kafka reports a
            // replica on a failed log directory.
            if apis.replicas.is_offline(topic, partition) {
                response
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(apis.node_id)])
            } else {
                response
                    .with_leader_id(BrokerId(registration.leader))
                    .with_isr_nodes(ids(&registration.isr))
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
}
