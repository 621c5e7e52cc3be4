//! CreateTopics and DeleteTopics.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::error::metadata_error_code;
use crate::log::LogConfig;

/// The topic configs brook applies, by Kafka name. Others Kafka knows are refused until they are implemented,
/// so a setting is never silently ignored.
pub const TOPIC_CONFIGS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
];

/// Applies one topic-level config to a topic's log settings, or says why it cannot.
pub fn apply_topic_config(config: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    let int = |min: i64, max: i64| -> Result<i64, String> {
        let v = value.trim().parse::<i64>().map_err(|_| {
            format!("Invalid value {value} for configuration {key}: Not a number of type LONG")
        })?;
        if v < min || v > max {
            return Err(format!(
                "Invalid value {value} for configuration {key}: Value must be at least {min}"
            ));
        }
        Ok(v)
    };
    match key {
        "segment.bytes" => config.segment_bytes = int(14, i32::MAX as i64)? as u64,
        "segment.ms" => config.segment_ms = int(1, i64::MAX)? as u64,
        "segment.index.bytes" => config.max_index_bytes = int(4, i32::MAX as i64)? as u32,
        "index.interval.bytes" => config.index_interval_bytes = int(0, i32::MAX as i64)? as u32,
        "flush.messages" => config.flush_interval_messages = int(1, i64::MAX)? as u64,
        "flush.ms" => config.flush_interval_ms = Some(int(0, i64::MAX)? as u64),
        "max.message.bytes" => config.max_message_bytes = int(0, i32::MAX as i64)? as u32,
        _ => return Err(format!("Unknown or unsupported topic config name: {key}")),
    }
    Ok(())
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

pub fn create_topics(apis: &Apis, request: CreateTopicsRequest) -> CreateTopicsResponse {
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
                Ok((partitions, id)) => result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
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

/// Validates and (unless `validate_only`) creates one topic; returns its partition count and id.
fn create_one(
    apis: &Apis,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(i32, uuid::Uuid), (ResponseError, String)> {
    let name = topic.name.0.as_str();
    apis.metadata
        .check_new_topic(name)
        .map_err(|e| (metadata_error_code(&e), e.to_string()))?;

    let partitions = if !topic.assignments.is_empty() {
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
        topic.assignments.len() as i32
    } else {
        match topic.num_partitions {
            -1 => apis.config.num_partitions,
            n if n >= 1 => n,
            n => {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("Number of partitions was set to an invalid non-positive value: {n}."),
                ));
            }
        }
    };
    match topic.replication_factor {
        -1 | 1 => {}
        n if n > 1 => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {n} time(s): The target replication factor of {n} cannot be reached because only 1 broker(s) are registered."
                ),
            ));
        }
        n => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor must be larger than 0, or -1 to use the default value, not {n}."
                ),
            ));
        }
    }

    let mut configs = BTreeMap::new();
    let mut check = apis.config.log.clone();
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

    if validate_only {
        return Ok((partitions, uuid::Uuid::nil()));
    }
    let created = apis
        .create_topic(name, partitions, configs)
        .map_err(|e| (metadata_error_code(&e), e.to_string()))?;
    Ok((created.partitions, created.id))
}

pub fn delete_topics(
    apis: &Apis,
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
