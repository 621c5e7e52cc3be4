//! CreateTopics and DeleteTopics.

use crate::api::context::RequestContext;
use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::error::metadata_error_code;
use crate::cluster::TopicImage;

pub use crate::cluster::topic_config::apply_topic_config;

/// The topic's configs with their sources, as CreateTopics v5+ returns them.
fn created_configs(
    apis: &Apis,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    let topic = TopicImage {
        name: name.to_string(),
        id: uuid::Uuid::nil(),
        partitions: Vec::new(),
        configs,
    };
    super::configs::topic_entries(apis, &topic)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(e.name))
                .with_value(e.value.map(StrBytes::from_string))
                .with_read_only(e.read_only)
                .with_config_source(e.source)
                .with_is_sensitive(false)
        })
        .collect()
}

/// Most partitions one CreateTopics request may create, all its topics together. Kafka's controller refuses
/// more with POLICY_VIOLATION; without a cap one crafted count would have the broker create logs until the
/// disk is full.
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;

/// Why the whole request is refused when its topics ask for more than [`MAX_PARTITIONS_PER_REQUEST`].
fn partition_limit_exceeded(apis: &Apis, request: &CreateTopicsRequest) -> Option<String> {
    let requested = request
        .topics
        .iter()
        .map(|t| {
            if !t.assignments.is_empty() {
                t.assignments.len() as u64
            } else if t.num_partitions == -1 {
                u64::try_from(apis.config.num_partitions).unwrap_or(0)
            } else {
                u64::try_from(t.num_partitions).unwrap_or(0)
            }
        })
        .fold(0u64, u64::saturating_add);
    (requested > MAX_PARTITIONS_PER_REQUEST).then(|| {
        format!(
            "Too many partitions in one request: {requested} requested, at most {MAX_PARTITIONS_PER_REQUEST}."
        )
    })
}

pub fn create_topics(
    apis: &Apis,
    _ctx: &RequestContext,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let over_limit = partition_limit_exceeded(apis, &request);
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.clone();
            let result = CreatableTopicResult::default().with_name(name.clone());
            let outcome = match &over_limit {
                Some(message) => Err((ResponseError::PolicyViolation, message.clone())),
                None => create_one(apis, topic, request.validate_only),
            };
            match outcome {
                Ok((partitions, replication_factor, id, configs)) => {
                    let result = result
                        .with_topic_id(id)
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor);
                    if version >= 5 {
                        result.with_configs(Some(created_configs(apis, name.0.as_str(), configs)))
                    } else {
                        result
                    }
                }
                Err((error, message)) => {
                    tracing::debug!(topic = name.0.as_str(), %error, message, "create topic refused");
                    result
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// A created (or validated) topic: partition count, replication factor, topic id (nil when only
/// validated) and configs.
type Created = (i32, i16, uuid::Uuid, BTreeMap<String, String>);

/// Validates and (unless `validate_only`) creates one topic; returns its partition count, id and configs.
fn create_one(
    apis: &Apis,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<Created, (ResponseError, String)> {
    let name = topic.name.0.as_str();
    apis.metadata
        .check_new_topic(name)
        .map_err(|e| (metadata_error_code(&e), e.to_string()))?;
    if apis.metadata.quorum().is_some() {
        return create_in_cluster(apis, topic, validate_only);
    }
    let partitions = requested_partitions(apis, &topic)?;
    check_replication_factor(topic.replication_factor)?;
    let configs = validated_configs(apis, &topic)?;
    if validate_only {
        return Ok((partitions, 1, uuid::Uuid::nil(), configs));
    }
    let created = apis
        .create_topic(name, partitions, configs)
        .map_err(|e| (metadata_error_code(&e), e.to_string()))?;
    Ok((
        created.partition_count(),
        1,
        created.id,
        created.configs.clone(),
    ))
}

/// [`create_one`] on a cluster member: the metadata quorum places the replicas (or checks the manual
/// assignment) and answers Kafka's errors; `validate_only` checks the factor against the live brokers.
fn create_in_cluster(
    apis: &Apis,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<Created, (ResponseError, String)> {
    let name = topic.name.0.as_str();
    let (partitions, assignments): (i32, Vec<Vec<i32>>) = if topic.assignments.is_empty() {
        (requested_partitions(apis, &topic)?, Vec::new())
    } else {
        let count = consecutive_assignment(&topic)?;
        let mut sorted: Vec<_> = topic.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        let replicas = sorted
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        (count, replicas)
    };
    let configs = validated_configs(apis, &topic)?;
    if validate_only {
        let factor = match topic.replication_factor {
            -1 if !assignments.is_empty() => assignments[0].len() as i16,
            -1 => apis.config.default_replication_factor,
            n => n,
        };
        let live = apis.metadata.image().live_brokers().count();
        if factor <= 0 {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor must be larger than 0, or -1 to use the default value, not {factor}."
                ),
            ));
        }
        if factor as usize > live {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only {live} broker(s) are registered."
                ),
            ));
        }
        return Ok((partitions, factor, uuid::Uuid::nil(), configs));
    }
    let created = apis
        .metadata
        .create_topic_with(
            name,
            partitions,
            topic.replication_factor,
            assignments,
            configs,
        )
        .map_err(|e| (metadata_error_code(&e), e.to_string()))?;
    tracing::info!(topic = name, partitions = created.partition_count(), id = %created.id, "created topic");
    let factor = created
        .partition(0)
        .map_or(0, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX));
    Ok((
        created.partition_count(),
        factor,
        created.id,
        created.configs.clone(),
    ))
}

