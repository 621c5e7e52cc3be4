//! Topics and partitions (Kafka's `ReplicationControlManager`): creation with placement or a manual
//! assignment, deletion, new partitions, leader epoch bumps, and the checks they share.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::command::{
    ApiError, CreatableTopicResult, CreatePartitionsTopicResult, CreatedTopic,
    DeletableTopicResult, NewPartitions, NewTopic, TopicRef,
};
use super::placement::{self, UsableBroker};
use super::records::{
    ConfigRecord, ConfigResourceType, LeaderRecoveryState, MetadataRecord, PartitionChangeRecord,
    PartitionRecord, RemoveTopicRecord, TopicRecord,
};
use super::state::{ControllerState, Writer};
use crate::cluster::image::is_internal_topic;
use crate::cluster::topic_name;

/// Most partitions one command may create, all its topics together: the single-node broker's cap
/// (`api::topics::MAX_PARTITIONS_PER_REQUEST`), refused the same way (POLICY_VIOLATION).
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;
/// Most topics (or partitions named) one command may carry.
pub const MAX_TOPICS_PER_REQUEST: usize = 10_000;
/// Most configs one resource may have.
pub const MAX_CONFIGS_PER_RESOURCE: usize = 1_000;

impl Writer<'_> {
    /// Kafka's `createTopics`: each topic succeeds or fails alone; `validate_only` writes nothing.
    pub(super) fn create_topics(
        &mut self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Vec<CreatableTopicResult> {
        let requested = topics
            .iter()
            .map(|t| {
                if t.assignments.is_empty() {
                    u64::try_from(t.num_partitions).unwrap_or(0)
                } else {
                    t.assignments.len() as u64
                }
            })
            .fold(0u64, u64::saturating_add);
        let over_limit = (requested > MAX_PARTITIONS_PER_REQUEST
            || topics.len() > MAX_TOPICS_PER_REQUEST)
            .then(|| {
                ApiError::new(
                    ResponseError::PolicyViolation,
                    format!(
                        "Too many partitions in one request: {requested} requested, at most {MAX_PARTITIONS_PER_REQUEST}."
                    ),
                )
            });
        let mut names = BTreeMap::<&str, usize>::new();
        for topic in topics {
            *names.entry(topic.name.as_str()).or_default() += 1;
        }
        topics
            .iter()
            .enumerate()
            .map(|(position, topic)| {
                let result = if let Some(error) = &over_limit {
                    Err(error.clone())
                } else if names[topic.name.as_str()] > 1 {
                    Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        format!(
                            "Topic '{}' appears more than once in the request.",
                            topic.name
                        ),
                    ))
                } else {
                    self.create_topic(position, topic, validate_only)
                };
                CreatableTopicResult {
                    name: topic.name.clone(),
                    result,
                }
            })
            .collect()
    }

    fn create_topic(
        &mut self,
        position: usize,
        topic: &NewTopic,
        validate_only: bool,
    ) -> Result<CreatedTopic, ApiError> {
        let state = &*self.state;
        state.check_new_topic_name(&topic.name)?;
        if topic.topic_id.is_nil() || state.topics.contains_key(&topic.topic_id) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Topic id {} cannot be used for a new topic.",
                    topic.topic_id
                ),
            ));
        }
        check_config_count(&topic.configs)?;
        let assignments = if topic.assignments.is_empty() {
            state.placed_assignments(self.index, position, topic)?
        } else {
            state.manual_assignments(topic)?
        };
        let created = CreatedTopic {
            topic_id: topic.topic_id,
            num_partitions: assignments.len() as i32,
            replication_factor: assignments[0].len() as i16,
        };
        if validate_only {
            return Ok(created);
        }
        self.write(MetadataRecord::Topic(TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
        }));
        for (name, value) in &topic.configs {
            self.write(MetadataRecord::Config(ConfigRecord {
                resource_type: ConfigResourceType::Topic,
                resource_name: topic.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            }));
        }
        for (partition_id, replicas) in assignments.into_iter().enumerate() {
            self.write_new_partition(topic.topic_id, partition_id as i32, replicas);
        }
        Ok(created)
    }

    /// A new partition: ISR = its active replicas, leader = the first of them, epochs 0.
    fn write_new_partition(&mut self, topic_id: Uuid, partition_id: i32, replicas: Vec<i32>) {
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|&b| self.state.is_active(b))
            .collect();
        assert!(
            !isr.is_empty(),
            "invariant: a new partition has an active replica"
        );
        self.write(MetadataRecord::Partition(PartitionRecord {
            partition_id,
            topic_id,
            leader: isr[0],
            replicas,
            isr,
            removing_replicas: Vec::new(),
            adding_replicas: Vec::new(),
            leader_recovery_state: LeaderRecoveryState::Recovered,
            leader_epoch: 0,
            partition_epoch: 0,
            eligible_leader_replicas: Vec::new(),
            last_known_elr: Vec::new(),
        }));
    }

    /// Kafka's `deleteTopics`; internal topics are refused as the broker refuses them. Every topic is
    /// removed at most once, so the records stay bounded by the topics there are.
    pub(super) fn delete_topics(&mut self, topics: &[TopicRef]) -> Vec<DeletableTopicResult> {
        topics
            .iter()
            .map(|wanted| {
                let (name, found) = match wanted {
                    TopicRef::Name(name) => (
                        Some(name.clone()),
                        self.state
                            .topics_by_name
                            .get(name)
                            .copied()
                            .ok_or(ResponseError::UnknownTopicOrPartition),
                    ),
                    TopicRef::Id(id) => (
                        None,
                        Some(*id)
                            .filter(|id| self.state.topics.contains_key(id))
                            .ok_or(ResponseError::UnknownTopicId),
                    ),
                };
                match found {
                    Err(error) => DeletableTopicResult {
                        name,
                        topic_id: match wanted {
                            TopicRef::Id(id) => *id,
                            TopicRef::Name(_) => Uuid::nil(),
                        },
                        error: ApiError::of(error),
                    },
                    Ok(topic_id) => {
                        let name = self.state.topics[&topic_id].name.clone();
                        let error = if is_internal_topic(&name) {
                            ApiError::new(
                                ResponseError::InvalidTopicException,
                                format!("Cannot delete the internal topic {name}."),
                            )
                        } else {
                            self.write(MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id }));
                            ApiError::NONE
                        };
                        DeletableTopicResult {
                            name: Some(name),
                            topic_id,
                            error,
                        }
                    }
                }
            })
            .collect()
    }

    /// Kafka's `createPartitions`: new partitions keep the topic's replication factor.
    pub(super) fn create_partitions(
        &mut self,
        topics: &[NewPartitions],
        validate_only: bool,
    ) -> Vec<CreatePartitionsTopicResult> {
        let added = topics
            .iter()
            .map(|t| {
                let current = self
                    .state
                    .topic(&t.topic)
                    .map_or(0, |t| t.partitions.len() as i64);
                u64::try_from(i64::from(t.count) - current).unwrap_or(0)
            })
            .fold(0u64, u64::saturating_add);
        let over_limit = (added > MAX_PARTITIONS_PER_REQUEST || topics.len() > MAX_TOPICS_PER_REQUEST)
            .then(|| {
                ApiError::new(
                    ResponseError::PolicyViolation,
                    format!(
                        "Too many partitions in one request: {added} new ones requested, at most {MAX_PARTITIONS_PER_REQUEST}."
                    ),
                )
            });
        topics
            .iter()
            .map(|topic| CreatePartitionsTopicResult {
                name: topic.topic.clone(),
                error: match &over_limit {
                    Some(error) => error.clone(),
                    None => self
                        .create_partitions_of(topic, validate_only)
                        .err()
                        .unwrap_or(ApiError::NONE),
                },
            })
            .collect()
    }

    fn create_partitions_of(
        &mut self,
        request: &NewPartitions,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let state = &*self.state;
        let topic = state
            .topic(&request.topic)
            .ok_or_else(|| ApiError::of(ResponseError::UnknownTopicOrPartition))?;
        if is_internal_topic(&topic.name) {
            // Groups and transactional ids map to these partitions by hash: a new count would lose them.
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Cannot change the number of partitions of the internal topic {}.",
                    topic.name
                ),
            ));
        }
        let current = topic.partitions.len() as i32;
        if request.count == current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        if request.count < current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "The topic {} currently has {current} partition(s); {} would not be an increase.",
                    topic.name, request.count
                ),
            ));
        }
        let additional = (request.count - current) as usize;
        let factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
        let placements = match &request.assignments {
            Some(assignments) => {
                if assignments.len() != additional {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                            assignments.len()
                        ),
                    ));
                }
                for replicas in assignments {
                    state.validate_manual_assignment(replicas, Some(factor))?;
                    if !replicas.iter().any(|&b| state.is_active(b)) {
                        return Err(ApiError::new(
                            ResponseError::InvalidReplicaAssignment,
                            "All brokers specified in the manual partition assignment are fenced or in controlled shutdown.",
                        ));
                    }
                }
                assignments.clone()
            }
            None => {
                let seed = self.index ^ fnv1a(&topic.name) ^ u64::from(current as u32);
                placement::place(seed, additional, factor as i16, &state.usable_brokers()).map_err(
                    |reason| {
                        ApiError::new(
                            ResponseError::InvalidReplicationFactor,
                            format!("Unable to replicate the partition {factor} time(s): {reason}"),
                        )
                    },
                )?
            }
        };
        if validate_only {
            return Ok(());
        }
        let topic_id = topic.id;
        for (i, replicas) in placements.into_iter().enumerate() {
            self.write_new_partition(topic_id, current + i as i32, replicas);
        }
        Ok(())
    }

    /// Starts a new leader epoch with the same leader (the single node's `bump_leader_epoch`).
    pub(super) fn bump_leader_epoch(
        &mut self,
        topic: &str,
        partition_id: i32,
    ) -> Result<i32, ApiError> {
        let (topic_id, leader) = {
            let t = self
                .state
                .topic(topic)
                .ok_or_else(|| ApiError::of(ResponseError::UnknownTopicOrPartition))?;
            let p = usize::try_from(partition_id)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .ok_or_else(|| ApiError::of(ResponseError::UnknownTopicOrPartition))?;
            (t.id, p.leader)
        };
        let mut record = PartitionChangeRecord::new(topic_id, partition_id);
        record.leader = leader;
        self.write(MetadataRecord::PartitionChange(record));
        Ok(self.state.topics[&topic_id].partitions[partition_id as usize].leader_epoch)
    }
}

