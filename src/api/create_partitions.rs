//! CreatePartitions: grows a topic's partition count. New partitions get empty logs at once; producers and
//! consumers see them at their next metadata refresh. A topic never shrinks, as in Kafka.

use crate::api::context::RequestContext;
use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::error::metadata_error_code;
use super::topics::MAX_PARTITIONS_PER_REQUEST;

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
