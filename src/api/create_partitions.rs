//! CreatePartitions: grows a topic's partition count. New partitions get empty logs at once; producers and
//! consumers see them at their next metadata refresh. A topic never shrinks, as in Kafka. In a cluster the
//! new partitions keep the topic's replication factor, placed over the live brokers or as the request's
//! assignments say; a single node can only place them on itself.

use crate::api::context::RequestContext;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::error::metadata_error_code;
use super::groups::Outcome;
use super::topics::MAX_PARTITIONS_PER_REQUEST;
use crate::controller::command::NewPartitions;
use crate::controller::quorum_controller::QuorumController;
use crate::controller::{ControllerCommand, ControllerResponse};

type Failure = (ResponseError, String);

/// Why the whole request is refused when it would add more than [`MAX_PARTITIONS_PER_REQUEST`] partitions
/// in all: one crafted count must not have the broker create logs until the disk is full.
fn partition_limit_exceeded(apis: &Apis, request: &CreatePartitionsRequest) -> Option<String> {
    let added = request
        .topics
        .iter()
        .map(|t| {
            let current = apis
                .metadata
                .topic(t.name.0.as_str())
                .map_or(0, |topic| topic.partition_count());
            u64::try_from(i64::from(t.count) - i64::from(current)).unwrap_or(0)
        })
        .fold(0u64, u64::saturating_add);
    (added > MAX_PARTITIONS_PER_REQUEST).then(|| {
        format!(
            "Too many partitions in one request: {added} new ones requested, at most {MAX_PARTITIONS_PER_REQUEST}."
        )
    })
}

/// The registry's entry: a cluster member decides through the metadata quorum (asynchronously), a single
/// node at once.
pub fn handle_request(
    apis: &Apis,
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> Outcome<CreatePartitionsResponse> {
    match apis.controller.clone() {
        Some(controller) => in_cluster(apis, controller, request),
        None => Outcome::Respond(handle(apis, ctx, request)),
    }
}

/// CreatePartitions in a cluster: the request's own checks here (size, duplicates), the rest by the
/// controller against its state (Kafka's `ReplicationControlManager.createPartitions`): the topic, the
/// count, manual assignments against the registered brokers and the topic's replication factor, placement
/// over the live brokers otherwise. `validate_only` is decided there too, so it sees the same brokers.
fn in_cluster(
    apis: &Apis,
    controller: Arc<QuorumController>,
    request: CreatePartitionsRequest,
) -> Outcome<CreatePartitionsResponse> {
    let over_limit = partition_limit_exceeded(apis, &request);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &request.topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    let mut refused: HashMap<String, Failure> = HashMap::new();
    let mut proposed = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        if let Some(message) = &over_limit {
            refused.insert(
                name.into(),
                (ResponseError::PolicyViolation, message.clone()),
            );
        } else if counts[name] > 1 {
            refused.insert(
                name.into(),
                (
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.".into(),
                ),
            );
        } else {
            proposed.push(NewPartitions {
                topic: name.to_string(),
                count: topic.count,
                assignments: topic.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                }),
            });
        }
    }
    let names: Vec<StrBytes> = request.topics.iter().map(|t| t.name.0.clone()).collect();
    let validate_only = request.validate_only;
    Outcome::Wait(Box::pin(async move {
        let decided: HashMap<String, Failure> = if proposed.is_empty() {
            HashMap::new()
        } else {
            let command = ControllerCommand::CreatePartitions {
                topics: proposed.clone(),
                validate_only,
            };
            match controller.commit(&command).await {
                Ok(ControllerResponse::CreatePartitions(results)) => results
                    .into_iter()
                    .filter_map(|r| {
                        let error = r.error.error()?;
                        Some((r.name, (error, r.error.message.unwrap_or_default())))
                    })
                    .collect(),
                Ok(other) => failed_all(
                    &proposed,
                    ResponseError::UnknownServerError,
                    format!("unexpected controller response {other:?}"),
                ),
                Err(e) => failed_all(&proposed, metadata_error_code(&e), e.to_string()),
            }
        };
        let results = names
            .into_iter()
            .map(|name| {
                let result = CreatePartitionsTopicResult::default().with_name(TopicName(name.clone()));
                match refused.get(name.as_str()).or_else(|| decided.get(name.as_str())) {
                    None => {
                        if !validate_only {
                            tracing::info!(topic = name.as_str(), "created partitions");
                        }
                        result
                    }
                    Some((error, message)) => {
                        tracing::debug!(topic = name.as_str(), %error, message, "create partitions refused");
                        result
                            .with_error_code(error.code())
                            .with_error_message(Some(StrBytes::from_string(message.clone())))
                    }
                }
            })
            .collect();
        CreatePartitionsResponse::default().with_results(results)
    }))
}

/// The same failure for every topic proposed (the quorum could not decide).
fn failed_all(
    proposed: &[NewPartitions],
    error: ResponseError,
    message: String,
) -> HashMap<String, Failure> {
    proposed
        .iter()
        .map(|t| (t.topic.clone(), (error, message.clone())))
        .collect()
}

/// A single node's CreatePartitions.
pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let over_limit = partition_limit_exceeded(apis, &request);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            let outcome = if let Some(message) = &over_limit {
                Err((ResponseError::PolicyViolation, message.clone()))
            } else if duplicates.contains(topic.name.0.as_str()) {
                Err((
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.".to_string(),
                ))
            } else {
                grow(apis, &topic, request.validate_only)
            };
            match outcome {
                Ok(()) => result,
                Err((error, message)) => {
                    tracing::debug!(topic = topic.name.0.as_str(), %error, message, "create partitions refused");
                    result
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

fn grow(apis: &Apis, request: &CreatePartitionsTopic, validate_only: bool) -> Result<(), Failure> {
    let name = request.name.0.as_str();
    let _serialised = apis.metadata.admin_guard();
    let topic = apis.metadata.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        )
    })?;
    if topic.is_internal() {
        // Groups are mapped to offsets-topic partitions by hash: a new count would lose their offsets.
        return Err((
            ResponseError::InvalidRequest,
            format!("Cannot change the number of partitions of the internal topic {name}."),
        ));
    }
    let current = topic.partition_count();
    if request.count < current {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "The topic {name} currently has {current} partition(s); {} would not be an increase.",
                request.count
            ),
        ));
    }
    if request.count == current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    let added = request.count - current;
    // A cluster's controller checks a manual assignment against the registered brokers.
    let in_cluster = apis.metadata.quorum().is_some();
    if let Some(assignments) = &request.assignments {
        if assignments.len() as i64 != i64::from(added) {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                ),
            ));
        }
        for (i, assignment) in assignments.iter().enumerate() {
            if in_cluster {
                break;
            }
            if assignment.broker_ids.len() != 1 || assignment.broker_ids[0].0 != apis.node_id {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Replica assignment for new partition {} must be exactly [{}], the only broker",
                        current + i as i32,
                        apis.node_id
                    ),
                ));
            }
        }
    }
    if validate_only {
        return Ok(());
    }
    // The replica manager opens the new partitions as the change is published (removing a directory an
    // earlier topic of this name left behind first).
    let assignments: Vec<Vec<i32>> = request
        .assignments
        .iter()
        .flatten()
        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
        .collect();
    let updated = apis
        .metadata
        .set_partitions_with(name, request.count, assignments)
        .map_err(|e| (metadata_error_code(&e), e.to_string()))?;
    tracing::info!(
        topic = name,
        from = current,
        to = updated.partition_count(),
        "created partitions"
    );
    Ok(())
}