/// The partition count of a manual assignment: partitions numbered from 0 without gaps, and neither a
/// partition count nor a replication factor beside it (Kafka's rules).
fn consecutive_assignment(topic: &CreatableTopic) -> Result<i32, (ResponseError, String)> {
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        ));
    }
    let mut seen: Vec<i32> = topic
        .assignments
        .iter()
        .map(|a| a.partition_index)
        .collect();
    seen.sort_unstable();
    if seen.iter().enumerate().any(|(i, &p)| p != i as i32) {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "Partitions in the replica assignment must be consecutive and start at 0".into(),
        ));
    }
    Ok(seen.len() as i32)
}

/// The partition count a CreateTopics entry asks for: from its manual assignment (which on one broker may
/// only name this broker) or `num_partitions`, with -1 meaning `num.partitions`.
fn requested_partitions(
    apis: &Apis,
    topic: &CreatableTopic,
) -> Result<i32, (ResponseError, String)> {
    if topic.assignments.is_empty() {
        return match topic.num_partitions {
            -1 => Ok(apis.config.num_partitions),
            n if n >= 1 => Ok(n),
            n => Err((
                ResponseError::InvalidPartitions,
                format!("Number of partitions was set to an invalid non-positive value: {n}."),
            )),
        };
    }
    consecutive_assignment(topic)?;
    for assignment in &topic.assignments {
        if assignment.broker_ids.len() != 1 || assignment.broker_ids[0].0 != apis.node_id {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Replica assignment for partition {} must be exactly [{}], the only broker",
                    assignment.partition_index, apis.node_id
                ),
            ));
        }
    }
    Ok(topic.assignments.len() as i32)
}

/// One broker can hold one replica: 1 or -1 (the default) is accepted, anything else refused as Kafka
/// refuses a factor above the registered brokers.
fn check_replication_factor(replication_factor: i16) -> Result<(), (ResponseError, String)> {
    match replication_factor {
        -1 | 1 => Ok(()),
        n if n > 1 => Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {n} time(s): The target replication factor of {n} cannot be reached because only 1 broker(s) are registered."
            ),
        )),
        n => Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "Replication factor must be larger than 0, or -1 to use the default value, not {n}."
            ),
        )),
    }
}

/// The entry's configs, each checked against the broker's defaults as the log would apply it.
fn validated_configs(
    apis: &Apis,
    topic: &CreatableTopic,
) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    let mut configs = BTreeMap::new();
    let mut check = apis.log_defaults();
    for config in &topic.configs {
        let key = config.name.as_str();
        let Some(value) = config.value.as_ref().map(|v| v.as_str()) else {
            return Err((
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic config {key}"),
            ));
        };
        apply_topic_config(&mut check, key, value)
            .map_err(|m| (ResponseError::InvalidConfig, m))?;
        configs.insert(key.to_string(), value.to_string());
    }
    Ok(configs)
}

pub fn delete_topics(
    apis: &Apis,
    _ctx: &RequestContext,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // Version 6 names topics by name or id in `topics`; earlier versions by name in `topic_names`.
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let resolved = match &name {
                Some(name) if !name.0.is_empty() => apis
                    .metadata
                    .topic(name.0.as_str())
                    .ok_or(ResponseError::UnknownTopicOrPartition),
                _ => apis
                    .metadata
                    .topic_by_id(id)
                    .ok_or(ResponseError::UnknownTopicId),
            };
            let result = DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(id);
            match resolved.and_then(|topic| {
                if topic.is_internal() {
                    // Committed offsets live there; Kafka refuses to delete its internal topics too.
                    return Err(ResponseError::InvalidTopicException);
                }
                apis.delete_topic(&topic.name)
                    .map_err(|e| metadata_error_code(&e))
            }) {
                Ok(topic) => result
                    .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
                    .with_topic_id(topic.id),
                Err(error) => result.with_error_code(error.code()),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
