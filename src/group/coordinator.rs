//! The classic group coordinator: membership, generations and rebalances of consumer groups (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), with Kafka's states Empty, PreparingRebalance, CompletingRebalance,
//! Stable and Dead.
//!
//! All groups live behind one mutex: every operation is a short, non-blocking state change. Members waiting for
//! a rebalance to finish hold a oneshot receiver, never a thread. One ticker task drives every timer (session
//! expiry, rebalance and sync deadlines, the initial rebalance delay, offset expiration).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::offset_store::{GroupActivity, OffsetStore, WriteWait};
use super::{GroupConfig, StoredGroup, StoredMember};
use crate::clock::Clock;
use crate::cluster::{MetadataDelta, MetadataImage, MetadataPublisher};
use crate::coordinator::CoordinatorError;

/// How often the ticker looks at the timers of every group. Bounds how late a timeout is noticed.
const TICK: Duration = Duration::from_millis(50);

/// Kafka's group states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A response available now, or later once a rebalance gets far enough.
pub enum Pending<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A JoinGroup request, decoded.
#[derive(Clone, Debug)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a first join without a member id is answered MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Clone, Debug)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    /// KIP-814: a static leader rejoining a stable group must not compute a new assignment.
    pub skip_assignment: bool,
}

impl JoinResult {
    /// A JoinGroup failure for `member_id`.
    pub fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// A SyncGroup request, decoded.
#[derive(Clone, Debug)]
pub struct SyncParams {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment): sent by the leader only.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            ..Default::default()
        }
    }
}

/// A group in ListGroups.
#[derive(Clone, Debug)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// A member in DescribeGroups.
#[derive(Clone, Debug)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group in DescribeGroups.
#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    session_deadline: Instant,
    /// Join order: the first member to join leads when the leader is gone.
    seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn awaiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    fn fail(&mut self, error: ResponseError) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(JoinResult::error(error, &self.id));
        }
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(SyncResult::error(error));
        }
    }
}

struct Group {
    id: String,
    state: GroupState,
    /// Wall time of the last state change (DescribeGroups, and offset expiry of empty groups).
    state_since_ms: i64,
    clock: Clock,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// group.instance.id -> member id of the static member that holds it.
    static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out but not yet used, with when they lapse.
    pending: HashMap<String, Instant>,
    /// PreparingRebalance: when members that have not rejoined are dropped.
    rebalance_deadline: Option<Instant>,
    /// Set during the initial delayed join of an empty group: the latest the delay may be extended to.
    initial_delay_max: Option<Instant>,
    /// CompletingRebalance: when members that have not sent SyncGroup are dropped.
    sync_deadline: Option<Instant>,
    next_seq: u64,
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

impl Group {
    fn new(id: &str, clock: Clock) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_since_ms: clock.now_ms(),
            clock,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: HashMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_max: None,
            sync_deadline: None,
            next_seq: 0,
        }
    }

    fn set_state(&mut self, state: GroupState) {
        self.state = state;
        self.state_since_ms = self.clock.now_ms();
    }

    /// Protocols every member supports (all of the joining member's when the group is empty).
    fn candidates(&self) -> Vec<String> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return Vec::new();
        };
        let mut out: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in iter {
            out.retain(|p| m.protocols.iter().any(|(n, _)| n == p));
        }
        out
    }

    /// Whether a member with these protocols may join: same protocol type, and at least one protocol in
    /// common with every current member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidates();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// The protocol every member supports that most members prefer (ties: the earlier candidate).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let index = votes.iter().position(|&v| v == best)?;
        candidates.get(index).cloned()
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| ms(m.rebalance_timeout_ms))
            .max()
            .unwrap_or_default()
    }

    fn remove_member(&mut self, id: &str, error: ResponseError) {
        if let Some(mut m) = self.members.remove(id) {
            m.fail(error);
            if let Some(instance) = &m.instance_id
                && self.static_members.get(instance).map(String::as_str) == Some(id)
            {
                self.static_members.remove(instance);
            }
            if self.leader.as_deref() == Some(id) {
                self.leader = None;
            }
        }
    }

    /// The member id that holds a static instance id other than `member_id`: the caller is fenced.
    fn fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|holder| holder != member_id)
    }

    fn join_result_for(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            let mut all: Vec<&Member> = self.members.values().collect();
            all.sort_by_key(|m| m.seq);
            all.iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: skip_assignment && is_leader,
        }
    }

    fn stored(&self) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_since_ms,
            members: members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

/// Coordinates every classic group of this broker.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// Wall time for group state times and offset expiration.
    clock: Clock,
    store: Arc<OffsetStore>,
    groups: Mutex<HashMap<String, Group>>,
    stopping: tokio::sync::watch::Sender<bool>,
    /// Set when a metadata change may have loaded or unloaded `__consumer_offsets` shards; the groups
    /// follow at the next [`Self::lock`]. A flag rather than the work itself: the change is published on
    /// the metadata writer's thread, which may be a group write holding the groups lock (creating the
    /// topic on first use).
    shards_changed: AtomicBool,
    /// The `__consumer_offsets` partitions whose shards were Active when the groups last followed them:
    /// a shard that becomes Active again (leadership came back) has its stored groups restored.
    hosted: Mutex<HashSet<i32>>,
}

/// Tells the group coordinator that shards may have moved (see `shards_changed`).
struct ShardListener(Weak<GroupCoordinator>);

impl MetadataPublisher for ShardListener {
    fn publish(&self, _delta: &MetadataDelta, _image: &Arc<MetadataImage>) {
        if let Some(coordinator) = self.0.upgrade() {
            coordinator.shards_changed.store(true, Ordering::Release);
        }
    }
}

impl GroupCoordinator {
    pub fn new(
        store: Arc<OffsetStore>,
        config: GroupConfig,
        clock: Clock,
    ) -> Arc<GroupCoordinator> {
        let metadata = store.metadata().clone();
        let coordinator = Arc::new(GroupCoordinator {
            config,
            clock,
            store,
            groups: Mutex::new(HashMap::new()),
            stopping: tokio::sync::watch::Sender::new(false),
            shards_changed: AtomicBool::new(true),
            hosted: Mutex::new(HashSet::new()),
        });
        // After the offset store's runtime: its shards are loaded or unloaded when this one runs.
        metadata.add_publisher(Arc::new(ShardListener(Arc::downgrade(&coordinator))));
        coordinator
    }

