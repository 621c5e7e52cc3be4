//! AlterPartitionReassignments (KIP-455, v1 KIP-860) and ListPartitionReassignments: what
//! `kafka-reassign-partitions.sh` sends. A reassignment is a command of the metadata quorum: the target's new
//! replicas join as adding replicas, and once the ISR holds every target replica the leaving ones drop
//! (the leader's AlterPartition completes it); a `null` target cancels. The listing reads the reassignments
//! from this broker's applied copy of the controller state. A single brook has one replica of everything:
//! the only valid target is itself, and nothing is ever in flight.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::context::RequestContext;
use super::groups::Outcome;
use crate::controller::command::{
    ApiError, PartitionResult, ReassignablePartition, ReassignableTopic, TopicPartitionResults,
    TopicPartitions,
};
use crate::controller::{ControllerCommand, ControllerResponse};

pub fn alter_partition_reassignments(
    apis: &Apis,
    ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> Outcome<AlterPartitionReassignmentsResponse> {
    // v0 has no such field: Kafka reads it as true there (the replica count may change).
    let allow_rf_change = ctx.api_version < 1 || request.allow_replication_factor_change;
    let topics: Vec<ReassignableTopic> = request
        .topics
        .iter()
        .map(|t| ReassignableTopic {
            name: t.name.0.to_string(),
            partitions: t
                .partitions
                .iter()
                .map(|p| ReassignablePartition {
                    partition_index: p.partition_index,
                    replicas: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                })
                .collect(),
        })
        .collect();
    let version = ctx.api_version;
    let Some(controller) = apis.controller.clone() else {
        let results = single_node_alter(apis, &topics, allow_rf_change);
        return Outcome::Respond(alter_response(results, version, allow_rf_change));
    };
    let command = ControllerCommand::AlterPartitionReassignments {
        topics,
        allow_replication_factor_change: allow_rf_change,
    };
    Outcome::Wait(Box::pin(async move {
        let failed = |error: ApiError| {
            alter_response(Vec::new(), version, allow_rf_change)
                .with_error_code(error.error_code)
                .with_error_message(error.message.map(StrBytes::from_string))
        };
        match controller.commit(&command).await {
            Ok(ControllerResponse::AlterPartitionReassignments(results)) => {
                let started = results
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.error.is_ok())
                    .count();
                if started > 0 {
                    tracing::info!(partitions = started, "partition reassignments altered");
                }
                alter_response(results, version, allow_rf_change)
            }
            Ok(other) => failed(ApiError::new(
                ResponseError::UnknownServerError,
                format!("unexpected controller response {other:?}"),
            )),
            Err(e) => failed(ApiError::new(
                crate::api::error::metadata_error_code(&e),
                e.to_string(),
            )),
        }
    }))
}

/// A single node's answer, with the controller's checks for a cluster of one broker: a target other than
/// `[this broker]` names a broker that is not registered (or none, or one twice), a cancel finds nothing
/// in progress, and `[this broker]` itself is already in place.
fn single_node_alter(
    apis: &Apis,
    topics: &[ReassignableTopic],
    allow_rf_change: bool,
) -> Vec<TopicPartitionResults> {
    topics
        .iter()
        .map(|topic| {
            let image = apis.metadata.topic(&topic.name);
            TopicPartitionResults {
                topic: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| PartitionResult {
                        partition_id: p.partition_index,
                        error: match &image {
                            None => ApiError::new(
                                ResponseError::UnknownTopicOrPartition,
                                format!("Unable to find a topic named {}.", topic.name),
                            ),
                            Some(image) => single_node_target(
                                apis.node_id,
                                image,
                                p.partition_index,
                                p.replicas.as_deref(),
                                allow_rf_change,
                            )
                            .err()
                            .unwrap_or(ApiError::NONE),
                        },
                    })
                    .collect(),
            }
        })
        .collect()
}

fn single_node_target(
    node_id: i32,
    topic: &crate::cluster::TopicImage,
    partition: i32,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> Result<(), ApiError> {
    let current = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Unable to find partition {}:{partition}.", topic.name),
            )
        })?;
    let Some(target) = target else {
        return Err(ApiError::of(ResponseError::NoReassignmentInProgress));
    };
    let invalid = |m: String| ApiError::new(ResponseError::InvalidReplicaAssignment, m);
    if target.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    if let Some(&other) = target.iter().find(|&&b| b != node_id) {
        return Err(invalid(format!(
            "The manual partition assignment includes broker {other}, but no such broker is registered."
        )));
    }
    if target.len() > 1 {
        return Err(invalid(format!(
            "The manual partition assignment includes the broker {node_id} more than once."
        )));
    }
    if !allow_rf_change && target.len() != current.replicas.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "The replication factor is changed from {} to {}",
                current.replicas.len(),
                target.len()
            ),
        ));
    }
    Ok(())
}