impl ControllerState {
    /// A topic's replicas from the placer (Kafka's `createTopic` without a manual assignment).
    fn placed_assignments(
        &self,
        index: u64,
        position: usize,
        topic: &NewTopic,
    ) -> Result<Vec<Vec<i32>>, ApiError> {
        if topic.replication_factor < -1 || topic.replication_factor == 0 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ));
        }
        if topic.num_partitions < -1 || topic.num_partitions == 0 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        if topic.num_partitions == -1 || topic.replication_factor == -1 {
            // The proposer resolves the defaults; an unresolved one is its bug, refused not guessed.
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "The partition count and replication factor must be resolved before proposing.",
            ));
        }
        let seed = index ^ (position as u64).rotate_left(32) ^ fnv1a(&topic.name);
        placement::place(
            seed,
            topic.num_partitions as usize,
            topic.replication_factor,
            &self.usable_brokers(),
        )
        .map_err(|reason| {
            ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {} time(s): {reason}",
                    topic.replication_factor
                ),
            )
        })
    }

    /// A topic's replicas as its manual assignment names them, checked (Kafka's `createTopic`).
    fn manual_assignments(&self, topic: &NewTopic) -> Result<Vec<Vec<i32>>, ApiError> {
        if topic.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "A manual partition assignment was specified, but replication factor was not set to -1.",
            ));
        }
        if topic.num_partitions != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            ));
        }
        let mut by_partition = BTreeMap::new();
        let mut factor = None;
        for assignment in &topic.assignments {
            if by_partition.contains_key(&assignment.partition_index) {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Found multiple manual partition assignments for partition {}",
                        assignment.partition_index
                    ),
                ));
            }
            self.validate_manual_assignment(&assignment.broker_ids, factor)?;
            factor = Some(assignment.broker_ids.len());
            if !assignment.broker_ids.iter().any(|&b| self.is_active(b)) {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "All brokers specified in the manual partition assignment for partition {} are fenced or in controlled shutdown.",
                        assignment.partition_index
                    ),
                ));
            }
            by_partition.insert(assignment.partition_index, assignment.broker_ids.clone());
        }
        if by_partition
            .keys()
            .copied()
            .ne(0..by_partition.len() as i32)
        {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                "partitions should be a consecutive 0-based integer sequence",
            ));
        }
        Ok(by_partition.into_values().collect())
    }

    /// Kafka's `validateNewTopicNames` and the existence check.
    pub(super) fn check_new_topic_name(&self, name: &str) -> Result<(), ApiError> {
        topic_name::validate(name)
            .map_err(|m| ApiError::new(ResponseError::InvalidTopicException, m))?;
        if self.topics_by_name.contains_key(name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let key = topic_name::collision_key(name);
        if let Some(other) = self
            .topics_by_name
            .keys()
            .find(|n| topic_name::collision_key(n) == key)
        {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        Ok(())
    }

    /// Active brokers for the placer, by id.
    pub(super) fn usable_brokers(&self) -> Vec<UsableBroker> {
        self.brokers
            .values()
            .filter(|b| b.is_active())
            .map(|b| UsableBroker {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    /// Kafka's `validateManualPartitionAssignment`.
    pub(super) fn validate_manual_assignment(
        &self,
        replicas: &[i32],
        factor: Option<usize>,
    ) -> Result<(), ApiError> {
        let invalid = |m: String| ApiError::new(ResponseError::InvalidReplicaAssignment, m);
        if replicas.is_empty() {
            return Err(invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        let mut sorted = replicas.to_vec();
        sorted.sort_unstable();
        for (i, &broker) in sorted.iter().enumerate() {
            if !self.brokers.contains_key(&broker) {
                return Err(invalid(format!(
                    "The manual partition assignment includes broker {broker}, but no such broker is registered."
                )));
            }
            if i > 0 && sorted[i - 1] == broker {
                return Err(invalid(format!(
                    "The manual partition assignment includes the broker {broker} more than once."
                )));
            }
        }
        if let Some(factor) = factor
            && sorted.len() != factor
        {
            return Err(invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {factor} replica(s).",
                sorted.len()
            )));
        }
        Ok(())
    }
}

/// A topic's configs must stay a bounded set.
pub(super) fn check_config_count(configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if configs.len() > MAX_CONFIGS_PER_RESOURCE {
        return Err(ApiError::new(
            ResponseError::InvalidConfig,
            format!("At most {MAX_CONFIGS_PER_RESOURCE} configs may be set on one resource."),
        ));
    }
    Ok(())
}

/// FNV-1a of a name: a stable hash (std's hasher is randomised per process) to vary placement seeds.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
