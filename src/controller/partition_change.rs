//! How a partition changes (Kafka's `PartitionChangeBuilder`, without eligible leader replicas): given the
//! target ISR and replicas, complete a reassignment the ISR now allows, elect a leader, and write the one
//! `PartitionChangeRecord` that gets there, or none when nothing changes.
//!
//! Election (`electAnyLeader`): keep the current leader while it is in the target ISR and acceptable; else
//! the first replica (assignment order) in the ISR that is acceptable; else, for an unclean election, the
//! first acceptable replica at all (the ISR becomes just it, RECOVERING); else no leader. A preferred
//! election tries replicas[0] first. Without ELR the ISR never empties: the last member stays ("last
//! replica standing") and the partition goes leaderless.

use uuid::Uuid;

use super::records::{LeaderRecoveryState, NO_LEADER_CHANGE, PartitionChangeRecord};
use super::state::{NO_LEADER, PartitionState};

/// What kind of election a change may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    Preferred,
    Online,
    Unclean,
}

pub struct PartitionChangeBuilder<'a> {
    partition: &'a PartitionState,
    topic_id: Uuid,
    partition_id: i32,
    /// May this broker lead (registered, unfenced, not shutting down, not the one being removed)?
    acceptable: &'a dyn Fn(i32) -> bool,
    election: Election,
    target_isr: Vec<i32>,
    target_replicas: Vec<i32>,
    target_removing: Vec<i32>,
    target_adding: Vec<i32>,
    target_recovery: LeaderRecoveryState,
}

impl<'a> PartitionChangeBuilder<'a> {
    pub fn new(
        partition: &'a PartitionState,
        topic_id: Uuid,
        partition_id: i32,
        acceptable: &'a dyn Fn(i32) -> bool,
    ) -> PartitionChangeBuilder<'a> {
        PartitionChangeBuilder {
            partition,
            topic_id,
            partition_id,
            acceptable,
            election: Election::Online,
            target_isr: partition.isr.clone(),
            target_replicas: partition.replicas.clone(),
            target_removing: partition.removing_replicas.clone(),
            target_adding: partition.adding_replicas.clone(),
            target_recovery: partition.leader_recovery_state,
        }
    }

    pub fn election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    pub fn target_isr(mut self, isr: Vec<i32>) -> Self {
        self.target_isr = isr;
        self
    }

    pub fn target_replicas(mut self, replicas: Vec<i32>) -> Self {
        self.target_replicas = replicas;
        self
    }

    pub fn target_removing(mut self, removing: Vec<i32>) -> Self {
        self.target_removing = removing;
        self
    }

    pub fn target_adding(mut self, adding: Vec<i32>) -> Self {
        self.target_adding = adding;
        self
    }

    pub fn target_leader_recovery_state(mut self, state: LeaderRecoveryState) -> Self {
        self.target_recovery = state;
        self
    }

    fn is_valid_leader(&self, replica: i32) -> bool {
        self.target_isr.contains(&replica) && (self.acceptable)(replica)
    }

    /// The leader this change should have, and whether it was chosen from outside the ISR.
    fn elect(&self) -> (i32, bool) {
        let current = self.partition.leader;
        if self.election == Election::Preferred
            && let Some(&preferred) = self.target_replicas.first()
            && self.is_valid_leader(preferred)
        {
            return (preferred, false);
        }
        if current != NO_LEADER && self.is_valid_leader(current) {
            return (current, false);
        }
        if let Some(&leader) = self
            .target_replicas
            .iter()
            .find(|&&r| self.is_valid_leader(r))
        {
            return (leader, false);
        }
        if self.election == Election::Unclean
            && let Some(&leader) = self.target_replicas.iter().find(|&&r| (self.acceptable)(r))
        {
            return (leader, true);
        }
        (NO_LEADER, false)
    }

    /// A reassignment completes once the ISR holds every target replica (Kafka's
    /// `PartitionReassignmentReplicas.maybeCompleteReassignment`): the removing replicas go.
    fn complete_reassignment_if_needed(&mut self) {
        if self.target_adding.is_empty() && self.target_removing.is_empty() {
            return;
        }
        let removing = &self.target_removing;
        let isr: Vec<i32> = self
            .target_isr
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        let replicas: Vec<i32> = self
            .target_replicas
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        if isr.is_empty() || replicas.is_empty() || !replicas.iter().all(|r| isr.contains(r)) {
            return;
        }
        self.target_isr = isr;
        self.target_replicas = replicas;
        self.target_removing.clear();
        self.target_adding.clear();
    }

    /// The record for the change, `None` when nothing would change.
    pub fn build(mut self) -> Option<PartitionChangeRecord> {
        let mut record = PartitionChangeRecord::new(self.topic_id, self.partition_id);
        self.complete_reassignment_if_needed();

        let (leader, unclean) = self.elect();
        if leader != self.partition.leader {
            record.leader = leader;
            if unclean {
                // Data loss is possible: the new leader's log is the truth from now on.
                record.isr = Some(vec![leader]);
                self.target_recovery = LeaderRecoveryState::Recovering;
            }
        }
        // Dropping a replica from the assignment starts a new leader epoch, so it stops following.
        if record.leader == NO_LEADER_CHANGE
            && !self
                .partition
                .replicas
                .iter()
                .all(|r| self.target_replicas.contains(r))
        {
            record.leader = self.partition.leader;
        }
        // The ISR never empties (no eligible leader replicas): its last member stays.
        if record.isr.is_none()
            && !self.target_isr.is_empty()
            && self.target_isr != self.partition.isr
        {
            record.isr = Some(self.target_isr.clone());
        }
        if !self.target_replicas.is_empty() && self.target_replicas != self.partition.replicas {
            record.replicas = Some(self.target_replicas.clone());
        }
        if self.target_removing != self.partition.removing_replicas {
            record.removing_replicas = Some(self.target_removing.clone());
        }
        if self.target_adding != self.partition.adding_replicas {
            record.adding_replicas = Some(self.target_adding.clone());
        }
        if self.target_recovery != self.partition.leader_recovery_state {
            record.leader_recovery_state = Some(self.target_recovery);
        }
        (!record.is_no_op()).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            ..Default::default()
        }
    }

    #[test]
    fn a_removed_leader_is_replaced_by_the_first_acceptable_isr_member() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let acceptable = |b: i32| b != 1;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable)
            .target_isr(vec![2, 3])
            .build()
            .unwrap();
        assert_eq!(record.leader, 2);
        assert_eq!(record.isr, Some(vec![2, 3]));
    }

    #[test]
    fn the_last_replica_standing_keeps_the_isr_and_loses_the_leadership() {
        let p = partition(&[1, 2], &[1], 1);
        let acceptable = |_: i32| false;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable)
            .target_isr(vec![])
            .build()
            .unwrap();
        assert_eq!(record.leader, NO_LEADER);
        assert_eq!(record.isr, None, "the ISR stays [1]");
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let p = partition(&[1, 2], &[1], NO_LEADER);
        let acceptable = |b: i32| b == 2;
        let clean = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable).build();
        assert_eq!(clean, None, "a clean election finds nobody");
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable)
            .election(Election::Unclean)
            .build()
            .unwrap();
        assert_eq!(record.leader, 2);
        assert_eq!(record.isr, Some(vec![2]));
        assert_eq!(
            record.leader_recovery_state,
            Some(LeaderRecoveryState::Recovering)
        );
    }

    #[test]
    fn nothing_to_change_writes_nothing() {
        let p = partition(&[1, 2], &[1, 2], 1);
        let acceptable = |_: i32| true;
        assert_eq!(
            PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable).build(),
            None
        );
    }
}
