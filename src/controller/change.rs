//! The broker's [`MetadataChange`]s as controller commands, and the controller's answers as the store's
//! results: the glue a [`crate::cluster::MetadataWriter`] needs in a cluster.

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::command::{
    ApiError, BrokerConfigScope, ControllerCommand, ControllerResponse, NewPartitions, NewTopic,
    ReplicaAssignment, TopicRef,
};
use crate::cluster::MetadataError;
use crate::cluster::metadata_store::MetadataChange;

impl From<ApiError> for MetadataError {
    fn from(error: ApiError) -> MetadataError {
        let kind = error.error().unwrap_or(ResponseError::UnknownServerError);
        MetadataError::Controller {
            error: kind,
            message: error.message.unwrap_or_else(|| kind.to_string()),
        }
    }
}

impl ControllerCommand {
    /// The command for `change`. A new topic gets `topic_id` (the proposer's random choice, so the state
    /// machine stays deterministic) and, when its replication factor is -1, `default_replication_factor`.
    pub fn from_change(
        change: MetadataChange,
        topic_id: Uuid,
        default_replication_factor: i16,
    ) -> ControllerCommand {
        match change {
            MetadataChange::CreateTopic {
                name,
                partitions,
                replication_factor,
                assignments,
                configs,
            } => {
                let manual = !assignments.is_empty();
                ControllerCommand::CreateTopics {
                    topics: vec![NewTopic {
                        name,
                        topic_id,
                        num_partitions: if manual { -1 } else { partitions },
                        replication_factor: match (manual, replication_factor) {
                            (true, _) => -1,
                            (false, -1) => default_replication_factor,
                            (false, factor) => factor,
                        },
                        assignments: assignments
                            .into_iter()
                            .enumerate()
                            .map(|(i, broker_ids)| ReplicaAssignment {
                                partition_index: i as i32,
                                broker_ids,
                            })
                            .collect(),
                        configs,
                    }],
                    validate_only: false,
                }
            }
            MetadataChange::DeleteTopic { name } => ControllerCommand::DeleteTopics {
                topics: vec![TopicRef::Name(name)],
            },
            MetadataChange::SetTopicConfigs { name, configs } => {
                ControllerCommand::AlterTopicConfigs {
                    topic: name,
                    configs,
                }
            }
            MetadataChange::SetPartitions {
                name,
                partitions,
                assignments,
            } => ControllerCommand::CreatePartitions {
                topics: vec![NewPartitions {
                    topic: name,
                    count: partitions,
                    assignments: (!assignments.is_empty()).then_some(assignments),
                }],
                validate_only: false,
            },
            MetadataChange::BumpLeaderEpoch { name, partition } => {
                ControllerCommand::BumpLeaderEpoch {
                    topic: name,
                    partition,
                }
            }
            MetadataChange::BrokerConfigs { broker, configs } => {
                ControllerCommand::AlterBrokerConfigs {
                    scope: broker
                        .map_or(BrokerConfigScope::ClusterDefault, BrokerConfigScope::Broker),
                    configs,
                }
            }
            MetadataChange::GroupConfigs { group, configs } => {
                ControllerCommand::AlterGroupConfigs { group, configs }
            }
        }
    }
}

impl ControllerResponse {
    /// The first refusal in the answer, if any (a store change names one resource).
    pub fn first_error(&self) -> Option<ApiError> {
        let refused = |e: &ApiError| (!e.is_ok()).then(|| e.clone());
        match self {
            ControllerResponse::InitializeCluster { .. } => None,
            ControllerResponse::ImportSingleNode(r)
            | ControllerResponse::FenceBroker(r)
            | ControllerResponse::UnfenceBroker(r)
            | ControllerResponse::UnregisterBroker(r)
            | ControllerResponse::AlterTopicConfigs(r)
            | ControllerResponse::AlterBrokerConfigs(r)
            | ControllerResponse::AlterGroupConfigs(r)
            | ControllerResponse::SetControllerStaticConfigs(r) => r.clone().err(),
            ControllerResponse::RegisterBroker(r) => r.clone().err(),
            ControllerResponse::BeginControlledShutdown(r) => r.clone().err(),
            ControllerResponse::AllocateProducerIds(r) => r.clone().err(),
            ControllerResponse::BumpLeaderEpoch(r) => r.clone().err(),
            ControllerResponse::CreateTopics(results) => {
                results.iter().find_map(|t| t.result.clone().err())
            }
            ControllerResponse::DeleteTopics(results) => {
                results.iter().find_map(|t| refused(&t.error))
            }
            ControllerResponse::CreatePartitions(results) => {
                results.iter().find_map(|t| refused(&t.error))
            }
            ControllerResponse::ElectLeaders(results)
            | ControllerResponse::AlterPartitionReassignments(results) => results
                .iter()
                .flat_map(|t| &t.partitions)
                .find_map(|p| refused(&p.error)),
            ControllerResponse::AlterPartition(r) => match r {
                Err(e) => Some(e.clone()),
                Ok(topics) => topics.iter().flat_map(|t| &t.partitions).find_map(|p| {
                    (p.error_code != 0).then_some(ApiError {
                        error_code: p.error_code,
                        message: None,
                    })
                }),
            },
            ControllerResponse::Undecodable(e) => Some(e.clone()),
        }
    }