    /// The wall clock of group state times, offset commits and their expiration.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The offset store this coordinator persists to.
    pub fn store(&self) -> &Arc<OffsetStore> {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic while holding the lock leaves a group mid-change, but every change keeps the map usable.
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if self.shards_changed.swap(false, Ordering::AcqRel) {
            self.follow_shards(&mut groups);
        }
        groups
    }

    /// Brings the groups in memory in line with the partitions this broker coordinates (Kafka's group
    /// coordinator `onResignation` / `onElection`): a group whose partition of `__consumer_offsets` another
    /// broker leads is dropped, its waiting members told NOT_COORDINATOR; the stored groups of a shard
    /// newly loaded here are restored, except those already in memory (a group formed before its
    /// partition existed is newer than anything stored).
    fn follow_shards(&self, groups: &mut HashMap<String, Group>) {
        let before = groups.len();
        groups.retain(|id, group| {
            let here = self.store.check_coordinator(id).is_ok();
            if !here {
                for m in group.members.values_mut() {
                    m.fail(ResponseError::NotCoordinator);
                }
            }
            here
        });
        if groups.len() < before {
            tracing::info!(
                groups = before - groups.len(),
                "groups coordinated elsewhere unloaded"
            );
        }
        let active: HashSet<i32> = self.store.active_partitions().into_iter().collect();
        let mut hosted = self.hosted.lock().unwrap_or_else(|e| e.into_inner());
        let mut added: Vec<i32> = active.difference(&hosted).copied().collect();
        added.sort_unstable();
        for &partition in &added {
            let stored = self
                .store
                .groups_in(partition)
                .into_iter()
                .filter(|(id, _)| !groups.contains_key(id))
                .collect();
            self.restore_into(groups, stored);
        }
        *hosted = active;
    }

    /// Restores groups as they were stored after their last rebalance. Members get a fresh session: those that
    /// do not heartbeat again are expired as usual.
    pub fn restore(&self, loaded: Vec<(String, StoredGroup)>) {
        let mut groups = self.lock();
        self.restore_into(&mut groups, loaded);
    }

    fn restore_into(
        &self,
        groups: &mut HashMap<String, Group>,
        loaded: Vec<(String, StoredGroup)>,
    ) {
        let now = Instant::now();
        for (id, stored) in loaded {
            let mut group = Group::new(&id, self.clock.clone());
            group.generation = stored.generation;
            group.protocol_type = Some(stored.protocol_type.clone()).filter(|t| !t.is_empty());
            group.protocol = stored.protocol.clone();
            group.leader = stored.leader.clone();
            group.state_since_ms = stored.current_state_timestamp_ms;
            let protocol = stored.protocol.clone().unwrap_or_default();
            for m in stored.members {
                if let Some(instance) = &m.group_instance_id {
                    group
                        .static_members
                        .insert(instance.clone(), m.member_id.clone());
                }
                let seq = group.next_seq;
                group.next_seq += 1;
                group.members.insert(
                    m.member_id.clone(),
                    Member {
                        id: m.member_id,
                        instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout: ms(m.session_timeout_ms),
                        session_timeout_ms: m.session_timeout_ms,
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        protocol_type: stored.protocol_type.clone(),
                        protocols: vec![(protocol.clone(), m.subscription)],
                        assignment: m.assignment,
                        join_waiter: None,
                        sync_waiter: None,
                        session_deadline: now + ms(m.session_timeout_ms),
                        seq,
                    },
                );
            }
            if group.members.is_empty() {
                group.state = GroupState::Empty;
                group.leader = None;
            } else {
                group.state = GroupState::Stable;
            }
            groups.insert(id, group);
        }
    }

