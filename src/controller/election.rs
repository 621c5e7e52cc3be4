//! ElectLeaders (Kafka's `ReplicationControlManager.electLeaders`): a preferred election moves leadership
//! back to each partition's first replica when it is in sync and active; an unclean one gives a leaderless
//! partition any live replica, in sync or not.

use kafka_protocol::ResponseError;

use super::command::{
    ApiError, ElectionType, PartitionResult, TopicPartitionResults, TopicPartitions,
};
use super::partition_change::{Election, PartitionChangeBuilder};
use super::records::MetadataRecord;
use super::state::{ControllerState, NO_LEADER, Writer};

impl Writer<'_> {
    /// Kafka's `electLeaders`. With every partition asked for, those needing no election are left out.
    pub(super) fn elect_leaders(
        &mut self,
        election_type: ElectionType,
        partitions: Option<&[TopicPartitions]>,
    ) -> Vec<TopicPartitionResults> {
        let all;
        let (wanted, omit_not_needed) = match partitions {
            Some(wanted) => (wanted, false),
            None => {
                all = self
                    .state
                    .topics_by_name
                    .iter()
                    .map(|(name, id)| TopicPartitions {
                        topic: name.clone(),
                        partitions: (0..self.state.topics[id].partitions.len() as i32).collect(),
                    })
                    .collect::<Vec<_>>();
                (all.as_slice(), true)
            }
        };
        let not_needed = ResponseError::ElectionNotNeeded.code();
        // Each partition named makes at most one record: the request's own size bounds the command's.
        wanted
            .iter()
            .map(|topic| TopicPartitionResults {
                topic: topic.topic.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|&partition_id| PartitionResult {
                        partition_id,
                        error: self.elect_leader(&topic.topic, partition_id, election_type),
                    })
                    .filter(|r| !(omit_not_needed && r.error.error_code == not_needed))
                    .collect(),
            })
            .collect()
    }

    fn elect_leader(
        &mut self,
        topic: &str,
        partition_id: i32,
        election_type: ElectionType,
    ) -> ApiError {
        let record = {
            let state = &*self.state;
            let Some(topic_state) = state.topic(topic) else {
                return ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("No such topic as {topic}"),
                );
            };
            let Some(partition) = usize::try_from(partition_id)
                .ok()
                .and_then(|i| topic_state.partitions.get(i))
            else {
                return ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("No such partition as {topic}-{partition_id}"),
                );
            };
            let needed = match election_type {
                ElectionType::Preferred => partition.replicas.first() != Some(&partition.leader),
                ElectionType::Unclean => partition.leader == NO_LEADER,
            };
            if !needed {
                return ApiError::of(ResponseError::ElectionNotNeeded);
            }
            let acceptable = |r: i32| state.is_active(r);
            PartitionChangeBuilder::new(
                partition,
                topic_state.id,
                partition_id,
                &acceptable,
                state.min_isr(topic_state),
            )
            .election(match election_type {
                ElectionType::Preferred => Election::Preferred,
                ElectionType::Unclean => Election::Unclean,
            })
            .build()
        };
        match record {
            Some(record) => {
                self.write(MetadataRecord::PartitionChange(record));
                ApiError::NONE
            }
            None => ApiError::of(match election_type {
                ElectionType::Preferred => ResponseError::PreferredLeaderNotAvailable,
                ElectionType::Unclean => ResponseError::EligibleLeadersNotAvailable,
            }),
        }
    }
}

impl ControllerState {
    /// Partitions not led by their preferred replica although it is in sync and active: what the active
    /// controller's periodic leader balancing (Kafka's `maybeBalancePartitionLeaders`) would elect, by topic
    /// name, at most `limit` partitions.
    pub fn imbalanced_partitions(&self, limit: usize) -> Vec<TopicPartitions> {
        let mut left = limit;
        let mut result = Vec::new();
        for (name, id) in &self.topics_by_name {
            if left == 0 {
                break;
            }
            let partitions: Vec<i32> = self.topics[id]
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.replicas.first().is_some_and(|&preferred| {
                        p.leader != preferred
                            && p.isr.contains(&preferred)
                            && self.is_active(preferred)
                    })
                })
                .map(|(i, _)| i as i32)
                .take(left)
                .collect();
            left -= partitions.len();
            if !partitions.is_empty() {
                result.push(TopicPartitions {
                    topic: name.clone(),
                    partitions,
                });
            }
        }
        result
    }
}
