//! A partition leader's ISR change (Kafka's `ReplicationControlManager.alterPartition`, AlterPartition v2+):
//! the leader shrinks the ISR when followers lag and expands it when they catch up; an expansion that puts
//! every adding replica in sync completes a reassignment, which may move the leadership away
//! (NEW_LEADER_ELECTED, with the change written all the same).

use kafka_protocol::ResponseError;

use super::command::{
    AlterPartitionData, AlterPartitionResult, AlterPartitionTopic, AlterPartitionTopicResult,
    ApiError,
};
use super::partition_change::{Election, PartitionChangeBuilder};
use super::records::{LeaderRecoveryState, MetadataRecord, NO_LEADER_CHANGE};
use super::replication_control::MAX_PARTITIONS_PER_REQUEST;
use super::state::{ControllerState, PartitionState, TopicState, Writer};

impl Writer<'_> {
    pub(super) fn alter_partition(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        topics: &[AlterPartitionTopic],
    ) -> Result<Vec<AlterPartitionTopicResult>, ApiError> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let named: usize = topics.iter().map(|t| t.partitions.len()).sum();
        if named > MAX_PARTITIONS_PER_REQUEST as usize {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Too many partitions in one request.",
            ));
        }
        Ok(topics
            .iter()
            .map(|topic| AlterPartitionTopicResult {
                topic_id: topic.topic_id,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|data| {
                        self.alter_one(broker_id, topic, data)
                            .unwrap_or_else(|error| refused(data.partition_index, error))
                    })
                    .collect(),
            })
            .collect())
    }

    fn alter_one(
        &mut self,
        broker_id: i32,
        topic: &AlterPartitionTopic,
        data: &AlterPartitionData,
    ) -> Result<AlterPartitionResult, ResponseError> {
        let record = {
            let state = &*self.state;
            let topic_state = state
                .topic_by_id(topic.topic_id)
                .ok_or(ResponseError::UnknownTopicId)?;
            let partition = usize::try_from(data.partition_index)
                .ok()
                .and_then(|i| topic_state.partitions.get(i))
                .ok_or(ResponseError::UnknownTopicOrPartition)?;
            state.validate_alter_partition(broker_id, partition, data)?;
            let acceptable = |r: i32| state.is_active(r);
            let election = if state.unclean_election_enabled(&topic_state.name) {
                Election::Unclean
            } else {
                Election::Online
            };
            PartitionChangeBuilder::new(
                partition,
                topic.topic_id,
                data.partition_index,
                &acceptable,
                state.min_isr(topic_state),
            )
            .election(election)
            .target_isr(
                data.new_isr_with_epochs
                    .iter()
                    .map(|b| b.broker_id)
                    .collect(),
            )
            .target_leader_recovery_state(data.leader_recovery_state)
            .build()
        };
        if let Some(record) = record {
            let moved = record.leader != NO_LEADER_CHANGE && record.leader != broker_id;
            self.write(MetadataRecord::PartitionChange(record));
            if moved {
                // Completing a reassignment moved the leadership: the old leader must refresh first.
                return Err(ResponseError::NewLeaderElected);
            }
        }
        let topic_state: &TopicState = &self.state.topics[&topic.topic_id];
        let p = &topic_state.partitions[data.partition_index as usize];
        Ok(AlterPartitionResult {
            partition_index: data.partition_index,
            error_code: 0,
            leader_id: p.leader,
            leader_epoch: p.leader_epoch,
            isr: p.isr.clone(),
            leader_recovery_state: p.leader_recovery_state,
            partition_epoch: p.partition_epoch,
        })
    }
}

impl ControllerState {
    /// Kafka's `validateAlterPartitionData`, in its order.
    fn validate_alter_partition(
        &self,
        broker_id: i32,
        partition: &PartitionState,
        data: &AlterPartitionData,
    ) -> Result<(), ResponseError> {
        // Newer epochs than ours: this node is probably no longer the active controller.
        if data.leader_epoch > partition.leader_epoch
            || data.partition_epoch > partition.partition_epoch
        {
            return Err(ResponseError::NotController);
        }
        if data.leader_epoch < partition.leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if broker_id != partition.leader {
            return Err(ResponseError::InvalidRequest);
        }
        if data.partition_epoch < partition.partition_epoch {
            return Err(ResponseError::InvalidUpdateVersion);
        }
        let isr: Vec<i32> = data
            .new_isr_with_epochs
            .iter()
            .map(|b| b.broker_id)
            .collect();
        let mut distinct = isr.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if isr.is_empty()
            || distinct.len() != isr.len()
            || !isr.iter().all(|r| partition.replicas.contains(r))
            || !isr.contains(&partition.leader)
        {
            return Err(ResponseError::InvalidRequest);
        }
        if data.leader_recovery_state == LeaderRecoveryState::Recovering && isr.len() > 1 {
            return Err(ResponseError::InvalidRequest);
        }
        if partition.leader_recovery_state == LeaderRecoveryState::Recovered
            && data.leader_recovery_state == LeaderRecoveryState::Recovering
        {
            return Err(ResponseError::InvalidRequest);
        }
        // KIP-841 / KIP-903: only registered, unfenced, not shutting down brokers of the current
        // incarnation may join.
        let eligible = data.new_isr_with_epochs.iter().all(|member| {
            self.broker(member.broker_id).is_some_and(|b| {
                b.is_active() && (member.broker_epoch == -1 || member.broker_epoch == b.epoch)
            })
        });
        if !eligible {
            return Err(ResponseError::IneligibleReplica);
        }
        Ok(())
    }
}

fn refused(partition_index: i32, error: ResponseError) -> AlterPartitionResult {
    AlterPartitionResult {
        partition_index,
        error_code: error.code(),
        leader_id: -1,
        leader_epoch: -1,
        isr: Vec::new(),
        leader_recovery_state: LeaderRecoveryState::Recovered,
        partition_epoch: -1,
    }
}
