//! ElectLeaders (KIP-460): what `kafka-leader-election.sh` sends. A PREFERRED election hands each
//! partition back to its first replica when that one is in sync and alive; an UNCLEAN one (v1+) gives a
//! leaderless partition any live replica, in sync or not (data loss is possible, so only an operator asks;
//! `unclean.leader.election.enable` governs the controller's own elections, not this request). In a cluster
//! the election is a command of the metadata quorum, answered once this broker applied it; a single brook
//! leads every partition it has, so there an election is never needed.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::context::RequestContext;
use super::groups::Outcome;
use crate::cluster::TopicImage;
use crate::controller::command::{ApiError, ElectionType, TopicPartitionResults, TopicPartitions};
use crate::controller::{ControllerCommand, ControllerResponse};

pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    request: ElectLeadersRequest,
) -> Outcome<ElectLeadersResponse> {
    let version = ctx.api_version;
    let election_type = match request.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        other => {
            return Outcome::Respond(error_response(
                &request,
                version,
                &ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown election type {other}"),
                ),
            ));
        }
    };
    let partitions: Option<Vec<TopicPartitions>> = request.topic_partitions.as_ref().map(|t| {
        t.iter()
            .map(|t| TopicPartitions {
                topic: t.topic.0.to_string(),
                partitions: t.partitions.clone(),
            })
            .collect()
    });
    let Some(controller) = apis.controller.clone() else {
        let results = single_node(apis, election_type, partitions.as_deref());
        return Outcome::Respond(response(results));
    };
    let command = ControllerCommand::ElectLeaders {
        election_type,
        partitions,
    };
    Outcome::Wait(Box::pin(async move {
        match controller.commit(&command).await {
            Ok(ControllerResponse::ElectLeaders(results)) => {
                log_elections(election_type, &results);
                response(results)
            }
            Ok(other) => error_response(
                &request,
                version,
                &ApiError::new(
                    ResponseError::UnknownServerError,
                    format!("unexpected controller response {other:?}"),
                ),
            ),
            Err(e) => error_response(
                &request,
                version,
                &ApiError::new(crate::api::error::metadata_error_code(&e), e.to_string()),
            ),
        }
    }))
}