    /// Starts the ticker that drives every group timer and offset expiration. Needs a tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let weak: Weak<GroupCoordinator> = Arc::downgrade(self);
        let mut stopping = self.stopping.subscribe();
        let expire_every =
            Duration::from_millis(self.config.offsets_retention_check_interval_ms.max(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next_expiry = Instant::now() + expire_every;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopping.changed() => return,
                }
                let Some(coordinator) = weak.upgrade() else {
                    return;
                };
                let now = Instant::now();
                coordinator.tick(now);
                if now >= next_expiry {
                    next_expiry = now + expire_every;
                    coordinator.expire_offsets();
                }
            }
        });
    }

    /// Stops the timers and answers every waiting member NOT_COORDINATOR, so clean shutdown is not held up.
    pub fn shutdown(&self) {
        self.stopping.send_replace(true);
        let mut groups = self.lock();
        for group in groups.values_mut() {
            for m in group.members.values_mut() {
                m.fail(ResponseError::NotCoordinator);
            }
        }
    }

    /// What offset expiration needs to know about a group (KIP-211).
    pub fn activity(&self, group_id: &str) -> GroupActivity {
        match self.lock().get(group_id) {
            Some(g) if !g.members.is_empty() => GroupActivity::Active,
            Some(g) if g.generation > 0 || g.protocol_type.is_some() => {
                GroupActivity::EmptySince(g.state_since_ms)
            }
            _ => GroupActivity::Unknown,
        }
    }

    /// Runs one offset expiration pass.
    pub fn expire_offsets(&self) {
        // Snapshot first: the store calls back while holding its own lock, and the coordinator takes its lock
        // before calling the store, so the callback must not take the coordinator's lock.
        let activity: HashMap<String, GroupActivity> = self
            .store
            .groups_with_offsets()
            .into_iter()
            .map(|g| {
                let a = self.activity(&g);
                (g, a)
            })
            .collect();
        let lookup = |g: &str| activity.get(g).copied().unwrap_or(GroupActivity::Active);
        match self.store.expire(self.clock.now_ms(), &lookup) {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired committed offsets"),
            Err(e) => tracing::warn!(error = %e, "offset expiration failed"),
        }
        // Empty groups without offsets are forgotten (Kafka turns them Dead), which bounds the groups kept.
        let with_offsets: std::collections::HashSet<String> =
            self.store.groups_with_offsets().into_iter().collect();
        let mut groups = self.lock();
        let dead: Vec<String> = groups
            .values()
            .filter(|g| {
                g.state == GroupState::Empty
                    && g.members.is_empty()
                    && g.pending.is_empty()
                    && !with_offsets.contains(&g.id)
            })
            .map(|g| g.id.clone())
            .collect();
        for id in dead {
            groups.remove(&id);
            match self.store.delete_group(&id) {
                Ok(wait) => spawn_write_log(id, wait),
                Err(e) => tracing::warn!(group = %id, error = %e, "cannot remove empty group"),
            }
        }
    }

    fn persist(&self, group: &Group) {
        match self.store.store_group(&group.id, &group.stored()) {
            Ok(wait) => spawn_write_log(group.id.clone(), wait),
            Err(e) => tracing::warn!(group = %group.id, error = %e, "cannot store group metadata"),
        }
    }

    /// JoinGroup.
    pub fn join_group(&self, p: JoinParams) -> Pending<JoinResult> {
        if p.group_id.is_empty() {
            return Pending::Now(JoinResult::error(
                ResponseError::InvalidGroupId,
                &p.member_id,
            ));
        }
        if let Err(e) = self.store.check_coordinator(&p.group_id) {
            return Pending::Now(JoinResult::error(e, &p.member_id));
        }
        if p.session_timeout_ms < self.config.min_session_timeout_ms
            || p.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Pending::Now(JoinResult::error(
                ResponseError::InvalidSessionTimeout,
                &p.member_id,
            ));
        }
        let now = Instant::now();
        let mut groups = self.lock();
        let created = !groups.contains_key(&p.group_id);
        let group = groups
            .entry(p.group_id.clone())
            .or_insert_with(|| Group::new(&p.group_id, self.clock.clone()));
        let result = if !group.supports(&p.protocol_type, &p.protocols) {
            Pending::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ))
        } else if p.member_id.is_empty() {
            self.join_new_member(group, p, now)
        } else {
            self.join_known_member(group, p, now)
        };
        if created && group.members.is_empty() && group.pending.is_empty() {
            let id = group.id.clone();
            groups.remove(&id);
        }
        result
    }

    fn join_new_member(
        &self,
        group: &mut Group,
        p: JoinParams,
        now: Instant,
    ) -> Pending<JoinResult> {
        if group.state == GroupState::Dead {
            return Pending::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                "",
            ));
        }
        let prefix = p.group_instance_id.as_deref().unwrap_or(&p.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = p.group_instance_id.clone()
            && let Some(old_id) = group.static_members.get(&instance).cloned()
            && group.members.contains_key(&old_id)
        {
            return self.replace_static_member(group, p, old_id, new_id, now);
        }
        if group.members.len() + group.pending.len() >= self.config.max_size {
            return Pending::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
        }
        if p.group_instance_id.is_none() && p.require_known_member_id {
            group
                .pending
                .insert(new_id.clone(), now + ms(p.session_timeout_ms));
            return Pending::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id));
        }
        self.add_member_and_rebalance(group, p, new_id, now)
    }

    fn join_known_member(
        &self,
        group: &mut Group,
        p: JoinParams,
        now: Instant,
    ) -> Pending<JoinResult> {
        if group.pending.remove(&p.member_id).is_some() {
            if group.members.len() >= self.config.max_size {
                return Pending::Now(JoinResult::error(
                    ResponseError::GroupMaxSizeReached,
                    &p.member_id,
                ));
            }
            let id = p.member_id.clone();
            return self.add_member_and_rebalance(group, p, id, now);
        }
        if group.fenced(p.group_instance_id.as_deref(), &p.member_id) {
            return Pending::Now(JoinResult::error(
                ResponseError::FencedInstanceId,
                &p.member_id,
            ));
        }
        if !group.members.contains_key(&p.member_id)
            || matches!(group.state, GroupState::Empty | GroupState::Dead)
        {
            return Pending::Now(JoinResult::error(
                ResponseError::UnknownMemberId,
                &p.member_id,
            ));
        }
        let state = group.state;
        let is_leader = group.leader.as_deref() == Some(p.member_id.as_str());
        let Some(member) = group.members.get_mut(&p.member_id) else {
            return Pending::Now(JoinResult::error(
                ResponseError::UnknownMemberId,
                &p.member_id,
            ));
        };
        let unchanged = member.protocols == p.protocols;
        member.session_deadline = now + ms(p.session_timeout_ms);
        match state {
            GroupState::CompletingRebalance if unchanged => {
                // A retried JoinGroup after the join completed: answer with the current generation again.
                Pending::Now(group.join_result_for(&p.member_id, false))
            }
            GroupState::Stable if unchanged && !is_leader => {
                Pending::Now(group.join_result_for(&p.member_id, false))
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                update_member(member, &p);
                if let Some(old) = member.join_waiter.replace(tx) {
                    let _ = old.send(JoinResult::error(
                        ResponseError::UnknownMemberId,
                        &p.member_id,
                    ));
                }
                self.wait_for_rebalance(group, now, rx)
            }
        }
    }

    /// KIP-345: a static member comes back with a new member id. The old id is fenced; in a stable group
    /// it keeps its assignment without a rebalance unless the group's protocol would change. As in Kafka
    /// the metadata bytes are not compared: a restarted consumer no longer lists the partitions it owned
    /// (librdkafka sends them in every JoinGroup), which must not cost the whole group a rebalance.
    fn replace_static_member(
        &self,
        group: &mut Group,
        p: JoinParams,
        old_id: String,
        new_id: String,
        now: Instant,
    ) -> Pending<JoinResult> {
        let Some(mut member) = group.members.remove(&old_id) else {
            return self.add_member_and_rebalance(group, p, new_id, now);
        };
        member.fail(ResponseError::FencedInstanceId);
        member.id = new_id.clone();
        update_member(&mut member, &p);
        member.session_deadline = now + ms(p.session_timeout_ms);
        if group.leader.as_deref() == Some(old_id.as_str()) {
            group.leader = Some(new_id.clone());
        }
        if let Some(instance) = &p.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        group.members.insert(new_id.clone(), member);
        tracing::info!(group = %group.id, old = %old_id, new = %new_id, "static member rejoined");
        match group.state {
            GroupState::Stable if group.select_protocol() == group.protocol => {
                self.persist(group);
                Pending::Now(group.join_result_for(&new_id, true))
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(&new_id) {
                    m.join_waiter = Some(tx);
                }
                self.wait_for_rebalance(group, now, rx)
            }
        }
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        p: JoinParams,
        id: String,
        now: Instant,
    ) -> Pending<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if group.members.is_empty() {
            group.protocol_type = Some(p.protocol_type.clone());
        }
        let seq = group.next_seq;
        group.next_seq += 1;
        if let Some(instance) = &p.group_instance_id {
            group.static_members.insert(instance.clone(), id.clone());
        }
        group.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: p.group_instance_id.clone(),
                client_id: p.client_id.clone(),
                client_host: p.client_host.clone(),
                session_timeout: ms(p.session_timeout_ms),
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocol_type: p.protocol_type.clone(),
                protocols: p.protocols.clone(),
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                session_deadline: now + ms(p.session_timeout_ms),
                seq,
            },
        );
        match group.state {
            GroupState::PreparingRebalance => {
                // Initial delayed join: each new member buys the others one more delay, up to the limit.
                if let Some(max) = group.initial_delay_max {
                    let delay = Duration::from_millis(self.config.initial_rebalance_delay_ms);
                    group.rebalance_deadline = Some((now + delay).min(max));
                }
            }
            _ => self.prepare_rebalance(group, now),
        }
        self.try_complete_join(group, now);
        Pending::Later(rx)
    }

    /// A member whose JoinGroup answer is the next generation: start a rebalance unless one is under way,
    /// complete it if every member is already in, and answer when it completes.
    fn wait_for_rebalance(
        &self,
        group: &mut Group,
        now: Instant,
        rx: oneshot::Receiver<JoinResult>,
    ) -> Pending<JoinResult> {
        if group.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(group, now);
        }
        self.try_complete_join(group, now);
        Pending::Later(rx)
    }

    fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
        if group.state == GroupState::CompletingRebalance {
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let delay = self.config.initial_rebalance_delay_ms;
        let rebalance_timeout = group.max_rebalance_timeout();
        if group.state == GroupState::Empty && delay > 0 {
            let max = now + rebalance_timeout.max(Duration::from_millis(delay));
            group.initial_delay_max = Some(max);
            group.rebalance_deadline = Some((now + Duration::from_millis(delay)).min(max));
        } else {
            group.initial_delay_max = None;
            group.rebalance_deadline = Some(now + rebalance_timeout);
        }
        group.sync_deadline = None;
        group.set_state(GroupState::PreparingRebalance);
        tracing::debug!(group = %group.id, generation = group.generation, "preparing rebalance");
    }

    fn try_complete_join(&self, group: &mut Group, now: Instant) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = group.rebalance_deadline.is_none_or(|d| now >= d);
        if group.initial_delay_max.is_some() && !deadline_passed {
            return;
        }
        let all_joined =
            group.members.values().all(|m| m.join_waiter.is_some()) && group.pending.is_empty();
        if all_joined || deadline_passed {
            self.complete_join(group, now);
        }
    }

    fn complete_join(&self, group: &mut Group, now: Instant) {
        let missing: Vec<String> = group
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            tracing::info!(group = %group.id, member = %id, "member did not rejoin in time; removed");
            group.remove_member(&id, ResponseError::UnknownMemberId);
        }
        group.generation = group.generation.wrapping_add(1);
        group.rebalance_deadline = None;
        group.initial_delay_max = None;
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
            group.set_state(GroupState::Empty);
            self.persist(group);
            return;
        }
        group.protocol = group.select_protocol();
        if group
            .leader
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l))
        {
            group.leader = group
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        group.set_state(GroupState::CompletingRebalance);
        group.sync_deadline = Some(now + group.max_rebalance_timeout());
        tracing::info!(
            group = %group.id,
            generation = group.generation,
            members = group.members.len(),
            protocol = group.protocol.as_deref().unwrap_or(""),
            "rebalance: join complete"
        );
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let result = group.join_result_for(&id, false);
            if let Some(m) = group.members.get_mut(&id) {
                m.session_deadline = now + m.session_timeout;
                if let Some(tx) = m.join_waiter.take() {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// SyncGroup.
    pub fn sync_group(&self, p: SyncParams) -> Pending<SyncResult> {
        if let Err(e) = self.store.check_coordinator(&p.group_id) {
            return Pending::Now(SyncResult::error(e));
        }
        let now = Instant::now();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(&p.group_id) else {
            return Pending::Now(SyncResult::error(ResponseError::UnknownMemberId));
        };
        if group.fenced(p.group_instance_id.as_deref(), &p.member_id) {
            return Pending::Now(SyncResult::error(ResponseError::FencedInstanceId));
        }
        if !group.members.contains_key(&p.member_id) {
            return Pending::Now(SyncResult::error(ResponseError::UnknownMemberId));
        }
        if p.generation != group.generation {
            return Pending::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        let type_mismatch = p
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_mismatch = p
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol.as_ref());
        if type_mismatch || name_mismatch {
            return Pending::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        let ok = |group: &Group, assignment: Bytes| SyncResult {
            error: None,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                Pending::Now(SyncResult::error(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                Pending::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let Some(m) = group.members.get_mut(&p.member_id) else {
                    return Pending::Now(SyncResult::error(ResponseError::UnknownMemberId));
                };
                m.session_deadline = now + m.session_timeout;
                let assignment = m.assignment.clone();
                Pending::Now(ok(group, assignment))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(&p.member_id) {
                    m.session_deadline = now + m.session_timeout;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                if group.leader.as_deref() == Some(p.member_id.as_str()) {
                    let assignments: HashMap<String, Bytes> = p.assignments.into_iter().collect();
                    for m in group.members.values_mut() {
                        m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                    }
                    group.set_state(GroupState::Stable);
                    group.sync_deadline = None;
                    self.persist(group);
                    tracing::info!(group = %group.id, generation = group.generation, "rebalance: group stable");
                    let results: Vec<(String, SyncResult)> = group
                        .members
                        .values()
                        .map(|m| (m.id.clone(), ok(group, m.assignment.clone())))
                        .collect();
                    for (id, result) in results {
                        if let Some(tx) = group
                            .members
                            .get_mut(&id)
                            .and_then(|m| m.sync_waiter.take())
                        {
                            let _ = tx.send(result);
                        }
                    }
                }
                Pending::Later(rx)
            }
        }
    }

    /// Heartbeat: keeps a member's session alive and tells it when to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        self.store.check_coordinator(group_id)?;
        let now = Instant::now();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if group.fenced(instance_id, member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if matches!(group.state, GroupState::Empty | GroupState::Dead) {
            return Err(ResponseError::UnknownMemberId);
        }
        let state = group.state;
        let current = group.generation;
        let Some(m) = group.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        m.session_deadline = now + m.session_timeout;
        if state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup for each (member id, group instance id); one result per member.
    pub fn leave_group(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Vec<Result<(), ResponseError>> {
        if let Err(e) = self.store.check_coordinator(group_id) {
            return leaving.iter().map(|_| Err(e)).collect();
        }
        let now = Instant::now();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return leaving
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect();
        };
        let mut removed = false;
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let target = if member_id.is_empty() {
                match instance_id
                    .as_ref()
                    .and_then(|i| group.static_members.get(i))
                {
                    Some(id) => id.clone(),
                    None => {
                        results.push(Err(ResponseError::UnknownMemberId));
                        continue;
                    }
                }
            } else {
                member_id.clone()
            };
            if group.fenced(instance_id.as_deref(), &target) {
                results.push(Err(ResponseError::FencedInstanceId));
                continue;
            }
            if group.pending.remove(&target).is_some() {
                removed = true;
                results.push(Ok(()));
                continue;
            }
            if !group.members.contains_key(&target) {
                results.push(Err(ResponseError::UnknownMemberId));
                continue;
            }
            tracing::info!(group = %group.id, member = %target, "member left the group");
            group.remove_member(&target, ResponseError::UnknownMemberId);
            removed = true;
            results.push(Ok(()));
        }
        if removed {
            if matches!(
                group.state,
                GroupState::Stable | GroupState::CompletingRebalance
            ) {
                self.prepare_rebalance(group, now);
            }
            self.try_complete_join(group, now);
        }
        results
    }

    /// Checks that an OffsetCommit may write for this group: simple consumers (generation -1, no member id)
    /// only while the group has no members; members only with their current generation.
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        self.store.check_coordinator(group_id)?;
        let now = Instant::now();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if group.fenced(instance_id, member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        let state = group.state;
        let current = group.generation;
        let Some(m) = group.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        if state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        m.session_deadline = now + m.session_timeout;
        Ok(())
    }

    /// Checks that a TxnOffsetCommit may write for this group, as Kafka's classic group does for a
    /// transactional commit: an unknown group takes it only without a generation (a simple group); an Empty
    /// group without a generation takes it; a member id, instance id or generation must match the group. A
    /// request without any of them is accepted even by a group with members (TxnOffsetCommit before v3
    /// cannot name one), and the group state is not enforced (no REBALANCE_IN_PROGRESS). Member sessions
    /// are not extended.
    pub fn validate_txn_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        self.store.check_coordinator(group_id)?;
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return Ok(());
        }
        if let Some(instance) = instance_id {
            match group.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(current) if current != member_id => {
                    return Err(ResponseError::FencedInstanceId);
                }
                Some(_) => {}
            }
        }
        if !group.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Ends a producer's transaction in `offsets_partition` of `__consumer_offsets`: writes the COMMIT or
    /// ABORT marker there (the offsets its TxnOffsetCommits staged are materialised or dropped as the shard
    /// replays it) and resolves once the marker is committed. The transaction coordinator calls this for
    /// each `__consumer_offsets` partition of a transaction; an error (NOT_COORDINATOR, LOAD_IN_PROGRESS,
    /// a failed append: see [`CoordinatorError::response_error`]) leaves the transaction open there, to be
    /// retried.
    pub async fn complete_transaction(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), CoordinatorError> {
        self.store
            .complete_transaction(
                offsets_partition,
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
            )
            .await
    }

    /// Every group this broker knows: those with members or a stored state, and those that only have
    /// committed offsets (simple consumers, listed as Empty with no protocol type).
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .lock()
            .values()
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        for id in self.store.groups_with_offsets() {
            if !out.iter().any(|g| g.group_id == id) {
                out.push(GroupListing {
                    group_id: id,
                    protocol_type: String::new(),
                    state: GroupState::Empty,
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Every group of [`Self::list_groups`] with its member count, for the metrics (no member data copied).
    pub fn member_counts(&self) -> Vec<(GroupListing, usize)> {
        let counts: HashMap<String, usize> = self
            .lock()
            .values()
            .map(|g| (g.id.clone(), g.members.len()))
            .collect();
        self.list_groups()
            .into_iter()
            .map(|g| {
                let members = counts.get(&g.group_id).copied().unwrap_or(0);
                (g, members)
            })
            .collect()
    }

    /// A group's state and members, or None when the group is unknown.
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            drop(groups);
            return self
                .store
                .groups_with_offsets()
                .iter()
                .any(|id| id == group_id)
                .then(|| GroupDescription {
                    state: GroupState::Empty,
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                });
        };
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.seq);
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups for one group: only groups without members; removes its metadata and offsets.
    pub fn delete_group(&self, group_id: &str) -> Result<WriteWait, ResponseError> {
        self.delete_group_at(group_id, Instant::now())
    }

    /// DeleteGroups as of `now`. The group's timers run first: a member whose session ended before
    /// `now` no longer counts, even when the ticker has not reached it yet (a static member that
    /// closed without leaving is gone exactly one session timeout after its last heartbeat or commit).
    fn delete_group_at(&self, group_id: &str, now: Instant) -> Result<WriteWait, ResponseError> {
        self.store.check_coordinator(group_id)?;
        let mut groups = self.lock();
        if let Some(group) = groups.get_mut(group_id) {
            self.advance_timers(group, now);
        }
        let known = match groups.get(group_id) {
            Some(g) if !g.members.is_empty() || !g.pending.is_empty() => {
                return Err(ResponseError::NonEmptyGroup);
            }
            Some(_) => true,
            None => self
                .store
                .groups_with_offsets()
                .iter()
                .any(|g| g == group_id),
        };
        if !known {
            return Err(ResponseError::GroupIdNotFound);
        }
        groups.remove(group_id);
        self.store.delete_group(group_id).map_err(|e| {
            tracing::warn!(group = group_id, error = %e, "cannot delete group");
            ResponseError::CoordinatorNotAvailable
        })
    }

    /// Whether a group exists here (members, stored state, or offsets).
    pub fn group_exists(&self, group_id: &str) -> bool {
        self.lock().contains_key(group_id)
            || self
                .store
                .groups_with_offsets()
                .iter()
                .any(|g| g == group_id)
    }

    /// OffsetDelete: whether any member of a consumer group subscribes to `topic`. Subscriptions that cannot
    /// be parsed count as subscribed, so offsets are never deleted from under a member.
    pub fn is_subscribed(&self, group_id: &str, topic: &str) -> bool {
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return false;
        };
        if g.members.is_empty() {
            return false;
        }
        if g.protocol_type.as_deref() != Some("consumer") {
            return true;
        }
        g.members.values().any(|m| {
            let metadata = match &g.protocol {
                Some(p) => m.metadata_for(p),
                None => m
                    .protocols
                    .first()
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
            };
            subscribed_topics(&metadata).is_none_or(|topics| topics.iter().any(|t| t == topic))
        })
    }

    fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for group in groups.values_mut() {
            self.advance_timers(group, now);
        }
    }

    /// Fires the group's timers that are due at `now`: pending joins, member sessions, the sync
    /// deadline and the join (rebalance) deadline. The caller holds the groups lock.
    fn advance_timers(&self, group: &mut Group, now: Instant) {
        let before = group.pending.len();
        group.pending.retain(|_, deadline| *deadline > now);
        let mut changed = group.pending.len() != before;

        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| !m.awaiting() && m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %group.id, member = %id, "member session expired");
            group.remove_member(id, ResponseError::UnknownMemberId);
        }
        if !expired.is_empty()
            && matches!(
                group.state,
                GroupState::Stable | GroupState::CompletingRebalance
            )
        {
            self.prepare_rebalance(group, now);
        }
        changed |= !expired.is_empty();

        if group.state == GroupState::CompletingRebalance
            && group.sync_deadline.is_some_and(|d| now >= d)
        {
            let late: Vec<String> = group
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in &late {
                tracing::info!(group = %group.id, member = %id, "member did not sync in time; removed");
                group.remove_member(id, ResponseError::UnknownMemberId);
            }
            self.prepare_rebalance(group, now);
            changed = true;
        }
        if group.state == GroupState::PreparingRebalance
            && (changed || group.rebalance_deadline.is_none_or(|d| now >= d))
        {
            self.try_complete_join(group, now);
        }
    }
}

fn update_member(member: &mut Member, p: &JoinParams) {
    member.protocols = p.protocols.clone();
    member.protocol_type = p.protocol_type.clone();
    member.session_timeout = ms(p.session_timeout_ms);
    member.session_timeout_ms = p.session_timeout_ms;
    member.rebalance_timeout_ms = p.rebalance_timeout_ms;
    member.client_id = p.client_id.clone();
    member.client_host = p.client_host.clone();
}

fn spawn_write_log(group: String, wait: WriteWait) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = wait.await {
                tracing::warn!(group = %group, error = %e, "group metadata write failed");
            }
        });
    }
}