fn alter_response(
    results: Vec<TopicPartitionResults>,
    version: i16,
    allow_rf_change: bool,
) -> AlterPartitionReassignmentsResponse {
    let response = AlterPartitionReassignmentsResponse::default().with_responses(
        results
            .into_iter()
            .map(|topic| {
                ReassignableTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_string(topic.topic)))
                    .with_partitions(
                        topic
                            .partitions
                            .into_iter()
                            .map(|p| {
                                ReassignablePartitionResponse::default()
                                    .with_partition_index(p.partition_id)
                                    .with_error_code(p.error.error_code)
                                    .with_error_message(
                                        p.error.failure_message().map(StrBytes::from_string),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    // v1 echoes whether the replica count could change (KIP-860); v0 must keep the field's default.
    if version >= 1 {
        response.with_allow_replication_factor_change(allow_rf_change)
    } else {
        response
    }
}

pub fn list_partition_reassignments(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let Some(controller) = &apis.controller else {
        return ListPartitionReassignmentsResponse::default();
    };
    let wanted: Option<Vec<TopicPartitions>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| TopicPartitions {
                topic: t.name.0.to_string(),
                partitions: t.partition_indexes.clone(),
            })
            .collect()
    });
    let ongoing = controller
        .state()
        .read()
        .list_partition_reassignments(wanted.as_deref());
    let brokers = |ids: Vec<i32>| ids.into_iter().map(BrokerId).collect::<Vec<_>>();
    ListPartitionReassignmentsResponse::default().with_topics(
        ongoing
            .into_iter()
            .map(|topic| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name)))
                    .with_partitions(
                        topic
                            .partitions
                            .into_iter()
                            .map(|p| {
                                OngoingPartitionReassignment::default()
                                    .with_partition_index(p.partition_index)
                                    .with_replicas(brokers(p.replicas))
                                    .with_adding_replicas(brokers(p.adding_replicas))
                                    .with_removing_replicas(brokers(p.removing_replicas))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition as Target, ReassignableTopic as Topic,
    };

    use super::*;

    fn alter(apis: &Apis, targets: Vec<(i32, Option<Vec<i32>>)>) -> Vec<i16> {
        let request = AlterPartitionReassignmentsRequest::default().with_topics(vec![
            Topic::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(
                    targets
                        .into_iter()
                        .map(|(p, r)| {
                            Target::default()
                                .with_partition_index(p)
                                .with_replicas(r.map(|r| r.into_iter().map(BrokerId).collect()))
                        })
                        .collect(),
                ),
        ]);
        let ctx = RequestContext::for_test(ApiKey::AlterPartitionReassignments, 1);
        let Outcome::Respond(response) = alter_partition_reassignments(apis, &ctx, request) else {
            panic!("a single node answers at once");
        };
        assert_eq!(response.error_code, 0);
        response.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect()
    }

    #[test]
    fn a_single_node_accepts_only_itself_and_has_nothing_to_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let apis = crate::api::test_apis(dir.path());
        apis.create_topic("orders", 1, BTreeMap::new()).unwrap();
        let codes = alter(
            &apis,
            vec![
                (0, Some(vec![1])),
                (0, Some(vec![2])),
                (0, Some(vec![1, 1])),
                (0, Some(vec![])),
                (0, None),
                (5, Some(vec![1])),
            ],
        );
        use ResponseError as E;
        assert_eq!(
            codes,
            vec![
                0,
                E::InvalidReplicaAssignment.code(),
                E::InvalidReplicaAssignment.code(),
                E::InvalidReplicaAssignment.code(),
                E::NoReassignmentInProgress.code(),
                E::UnknownTopicOrPartition.code(),
            ]
        );
        let listed = list_partition_reassignments(
            &apis,
            &RequestContext::for_test(ApiKey::ListPartitionReassignments, 0),
            &ListPartitionReassignmentsRequest::default(),
        );
        assert!(listed.topics.is_empty());
        apis.logs.shutdown().unwrap();
    }
}