/// A single node's answer, by Kafka's rules over its image: every partition it has is led by its only
/// replica, so an election is not needed (and, for every partition, left out).
fn single_node(
    apis: &Apis,
    election_type: ElectionType,
    partitions: Option<&[TopicPartitions]>,
) -> Vec<TopicPartitionResults> {
    let not_needed = ResponseError::ElectionNotNeeded.code();
    match partitions {
        None => apis
            .metadata
            .topics()
            .iter()
            .map(|topic| TopicPartitionResults {
                topic: topic.name.clone(),
                partitions: (0..topic.partition_count())
                    .map(|p| crate::controller::command::PartitionResult {
                        partition_id: p,
                        error: elect_in_image(topic, p, election_type),
                    })
                    .filter(|r| r.error.error_code != not_needed)
                    .collect(),
            })
            .collect(),
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                let topic = apis.metadata.topic(&w.topic);
                TopicPartitionResults {
                    topic: w.topic.clone(),
                    partitions: w
                        .partitions
                        .iter()
                        .map(|&p| crate::controller::command::PartitionResult {
                            partition_id: p,
                            error: match &topic {
                                Some(topic) => elect_in_image(topic, p, election_type),
                                None => ApiError::new(
                                    ResponseError::UnknownTopicOrPartition,
                                    format!("No such topic as {}", w.topic),
                                ),
                            },
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// One partition's election on a single node, which cannot move a leadership anywhere.
fn elect_in_image(topic: &TopicImage, partition: i32, election_type: ElectionType) -> ApiError {
    let Some(p) = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("No such partition as {}-{partition}", topic.name),
        );
    };
    let needed = match election_type {
        ElectionType::Preferred => p.replicas.first() != Some(&p.leader),
        ElectionType::Unclean => p.leader < 0,
    };
    ApiError::of(match (needed, election_type) {
        (false, _) => ResponseError::ElectionNotNeeded,
        (true, ElectionType::Preferred) => ResponseError::PreferredLeaderNotAvailable,
        (true, ElectionType::Unclean) => ResponseError::EligibleLeadersNotAvailable,
    })
}

fn log_elections(election_type: ElectionType, results: &[TopicPartitionResults]) {
    let elected = results
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.error.is_ok())
        .count();
    if elected > 0 {
        tracing::info!(?election_type, elected, "elected leaders");
    }
}

fn response(results: Vec<TopicPartitionResults>) -> ElectLeadersResponse {
    ElectLeadersResponse::default().with_replica_election_results(
        results
            .into_iter()
            .map(|topic| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.topic)))
                    .with_partition_result(
                        topic
                            .partitions
                            .into_iter()
                            .map(|p| {
                                PartitionResult::default()
                                    .with_partition_id(p.partition_id)
                                    .with_error_code(p.error.error_code)
                                    .with_error_message(
                                        p.error.failure_message().map(StrBytes::from_string),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Kafka's `ElectLeadersRequest.getErrorResponse`: the error on every partition named, and at the top from
/// v1 (v0 has no top-level error).
fn error_response(
    request: &ElectLeadersRequest,
    version: i16,
    error: &ApiError,
) -> ElectLeadersResponse {
    let results = request
        .topic_partitions
        .iter()
        .flatten()
        .map(|topic| TopicPartitionResults {
            topic: topic.topic.0.to_string(),
            partitions: topic
                .partitions
                .iter()
                .map(|&p| crate::controller::command::PartitionResult {
                    partition_id: p,
                    error: error.clone(),
                })
                .collect(),
        })
        .collect();
    let response = response(results);
    if version >= 1 {
        response.with_error_code(error.error_code)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions as Wanted;

    use super::*;

    fn elect(apis: &Apis, version: i16, request: ElectLeadersRequest) -> ElectLeadersResponse {
        let ctx = RequestContext::for_test(ApiKey::ElectLeaders, version);
        match handle(apis, &ctx, request) {
            Outcome::Respond(response) => response,
            Outcome::Wait(_) => panic!("a single node answers at once"),
        }
    }

    fn wanted(topic: &str, partitions: &[i32]) -> Wanted {
        Wanted::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(partitions.to_vec())
    }

    #[test]
    fn a_single_node_needs_no_election_and_knows_its_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let apis = crate::api::test_apis(dir.path());
        apis.create_topic("orders", 2, BTreeMap::new()).unwrap();
        for election_type in [0, 1] {
            let response = elect(
                &apis,
                2,
                ElectLeadersRequest::default()
                    .with_election_type(election_type)
                    .with_topic_partitions(Some(vec![
                        wanted("orders", &[0, 1, 2]),
                        wanted("missing", &[0]),
                    ])),
            );
            let codes: Vec<Vec<i16>> = response
                .replica_election_results
                .iter()
                .map(|t| t.partition_result.iter().map(|p| p.error_code).collect())
                .collect();
            let not_needed = ResponseError::ElectionNotNeeded.code();
            let unknown = ResponseError::UnknownTopicOrPartition.code();
            assert_eq!(
                codes,
                vec![vec![not_needed, not_needed, unknown], vec![unknown]]
            );
        }
        // Every partition: the ones needing no election are left out, the topics are listed.
        let response = elect(
            &apis,
            1,
            ElectLeadersRequest::default().with_topic_partitions(None),
        );
        assert_eq!(response.replica_election_results.len(), 1);
        assert!(
            response.replica_election_results[0]
                .partition_result
                .is_empty()
        );
        apis.logs.shutdown().unwrap();
    }

    #[test]
    fn an_unknown_election_type_fails_every_partition_named() {
        let dir = tempfile::tempdir().unwrap();
        let apis = crate::api::test_apis(dir.path());
        let response = elect(
            &apis,
            2,
            ElectLeadersRequest::default()
                .with_election_type(7)
                .with_topic_partitions(Some(vec![wanted("orders", &[0])])),
        );
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(response.error_code, invalid);
        assert_eq!(
            response.replica_election_results[0].partition_result[0].error_code,
            invalid
        );
        apis.logs.shutdown().unwrap();
    }
}