/// The topics of a ConsumerProtocolSubscription (any version: they always come first), or None when the
/// bytes are not one.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if buf.len() < n {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        buf = tail;
        Some(head)
    };
    let _version = take(2)?;
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    if count < 0 {
        return Some(Vec::new());
    }
    let mut topics = Vec::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let bytes = take(usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(bytes.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MetadataStore;
    use crate::log::{LogConfig, LogManager};

    fn coordinator(delay_ms: u64, max_size: usize) -> (Arc<GroupCoordinator>, tempfile::TempDir) {
        coordinator_with_clock(delay_ms, max_size, Clock::system())
    }

    fn coordinator_with_clock(
        delay_ms: u64,
        max_size: usize,
        clock: Clock,
    ) -> (Arc<GroupCoordinator>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let metadata = Arc::new(MetadataStore::open(dir.path(), 1).expect("metadata store"));
        let logs = LogManager::open(dir.path(), LogConfig::default()).expect("log manager");
        let replicas = crate::replica::ReplicaManager::new(1, logs, Arc::new(LogConfig::default));
        metadata.add_publisher(replicas.clone());
        let config = GroupConfig {
            initial_rebalance_delay_ms: delay_ms,
            max_size,
            ..GroupConfig::default()
        };
        let store = OffsetStore::open(metadata, replicas, config.clone()).expect("offset store");
        (GroupCoordinator::new(store, config, clock), dir)
    }

    fn params(member_id: &str, protocols: &[&str]) -> JoinParams {
        JoinParams {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            require_known_member_id: false,
        }
    }

    fn now(p: Pending<JoinResult>) -> JoinResult {
        match p {
            Pending::Now(r) => r,
            Pending::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later(p: Pending<JoinResult>) -> oneshot::Receiver<JoinResult> {
        match p {
            Pending::Later(rx) => rx,
            Pending::Now(r) => panic!("expected to wait, got {r:?}"),
        }
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
        rx.try_recv().expect("response is ready")
    }

    fn sync(
        c: &GroupCoordinator,
        member: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> Pending<SyncResult> {
        c.sync_group(SyncParams {
            group_id: "g".into(),
            generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        })
    }

    /// Joins one member and brings the group to Stable; returns its member id.
    fn stable_single(c: &GroupCoordinator) -> String {
        let r = ready(&mut later(c.join_group(params("", &["range"]))));
        assert_eq!(r.error, None);
        assert!(matches!(
            sync(c, &r.member_id, r.generation, &[(&r.member_id, "a")]),
            Pending::Later(_)
        ));
        r.member_id
    }

    #[tokio::test]
    async fn groups_follow_the_leadership_of_their_offsets_partition() {
        use crate::cluster::{MetadataDelta, OFFSETS_TOPIC, PartitionRegistration, TopicDelta};

        let (c, _dir) = coordinator(0, 100);
        let joined = ready(&mut later(c.join_group(params("", &["range"]))));
        let Pending::Later(synced) = sync(
            &c,
            &joined.member_id,
            joined.generation,
            &[(&joined.member_id, "a")],
        ) else {
            panic!("the leader's sync waits for the group to be stored");
        };
        let synced = tokio::time::timeout(Duration::from_secs(10), synced)
            .await
            .expect("stored in time")
            .expect("answered");
        assert_eq!(synced.error, None);
        let metadata = c.store().metadata().clone();
        let partition = c.store().partition_for("g");
        let lead = |leader: i32, epoch: i32| {
            let before = metadata.topic(OFFSETS_TOPIC).expect("created by the store");
            let mut after = (*before).clone();
            after.partitions[partition as usize] = PartitionRegistration {
                replicas: vec![2, 1],
                isr: vec![2, 1],
                leader,
                leader_epoch: epoch,
                partition_epoch: epoch,
                ..Default::default()
            };
            metadata.publish_delta(&MetadataDelta {
                topics: vec![TopicDelta::Changed {
                    before,
                    after: Arc::new(after),
                }],
                ..Default::default()
            });
        };
        let listed = |c: &GroupCoordinator| {
            c.list_groups()
                .into_iter()
                .map(|g| (g.group_id, g.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&c), vec![("g".to_string(), GroupState::Stable)]);

        // Broker 2 takes the partition: the group leaves memory and its APIs send the member away.
        lead(2, 1);
        assert!(listed(&c).is_empty());
        assert_eq!(
            c.heartbeat("g", joined.generation, &joined.member_id, None),
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(
            now(c.join_group(params(&joined.member_id, &["range"]))).error,
            Some(ResponseError::NotCoordinator)
        );

        // Back here at a newer epoch: the stored group is restored with its member and generation.
        lead(1, 2);
        assert_eq!(listed(&c), vec![("g".to_string(), GroupState::Stable)]);
        assert_eq!(
            c.heartbeat("g", joined.generation, &joined.member_id, None),
            Ok(())
        );
    }

    #[test]
    fn first_join_from_v4_needs_the_member_id_it_is_given() {
        let (c, _dir) = coordinator(0, 100);
        let mut p = params("", &["range"]);
        p.require_known_member_id = true;
        let r = now(c.join_group(p.clone()));
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        assert!(r.member_id.starts_with("client-"));
        p.member_id = r.member_id.clone();
        let joined = ready(&mut later(c.join_group(p)));
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation, 1);
        assert_eq!(joined.leader, r.member_id);
        assert_eq!(joined.members.len(), 1, "the leader sees every member");
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    }

    #[test]
    fn join_is_validated() {
        let (c, _dir) = coordinator(0, 1);
        let mut p = params("", &["range"]);
        p.session_timeout_ms = 10;
        assert_eq!(
            now(c.join_group(p)).error,
            Some(ResponseError::InvalidSessionTimeout)
        );
        let mut p = params("", &["range"]);
        p.group_id.clear();
        assert_eq!(
            now(c.join_group(p)).error,
            Some(ResponseError::InvalidGroupId)
        );

        stable_single(&c);
        assert_eq!(
            now(c.join_group(params("", &["roundrobin"]))).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(
            now(c.join_group(params("", &["range"]))).error,
            Some(ResponseError::GroupMaxSizeReached)
        );
        assert_eq!(
            now(c.join_group(params("nobody", &["range"]))).error,
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn protocol_is_the_common_one_most_members_prefer() {
        let (c, _dir) = coordinator(0, 100);
        let a = stable_single(&c);
        assert_eq!(c.heartbeat("g", 1, &a, None), Ok(()));
        // Two more members join; all must rejoin before the next generation.
        let mut b = later(c.join_group(params("", &["roundrobin", "range"])));
        assert_eq!(
            c.heartbeat("g", 1, &a, None),
            Err(ResponseError::RebalanceInProgress)
        );
        let mut cc = later(c.join_group(params("", &["roundrobin", "range", "sticky"])));
        assert!(b.try_recv().is_err(), "waits for the old member to rejoin");
        let mut a_join = later(c.join_group(params(&a, &["range", "roundrobin"])));
        let (ra, rb, rc) = (ready(&mut a_join), ready(&mut b), ready(&mut cc));
        for r in [&ra, &rb, &rc] {
            assert_eq!(r.generation, 2);
            assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
            assert_eq!(r.leader, a, "the leader stays the leader");
        }
        assert_eq!(ra.members.len(), 3);
        assert!(rb.members.is_empty() && rc.members.is_empty());

        // Followers wait for the leader's assignment.
        let Pending::Later(mut sb) = sync(&c, &rb.member_id, 2, &[]) else {
            panic!("follower waits for the leader");
        };
        assert_eq!(
            c.heartbeat("g", 1, &a, None),
            Err(ResponseError::IllegalGeneration)
        );
        let assignments = [(a.as_str(), "A"), (rb.member_id.as_str(), "B")];
        let Pending::Later(mut sa) = sync(&c, &a, 2, &assignments) else {
            panic!("leader sync answers through its future");
        };
        assert_eq!(ready(&mut sb).assignment, Bytes::from("B"));
        assert_eq!(ready(&mut sa).assignment, Bytes::from("A"));
        // The member the leader left out gets an empty assignment at once, the group being stable.
        let Pending::Now(sc) = sync(&c, &rc.member_id, 2, &[]) else {
            panic!("stable group answers at once");
        };
        assert_eq!(sc.error, None);
        assert!(sc.assignment.is_empty());
        let d = c.describe_group("g").expect("group exists");
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.members.len(), 3);
    }

    #[test]
    fn delete_group_does_not_count_a_member_whose_session_has_ended() {
        let (c, _dir) = coordinator(0, 100);
        // A static member (KIP-345) closes without LeaveGroup: only its session ends its membership.
        let mut p = params("", &["range"]);
        p.group_instance_id = Some("instance-0".into());
        let r = ready(&mut later(c.join_group(p)));
        assert!(matches!(
            sync(&c, &r.member_id, r.generation, &[(&r.member_id, "a")]),
            Pending::Later(_)
        ));
        let start = Instant::now();
        assert_eq!(
            c.delete_group_at("g", start).err(),
            Some(ResponseError::NonEmptyGroup)
        );
        // Past the 10 s session and before any tick of the ticker: the group is empty and goes.
        assert!(
            c.delete_group_at("g", start + Duration::from_secs(11))
                .is_ok()
        );
        assert!(c.describe_group("g").is_none());
    }

    #[test]
    fn members_that_miss_the_rebalance_or_their_session_are_removed() {
        let (c, _dir) = coordinator(0, 100);
        let a = stable_single(&c);
        let mut b = later(c.join_group(params("", &["range"])));
        // `a` never rejoins: at the rebalance deadline it is dropped and `b` leads generation 2 alone.
        c.tick(Instant::now() + Duration::from_secs(31));
        let rb = ready(&mut b);
        assert_eq!(rb.generation, 2);
        assert_eq!(rb.leader, rb.member_id);
        assert_eq!(
            c.heartbeat("g", 2, &a, None),
            Err(ResponseError::UnknownMemberId)
        );
        assert!(matches!(sync(&c, &rb.member_id, 2, &[]), Pending::Later(_)));
        assert_eq!(c.heartbeat("g", 2, &rb.member_id, None), Ok(()));

        // No heartbeat for a session: removed, and the group, now empty, moves on a generation.
        c.tick(Instant::now() + Duration::from_secs(11));
        let d = c.describe_group("g").expect("group exists");
        assert_eq!(d.state, GroupState::Empty);
        assert!(d.members.is_empty());
        assert_eq!(
            c.activity("g"),
            GroupActivity::EmptySince(c.lock()["g"].state_since_ms)
        );
    }

    #[test]
    fn leader_that_never_syncs_is_removed_at_the_sync_deadline() {
        let (c, _dir) = coordinator(0, 100);
        let a = stable_single(&c);
        let mut b = later(c.join_group(params("", &["range"])));
        let mut a_join = later(c.join_group(params(&a, &["range"])));
        let (ra, rb) = (ready(&mut a_join), ready(&mut b));
        assert_eq!(ra.leader, a);
        let Pending::Later(mut sb) = sync(&c, &rb.member_id, ra.generation, &[]) else {
            panic!("follower waits for the leader");
        };
        c.tick(Instant::now() + Duration::from_secs(31));
        assert_eq!(
            ready(&mut sb).error,
            Some(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            c.heartbeat("g", ra.generation, &a, None),
            Err(ResponseError::UnknownMemberId)
        );
        let again = ready(&mut later(c.join_group(params(&rb.member_id, &["range"]))));
        assert_eq!(again.generation, ra.generation + 1);
        assert_eq!(again.leader, rb.member_id);
    }

    #[test]
    fn initial_rebalance_delay_waits_for_more_members() {
        let (c, _dir) = coordinator(3_000, 100);
        let mut a = later(c.join_group(params("", &["range"])));
        let mut b = later(c.join_group(params("", &["range"])));
        c.tick(Instant::now());
        assert!(
            a.try_recv().is_err(),
            "the first rebalance waits for the delay"
        );
        c.tick(Instant::now() + Duration::from_secs(4));
        let (ra, rb) = (ready(&mut a), ready(&mut b));
        assert_eq!((ra.generation, rb.generation), (1, 1));
        assert_eq!(ra.members.len() + rb.members.len(), 2);
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_its_old_id() {
        let (c, _dir) = coordinator(0, 100);
        let mut p = params("", &["range"]);
        p.group_instance_id = Some("i1".into());
        let r = ready(&mut later(c.join_group(p.clone())));
        assert!(matches!(
            sync(&c, &r.member_id, 1, &[(&r.member_id, "mine")]),
            Pending::Later(_)
        ));

        // The restarted member's metadata differs (it owns nothing now); that alone is no reason to rebalance.
        p.protocols = vec![("range".into(), Bytes::from_static(b"range, owning nothing"))];
        let again = now(c.join_group(p.clone()));
        assert_eq!(again.error, None);
        assert_eq!(again.generation, 1, "no rebalance");
        assert_ne!(again.member_id, r.member_id);
        assert!(
            again.skip_assignment,
            "the static leader keeps the current assignment"
        );
        let Pending::Now(s) = sync(&c, &again.member_id, 1, &[]) else {
            panic!("stable group answers at once");
        };
        assert_eq!(s.assignment, Bytes::from("mine"));
        assert_eq!(
            c.heartbeat("g", 1, &r.member_id, Some("i1")),
            Err(ResponseError::FencedInstanceId)
        );
        assert_eq!(c.heartbeat("g", 1, &again.member_id, Some("i1")), Ok(()));
    }

    #[test]
    fn leave_and_offset_commit_rules() {
        let (c, _dir) = coordinator(0, 100);
        assert_eq!(
            c.validate_commit("g", -1, "", None),
            Ok(()),
            "simple consumer, no group"
        );
        assert_eq!(
            c.validate_commit("g", 3, "m", None),
            Err(ResponseError::IllegalGeneration)
        );
        let a = stable_single(&c);
        assert_eq!(
            c.validate_commit("g", -1, "", None),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(c.validate_commit("g", 1, &a, None), Ok(()));
        assert_eq!(
            c.validate_commit("g", 0, &a, None),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            c.delete_group("g").err(),
            Some(ResponseError::NonEmptyGroup)
        );

        let results = c.leave_group("g", &[(a.clone(), None), ("ghost".into(), None)]);
        assert_eq!(results, vec![Ok(()), Err(ResponseError::UnknownMemberId)]);
        assert_eq!(
            c.describe_group("g").map(|d| d.state),
            Some(GroupState::Empty)
        );
        assert_eq!(c.validate_commit("g", -1, "", None), Ok(()));
        assert!(c.delete_group("g").is_ok());
        assert!(c.describe_group("g").is_none());
        assert_eq!(
            c.delete_group("g").err(),
            Some(ResponseError::GroupIdNotFound)
        );
    }

    #[test]
    fn empty_group_without_offsets_is_forgotten_at_expiration() {
        let (c, _dir) = coordinator(0, 100);
        let a = stable_single(&c);
        c.expire_offsets();
        assert!(
            c.describe_group("g").is_some(),
            "a group with members stays"
        );
        assert_eq!(c.leave_group("g", &[(a, None)]), vec![Ok(())]);
        c.expire_offsets();
        assert!(c.describe_group("g").is_none());
        assert!(c.list_groups().is_empty());
    }

    #[test]
    fn offsets_of_an_empty_group_expire_once_the_retention_has_passed_since_it_emptied() {
        let manual = crate::clock::ManualClock::new(1_700_000_000_000);
        let (c, _dir) = coordinator_with_clock(0, 100, manual.clock());
        let a = stable_single(&c);
        let committed = crate::group::OffsetAndMetadata {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: c.clock().now_ms(),
        };
        let tp = crate::log::TopicPartition::new("t", 0);
        // The in-memory view is updated at once; the write's completion is not needed here.
        drop(
            c.store()
                .commit("g", vec![(tp, committed)])
                .expect("commit"),
        );
        manual.advance(Duration::from_secs(3_600));
        assert_eq!(c.leave_group("g", &[(a, None)]), vec![Ok(())]);
        let retention = u64::try_from(c.config.offsets_retention_ms).expect("positive retention");
        manual.advance(Duration::from_millis(retention - 1));
        c.expire_offsets();
        assert_eq!(
            c.store().fetch_all("g").len(),
            1,
            "retention counts from when the group emptied, not from the commit"
        );
        manual.advance(Duration::from_millis(1));
        c.expire_offsets();
        assert!(c.store().fetch_all("g").is_empty());
    }

    #[test]
    fn subscription_topics_are_parsed() {
        let mut b = bytes::BytesMut::new();
        use bytes::BufMut;
        b.put_i16(1);
        b.put_i32(2);
        for t in ["orders", "users"] {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
        }
        b.put_i32(-1);
        assert_eq!(
            subscribed_topics(&b),
            Some(vec!["orders".to_string(), "users".to_string()])
        );
        assert_eq!(subscribed_topics(&[0, 1, 0]), None);
    }
}
