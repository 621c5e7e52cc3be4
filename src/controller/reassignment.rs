//! AlterPartitionReassignments and ListPartitionReassignments (Kafka's `ReplicationControlManager`,
//! `PartitionReassignmentReplicas`, `PartitionReassignmentRevert`): a reassignment adds the target's new
//! replicas next to the current ones; it completes once the ISR holds every target replica (at once when
//! it already does, else through the leader's AlterPartition), and a cancel goes back to the replicas
//! that were there before.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::command::{
    ApiError, OngoingPartitionReassignment, OngoingTopicReassignment, PartitionResult,
    ReassignableTopic, TopicPartitionResults, TopicPartitions,
};
use super::partition_change::{Election, PartitionChangeBuilder};
use super::records::{MetadataRecord, PartitionChangeRecord};
use super::replication_control::MAX_PARTITIONS_PER_REQUEST;
use super::state::{ControllerState, PartitionState, TopicState, Writer};

impl Writer<'_> {
    /// Kafka's `alterPartitionReassignments`: per partition, start (or change) a reassignment to the given
    /// replicas, or cancel the one in progress.
    pub(super) fn alter_partition_reassignments(
        &mut self,
        topics: &[ReassignableTopic],
        allow_replication_factor_change: bool,
    ) -> Vec<TopicPartitionResults> {
        let mut budget = MAX_PARTITIONS_PER_REQUEST as usize;
        topics
            .iter()
            .map(|topic| TopicPartitionResults {
                topic: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|target| PartitionResult {
                        partition_id: target.partition_index,
                        error: if budget == 0 {
                            ApiError::new(
                                ResponseError::PolicyViolation,
                                "Too many partitions in one request.",
                            )
                        } else {
                            budget -= 1;
                            self.alter_partition_reassignment(
                                &topic.name,
                                target.partition_index,
                                target.replicas.as_deref(),
                                allow_replication_factor_change,
                            )
                            .err()
                            .unwrap_or(ApiError::NONE)
                        },
                    })
                    .collect(),
            })
            .collect()
    }

    fn alter_partition_reassignment(
        &mut self,
        topic_name: &str,
        partition_id: i32,
        target: Option<&[i32]>,
        allow_replication_factor_change: bool,
    ) -> Result<(), ApiError> {
        let record = {
            let state = &*self.state;
            let topic = state.topic(topic_name).ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Unable to find a topic named {topic_name}."),
                )
            })?;
            let partition = usize::try_from(partition_id)
                .ok()
                .and_then(|i| topic.partitions.get(i))
                .ok_or_else(|| {
                    ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("Unable to find partition {topic_name}:{partition_id}."),
                    )
                })?;
            let acceptable = |r: i32| state.is_active(r);
            let builder = PartitionChangeBuilder::new(
                partition,
                topic.id,
                partition_id,
                &acceptable,
                state.min_isr(topic),
            );
            match target {
                None => state.cancel_reassignment(topic_name, partition_id, partition, builder)?,
                Some(target) => {
                    state.validate_manual_assignment(target, None)?;
                    // KIP-860: the target must be as long as the replica set the partition is headed for.
                    let heading = partition
                        .replicas
                        .iter()
                        .filter(|r| !partition.removing_replicas.contains(r))
                        .count();
                    if !allow_replication_factor_change && target.len() != heading {
                        return Err(ApiError::new(
                            ResponseError::InvalidReplicationFactor,
                            format!(
                                "The replication factor is changed from {heading} to {}",
                                target.len()
                            ),
                        ));
                    }
                    // Kafka's `PartitionReassignmentReplicas`, from the current replicas (an ongoing
                    // reassignment's included) to the target: the target first, then those leaving.
                    let current = &partition.replicas;
                    let removing: Vec<i32> = current
                        .iter()
                        .copied()
                        .filter(|r| !target.contains(r))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let adding: Vec<i32> = target
                        .iter()
                        .copied()
                        .filter(|r| !current.contains(r))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let mut replicas = target.to_vec();
                    replicas.extend(&removing);
                    builder
                        .target_replicas(replicas)
                        .target_removing(removing)
                        .target_adding(adding)
                        .build()
                }
            }
        };
        if let Some(record) = record {
            self.write(MetadataRecord::PartitionChange(record));
        }
        Ok(())
    }
}

impl ControllerState {
    /// Kafka's `cancelPartitionReassignment` with `PartitionReassignmentRevert`: back to the original
    /// replicas, the adding ones out of the ISR.
    fn cancel_reassignment(
        &self,
        topic_name: &str,
        partition_id: i32,
        partition: &PartitionState,
        builder: PartitionChangeBuilder<'_>,
    ) -> Result<Option<PartitionChangeRecord>, ApiError> {
        if !partition.is_reassigning() {
            return Err(ApiError::of(ResponseError::NoReassignmentInProgress));
        }
        let replicas: Vec<i32> = partition
            .replicas
            .iter()
            .copied()
            .filter(|r| !partition.adding_replicas.contains(r))
            .collect();
        let mut isr: Vec<i32> = partition
            .isr
            .iter()
            .copied()
            .filter(|r| !partition.adding_replicas.contains(r))
            .collect();
        let unclean = self.unclean_election_enabled(topic_name);
        if isr.is_empty() {
            if !unclean {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Unable to revert partition assignment for {topic_name}:{partition_id} because it would require an unclean leader election."
                    ),
                ));
            }
            isr.push(replicas[0]);
        }
        Ok(builder
            .election(if unclean {
                Election::Unclean
            } else {
                Election::Online
            })
            .target_isr(isr)
            .target_replicas(replicas)
            .target_removing(Vec::new())
            .target_adding(Vec::new())
            .build())
    }

    /// ListPartitionReassignments: every reassigning partition (`None`), or those of the named partitions.
    pub fn list_partition_reassignments(
        &self,
        topics: Option<&[TopicPartitions]>,
    ) -> Vec<OngoingTopicReassignment> {
        let describe = |topic: &TopicState, ids: &mut dyn Iterator<Item = i32>| {
            let partitions: Vec<OngoingPartitionReassignment> = ids
                .filter_map(|i| {
                    let p = topic.partitions.get(usize::try_from(i).ok()?)?;
                    p.is_reassigning().then(|| OngoingPartitionReassignment {
                        partition_index: i,
                        replicas: p.replicas.clone(),
                        adding_replicas: p.adding_replicas.clone(),
                        removing_replicas: p.removing_replicas.clone(),
                    })
                })
                .collect();
            (!partitions.is_empty()).then(|| OngoingTopicReassignment {
                name: topic.name.clone(),
                partitions,
            })
        };
        match topics {
            None => self
                .topics_by_name
                .values()
                .filter_map(|id| {
                    let topic = &self.topics[id];
                    describe(topic, &mut (0..topic.partitions.len() as i32))
                })
                .collect(),
            Some(wanted) => wanted
                .iter()
                .filter_map(|w| {
                    let topic = self.topic(&w.topic)?;
                    describe(topic, &mut w.partitions.iter().copied())
                })
                .collect(),
        }
    }
}
