//! Metadata: the brokers, the cluster id and the topics with their partitions and leaders, as Kafka 4.1's
//! KRaft brokers answer it: brokers and leaders are given by their endpoint on the listener the request
//! came in on.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::acl_operations::{ResourceType, authorized_operations};
use super::{Apis, metadata_cache};
use crate::cluster::{MetadataImage, PartitionRegistration, TopicImage, topic_name};

pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    request: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let image = apis.metadata.image();
    let view = View {
        apis,
        image: &image,
        listener: &ctx.listener,
        version,
    };

    // Version 0 asks for every topic with an empty list; later versions with a null one.
    let requested = match &request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        None => image
            .topics()
            .iter()
            .map(|t| topic_response(&view, t))
            .collect(),
        Some(requested) => {
            // Versions before 4 always allowed auto-creation.
            let allow_create = apis.config.auto_create_topics_enable
                && (version < 4 || request.allow_auto_topic_creation);
            requested
                .iter()
                .map(|t| {
                    let name = t.name.as_ref().map(|n| n.0.as_str().to_string());
                    requested_topic(&view, name, t.topic_id, allow_create)
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
        .with_brokers(brokers(&image, &ctx.listener))
        .with_cluster_id(Some(StrBytes::from_string(apis.cluster_id.clone())))
        .with_controller_id(BrokerId(metadata_cache::controller_id(&image)))
        .with_topics(topics)
        // Only v8-10 carry the flag; later versions ask DescribeCluster instead.
        .with_cluster_authorized_operations(authorized_operations(
            ResourceType::Cluster,
            request.include_cluster_authorized_operations,
        ))
}

fn requested_topic(
    view: &View<'_>,
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
    let apis = view.apis;
    let name = match name {
        Some(name) => name,
        None if !id.is_nil() => {
            return match apis.metadata.topic_by_id(id) {
                Some(topic) => topic_response(view, &topic),
                None => error_topic(ResponseError::UnknownTopicId, None, id),
            };
        }
        None => return error_topic(ResponseError::InvalidRequest, None, id),
    };
    if let Some(topic) = apis.metadata.topic(&name) {
        return topic_response(view, &topic);
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
        Ok(topic) => topic_response(view, &topic),
        Err(error) => error_topic(error, Some(name), Uuid::nil()),
    }
}

/// What a topic's answer depends on besides the topic: the image, the request's listener and version.
struct View<'a> {
    apis: &'a Apis,
    /// The image the request started with (brokers do not change under an auto-creation).
    image: &'a MetadataImage,
    listener: &'a str,
    version: i16,
}

/// The live brokers with their endpoint on the request's listener (a broker without it is left out).
fn brokers(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    metadata_cache::alive_broker_nodes(image, listener)
        .into_iter()
        .map(|node| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node.id))
                .with_host(StrBytes::from_string(node.host))
                .with_port(i32::from(node.port))
                .with_rack(node.rack.map(StrBytes::from_string))
        })
        .collect()
}

/// One partition as Kafka's `KRaftMetadataCache.getPartitionMetadata` answers it: a leader that is not
/// alive is -1 with LEADER_NOT_AVAILABLE, one alive without the request's listener LISTENER_NOT_FOUND
/// (v6+; LEADER_NOT_AVAILABLE before); replicas on brokers unknown, fenced or without the listener are
/// offline; v0 lists only available replicas and says REPLICA_NOT_AVAILABLE when it left one out.
fn partition_response(
    view: &View<'_>,
    topic: &TopicImage,
    partition: i32,
    registration: &PartitionRegistration,
) -> MetadataResponsePartition {
    let (apis, image) = (view.apis, view.image);
    let ids = |nodes: &[i32]| nodes.iter().map(|&n| BrokerId(n)).collect::<Vec<_>>();
    let available = |id: i32| metadata_cache::alive_broker_node(image, id, view.listener).is_some();
    let offline: Vec<i32> = registration
        .replicas
        .iter()
        .copied()
        .filter(|&id| !available(id))
        .collect();
    // Only v0 filters the replicas a client cannot reach (Kafka's errorUnavailableEndpoints).
    let filter = |nodes: &[i32]| -> Vec<i32> {
        if view.version == 0 {
            nodes.iter().copied().filter(|&id| available(id)).collect()
        } else {
            nodes.to_vec()
        }
    };
    let replicas = filter(&registration.replicas);
    let isr = filter(&registration.isr);
    let response = MetadataResponsePartition::default()
        .with_partition_index(partition)
        .with_leader_epoch(registration.leader_epoch)
        .with_replica_nodes(ids(&replicas))
        .with_isr_nodes(ids(&isr))
        .with_offline_replicas(ids(&offline));
    // The image names this broker the leader, but its log could not be opened: as Kafka reports a
    // replica on a failed log directory.
    if registration.leader == apis.node_id && apis.replicas.is_offline(topic, partition) {
        let mut offline = offline;
        if !offline.contains(&apis.node_id) {
            offline.push(apis.node_id);
        }
        return response
            .with_error_code(ResponseError::LeaderNotAvailable.code())
            .with_leader_id(BrokerId(-1))
            .with_isr_nodes(Vec::new())
            .with_offline_replicas(ids(&offline));
    }
    if metadata_cache::alive_broker_node(image, registration.leader, view.listener).is_none() {
        let alive = image.broker(registration.leader).is_some_and(|b| !b.fenced);
        let error = if alive && view.version >= 6 {
            ResponseError::ListenerNotFound
        } else {
            ResponseError::LeaderNotAvailable
        };
        return response
            .with_error_code(error.code())
            .with_leader_id(BrokerId(-1));
    }
    let error =
        if replicas.len() < registration.replicas.len() || isr.len() < registration.isr.len() {
            ResponseError::ReplicaNotAvailable.code()
        } else {
            0
        };
    response
        .with_error_code(error)
        .with_leader_id(BrokerId(registration.leader))
}

fn topic_response(view: &View<'_>, topic: &TopicImage) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .zip(0..)
        .map(|(registration, partition)| partition_response(view, topic, partition, registration))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
}