    /// The answer to a store change about `topic` (empty for configs) as the store's result: a topic that
    /// exists or is unknown, or an illegal name, keep the store's own variants, which the API layer matches
    /// on (auto-creation racing another client); anything else is the controller's code and message.
    pub fn into_store_result(self, topic: &str) -> Result<(), MetadataError> {
        let Some(error) = self.first_error() else {
            return Ok(());
        };
        Err(match error.error() {
            Some(ResponseError::TopicAlreadyExists) => MetadataError::TopicExists(topic.into()),
            Some(ResponseError::UnknownTopicOrPartition) => {
                MetadataError::UnknownTopic(topic.into())
            }
            Some(ResponseError::InvalidTopicException) => {
                MetadataError::InvalidTopic(error.message.unwrap_or_default())
            }
            _ => error.into(),
        })
    }

    /// The answer as the store's result.
    pub fn into_result(self) -> Result<(), MetadataError> {
        match self.first_error() {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ControllerState;
    use std::collections::BTreeMap;

    #[test]
    fn store_changes_become_commands_and_answers_become_results() {
        let mut state = ControllerState::new();
        let mut index = 0;
        let mut apply = |state: &mut ControllerState, command: ControllerCommand| {
            index += 1;
            state.apply(index, &command).response
        };
        apply(
            &mut state,
            ControllerCommand::InitializeCluster {
                cluster_id: "c".into(),
            },
        );
        for id in [1, 2] {
            apply(
                &mut state,
                ControllerCommand::RegisterBroker {
                    broker_id: id,
                    incarnation_id: Uuid::from_u128(id as u128),
                    cluster_id: "c".into(),
                    endpoints: Vec::new(),
                    rack: None,
                    previous_broker_epoch: -1,
                },
            );
            let broker_epoch = state.broker(id).unwrap().epoch;
            apply(
                &mut state,
                ControllerCommand::UnfenceBroker {
                    broker_id: id,
                    broker_epoch,
                },
            );
        }
        let create = |rf: i16| MetadataChange::CreateTopic {
            name: "orders".into(),
            partitions: 3,
            replication_factor: rf,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        };
        let created = apply(
            &mut state,
            ControllerCommand::from_change(create(-1), Uuid::from_u128(7), 2),
        );
        assert!(created.into_result().is_ok());
        assert_eq!(
            state.topic("orders").unwrap().partitions[0].replicas.len(),
            2,
            "the default factor"
        );

        let again = apply(
            &mut state,
            ControllerCommand::from_change(create(1), Uuid::from_u128(8), 2),
        );
        let Err(MetadataError::Controller { error, message }) = again.into_result() else {
            panic!("created twice");
        };
        assert_eq!(error, ResponseError::TopicAlreadyExists);
        assert_eq!(message, "Topic 'orders' already exists.");

        let grow = MetadataChange::SetPartitions {
            name: "orders".into(),
            partitions: 4,
            assignments: vec![vec![2, 1]],
        };
        assert!(
            apply(
                &mut state,
                ControllerCommand::from_change(grow, Uuid::nil(), 2)
            )
            .into_result()
            .is_ok()
        );
        assert_eq!(
            state.topic("orders").unwrap().partitions[3].replicas,
            vec![2, 1]
        );

        let configs = MetadataChange::BrokerConfigs {
            broker: Some(2),
            configs: BTreeMap::from([("log.retention.ms".into(), "1".into())]),
        };
        assert!(
            apply(
                &mut state,
                ControllerCommand::from_change(configs, Uuid::nil(), 2)
            )
            .into_result()
            .is_ok()
        );
        assert_eq!(state.dynamic_configs(2).broker["log.retention.ms"], "1");

        let delete = MetadataChange::DeleteTopic {
            name: "nope".into(),
        };
        let Err(MetadataError::Controller { error, .. }) = apply(
            &mut state,
            ControllerCommand::from_change(delete, Uuid::nil(), 2),
        )
        .into_result() else {
            panic!("deleted a missing topic");
        };
        assert_eq!(error, ResponseError::UnknownTopicOrPartition);
    }
}
