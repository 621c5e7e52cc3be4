//! How a partition changes (Kafka's `PartitionChangeBuilder`, with KIP-966 eligible leader replicas, which
//! brook always has on, as a new Kafka 4.1 cluster does): given the target ISR and replicas, complete a
//! reassignment the ISR now allows, track the eligible leader replicas, elect a leader, and write the one
//! `PartitionChangeRecord` that gets there, or none when nothing changes.
//!
//! Eligible leader replicas (ELR): while the ISR is below the topic's effective min ISR the high watermark
//! cannot move, so a replica leaving the ISR then still holds every committed record. Such replicas join the
//! ELR (minus one that shut down uncleanly: it may have lost its unflushed tail); an ISR back at min ISR
//! empties it. The ISR may become empty: the last leader is then remembered in `LastKnownElr`.
//!
//! Election (`electAnyLeader`): keep the current leader while it is valid; else the first replica
//! (assignment order) that is valid: in the target ISR, or in the ELR when the ISR is empty, and acceptable
//! (an ELR member elected becomes the whole ISR and leaves the ELR); else, with neither ISR nor ELR, the last
//! known leader if it is acceptable (an unclean election: the best log left); else, for an unclean election,
//! the first acceptable replica at all; else no leader. An unclean election makes the ISR just the new
//! leader, RECOVERING, and clears the ELR. A preferred election tries replicas[0] first. (Kafka also elects
//! a last known leader that is not acceptable, which leaves the partition led by a fenced broker; brook
//! waits until it is acceptable, which unfencing it brings about.)

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
    /// The topic's effective min ISR: below it, replicas leaving the ISR become eligible leader replicas.
    min_isr: usize,
    /// A broker whose last stop was unclean: it leaves the ELR as well as the ISR.
    unclean_shutdown: Option<i32>,
    election: Election,
    target_isr: Vec<i32>,
    target_elr: Vec<i32>,
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
        min_isr: usize,
    ) -> PartitionChangeBuilder<'a> {
        PartitionChangeBuilder {
            partition,
            topic_id,
            partition_id,
            acceptable,
            min_isr,
            unclean_shutdown: None,
            election: Election::Online,
            target_isr: partition.isr.clone(),
            target_elr: partition.elr.clone(),
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

    /// `broker` shut down uncleanly: it may not stay in the ELR (the caller takes it out of the ISR).
    pub fn unclean_shutdown(mut self, broker: i32) -> Self {
        self.unclean_shutdown = Some(broker);
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

    /// In the target ISR, or in the ELR when the ISR is empty, and acceptable.
    fn is_valid_leader(&self, replica: i32) -> bool {
        (self.target_isr.contains(&replica)
            || (self.target_isr.is_empty() && self.target_elr.contains(&replica)))
            && (self.acceptable)(replica)
    }

    /// The last leader, when neither ISR nor ELR is left and it may lead (Kafka's `canElectLastKnownLeader`).
    fn last_known_leader(&self) -> Option<i32> {
        match self.partition.last_known_elr.as_slice() {
            [leader]
                if self.target_isr.is_empty()
                    && self.target_elr.is_empty()
                    && (self.acceptable)(*leader) =>
            {
                Some(*leader)
            }
            _ => None,
        }
    }

    /// The leader this change should have, and whether it was chosen from outside the ISR and ELR.
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
        if let Some(leader) = self.last_known_leader() {
            return (leader, true);
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

    /// Kafka's `maybePopulateTargetElr`: an ISR at min ISR needs no ELR; below it, whoever leaves the ISR
    /// (and whoever was already eligible) is eligible, except a replica that shut down uncleanly. Kept in
    /// assignment order, so the record is deterministic and reads like the replica list.
    fn populate_target_elr(&mut self) {
        if self.target_isr.len() >= self.min_isr {
            self.target_elr.clear();
            return;
        }
        let (elr, old_isr) = (&self.target_elr, &self.partition.isr);
        self.target_elr = self
            .target_replicas
            .iter()
            .copied()
            .filter(|r| elr.contains(r) || old_isr.contains(r))
            .filter(|r| !self.target_isr.contains(r) && Some(*r) != self.unclean_shutdown)
            .collect();
    }

    /// The record for the change, `None` when nothing would change.
    pub fn build(mut self) -> Option<PartitionChangeRecord> {
        let mut record = PartitionChangeRecord::new(self.topic_id, self.partition_id);
        self.complete_reassignment_if_needed();
        self.populate_target_elr();

        let (leader, unclean) = self.elect();
        if leader != self.partition.leader {
            if self.target_elr.contains(&leader) {
                // Elected from the ELR: it holds every committed record, so it is the ISR now.
                self.target_isr = vec![leader];
                self.target_elr.retain(|&r| r != leader);
            }
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
        // After an unclean election nobody else is known to hold the committed records.
        if record.isr.is_some() {
            self.target_elr.clear();
        }
        if self.target_elr != self.partition.elr {
            record.eligible_leader_replicas = Some(self.target_elr.clone());
        }
        // With eligible leader replicas the ISR may empty: the ELR keeps who may lead.
        if record.isr.is_none() && self.target_isr != self.partition.isr {
            record.isr = Some(self.target_isr.clone());
        }
        self.update_last_known_leader(&mut record);
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

    /// Kafka's `maybeUpdateLastKnownLeader`: remembered when the ISR first empties, forgotten once the
    /// partition has (or keeps) a leader.
    fn update_last_known_leader(&self, record: &mut PartitionChangeRecord) {
        let p = self.partition;
        let emptied = record.isr.as_ref().is_some_and(Vec::is_empty);
        if emptied && p.leader != NO_LEADER && p.last_known_elr != [p.leader] {
            record.last_known_elr = Some(vec![p.leader]);
        } else if (record.leader >= 0 || (p.leader != NO_LEADER && record.leader != NO_LEADER))
            && !p.last_known_elr.is_empty()
        {
            record.last_known_elr = Some(Vec::new());
        }
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
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 1)
            .target_isr(vec![2, 3])
            .build()
            .unwrap();
        assert_eq!(record.leader, 2);
        assert_eq!(record.isr, Some(vec![2, 3]));
    }

    #[test]
    fn the_last_replica_standing_becomes_eligible_and_the_isr_empties() {
        let p = partition(&[1, 2], &[1], 1);
        let acceptable = |_: i32| false;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 1)
            .target_isr(vec![])
            .build()
            .unwrap();
        assert_eq!(record.leader, NO_LEADER);
        assert_eq!(record.isr, Some(vec![]));
        assert_eq!(record.eligible_leader_replicas, Some(vec![1]));
        assert_eq!(record.last_known_elr, Some(vec![1]));
    }

    #[test]
    fn replicas_leaving_an_isr_below_min_isr_become_eligible() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let acceptable = |_: i32| true;
        // Down to min ISR: nobody is eligible yet (the high watermark may still move without 2).
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 2)
            .target_isr(vec![1, 3])
            .build()
            .unwrap();
        assert_eq!(record.isr, Some(vec![1, 3]));
        assert_eq!(record.eligible_leader_replicas, None);
        // Below it: 3 leaves while the high watermark is stuck, so it has every committed record.
        let p = partition(&[1, 2, 3], &[1, 3], 1);
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 2)
            .target_isr(vec![1])
            .build()
            .unwrap();
        assert_eq!(record.isr, Some(vec![1]));
        assert_eq!(record.eligible_leader_replicas, Some(vec![3]));
        assert_eq!(record.leader, NO_LEADER_CHANGE);
    }

    #[test]
    fn an_isr_back_at_min_isr_clears_the_elr() {
        let mut p = partition(&[1, 2, 3], &[1], 1);
        p.elr = vec![3];
        let acceptable = |_: i32| true;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 2)
            .target_isr(vec![1, 2])
            .build()
            .unwrap();
        assert_eq!(record.isr, Some(vec![1, 2]));
        assert_eq!(record.eligible_leader_replicas, Some(vec![]));
    }

    #[test]
    fn an_eligible_replica_is_elected_when_the_isr_is_empty_and_becomes_the_isr() {
        let mut p = partition(&[1, 2, 3], &[], NO_LEADER);
        p.elr = vec![1, 3];
        p.last_known_elr = vec![1];
        let acceptable = |b: i32| b == 3;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 2)
            .build()
            .unwrap();
        assert_eq!(record.leader, 3);
        assert_eq!(record.isr, Some(vec![3]));
        assert_eq!(record.eligible_leader_replicas, Some(vec![1]));
        assert_eq!(record.last_known_elr, Some(vec![]));
        assert_eq!(record.leader_recovery_state, None, "a clean election");
    }

    #[test]
    fn an_unclean_shutdown_leaves_the_elr_and_no_one_else_may_lead() {
        let mut p = partition(&[1, 2, 3], &[], NO_LEADER);
        p.elr = vec![1, 3];
        p.last_known_elr = vec![1];
        let acceptable = |b: i32| b == 3 || b == 2;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 2)
            .unclean_shutdown(3)
            .build()
            .unwrap();
        assert_eq!(record.eligible_leader_replicas, Some(vec![1]));
        assert_eq!(record.leader, NO_LEADER_CHANGE, "2 was never eligible");
        assert_eq!(record.isr, None);
    }

    #[test]
    fn the_last_known_leader_is_elected_uncleanly_once_isr_and_elr_are_gone() {
        let mut p = partition(&[1, 2], &[], NO_LEADER);
        p.last_known_elr = vec![1];
        let not_yet = |b: i32| b == 2;
        assert_eq!(
            PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &not_yet, 2).build(),
            None,
            "2 is not eligible, and the last leader may not lead yet"
        );
        let acceptable = |_: i32| true;
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 2)
            .build()
            .unwrap();
        assert_eq!(record.leader, 1);
        assert_eq!(record.isr, Some(vec![1]));
        assert_eq!(
            record.leader_recovery_state,
            Some(LeaderRecoveryState::Recovering)
        );
        assert_eq!(record.last_known_elr, Some(vec![]));
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let p = partition(&[1, 2], &[1], NO_LEADER);
        let acceptable = |b: i32| b == 2;
        let clean = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 1).build();
        assert_eq!(clean, None, "a clean election finds nobody");
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 1)
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
            PartitionChangeBuilder::new(&p, Uuid::nil(), 0, &acceptable, 1).build(),
            None
        );
    }
}
