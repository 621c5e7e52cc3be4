//! The partition leaders' side of AlterPartition (Kafka's `AlterPartitionManager`): a batch of ISR changes
//! from this broker's replica manager, committed as one command through the metadata quorum, each answered
//! with its partition's result. The image applied by the time the commit returns already holds every
//! accepted change.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::command::{
    AlterPartitionData, AlterPartitionTopic, BrokerState, ControllerCommand, ControllerResponse,
};
use super::quorum_controller::QuorumController;
use super::records::LeaderRecoveryState;
use crate::replica::IsrProposal;
use crate::replica::manager::{AlterPartitionManager, IsrAnswers};

/// Sends this broker's ISR changes to the quorum.
pub struct QuorumAlterPartition {
    pub controller: Arc<QuorumController>,
    pub node_id: i32,
}

impl AlterPartitionManager for QuorumAlterPartition {
    fn submit(&self, proposals: Vec<IsrProposal>) -> IsrAnswers {
        let controller = self.controller.clone();
        let node_id = self.node_id;
        Box::pin(async move {
            let broker_epoch = controller.broker_epoch();
            let command = command(node_id, broker_epoch, &proposals);
            match controller.commit(&command).await {
                Ok(ControllerResponse::AlterPartition(Ok(topics))) => {
                    let answers: BTreeMap<(Uuid, i32), i16> = topics
                        .iter()
                        .flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(|p| ((t.topic_id, p.partition_index), p.error_code))
                        })
                        .collect();
                    proposals
                        .iter()
                        .map(
                            |p| match answers.get(&(p.topic_id, p.tp.partition)).copied() {
                                Some(0) => Ok(()),
                                Some(code) => Err(ResponseError::try_from_code(code)
                                    .unwrap_or(ResponseError::UnknownServerError)),
                                None => Err(ResponseError::UnknownServerError),
                            },
                        )
                        .collect()
                }
                Ok(ControllerResponse::AlterPartition(Err(error))) => {
                    let error = ResponseError::try_from_code(error.error_code)
                        .unwrap_or(ResponseError::UnknownServerError);
                    vec![Err(error); proposals.len()]
                }
                Ok(_) => vec![Err(ResponseError::UnknownServerError); proposals.len()],
                Err(error) => {
                    tracing::debug!(%error, "AlterPartition not committed");
                    vec![Err(error.response_error()); proposals.len()]
                }
            }
        })
    }
}

/// One AlterPartition for the batch, grouped by topic; the leader's own ISR entry carries its broker epoch.
fn command(node_id: i32, broker_epoch: i64, proposals: &[IsrProposal]) -> ControllerCommand {
    let mut topics: BTreeMap<Uuid, Vec<AlterPartitionData>> = BTreeMap::new();
    for p in proposals {
        topics
            .entry(p.topic_id)
            .or_default()
            .push(AlterPartitionData {
                partition_index: p.tp.partition,
                leader_epoch: p.leader_epoch,
                new_isr_with_epochs: p
                    .new_isr
                    .iter()
                    .map(|&(broker_id, epoch)| BrokerState {
                        broker_id,
                        broker_epoch: if broker_id == node_id {
                            broker_epoch
                        } else {
                            epoch
                        },
                    })
                    .collect(),
                // A leader elected uncleanly has recovered once it asks to grow its ISR (KIP-704).
                leader_recovery_state: LeaderRecoveryState::Recovered,
                partition_epoch: p.partition_epoch,
            });
    }
    ControllerCommand::AlterPartition {
        broker_id: node_id,
        broker_epoch,
        topics: topics
            .into_iter()
            .map(|(topic_id, partitions)| AlterPartitionTopic {
                topic_id,
                partitions,
            })
            .collect(),
    }
}
