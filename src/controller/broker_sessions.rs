//! The active controller's soft state about brokers (Kafka's `BrokerHeartbeatManager` sessions): when each
//! was last heard from, the metadata offset it has applied, and where its controlled shutdown began. Kept
//! only on the quorum leader and rebuilt when leadership arrives: every registered broker then counts as
//! just seen, so a new leader does not fence the cluster at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::heartbeat::Liveness;
use super::state::ControllerState;

#[derive(Clone, Copy, Debug)]
struct Session {
    last_contact: Instant,
    applied_offset: i64,
    controlled_shutdown_offset: Option<i64>,
}

/// Sessions by broker id, on the active controller.
#[derive(Debug)]
pub struct BrokerSessions {
    session_timeout: Duration,
    sessions: HashMap<i32, Session>,
}

impl BrokerSessions {
    pub fn new(session_timeout: Duration) -> BrokerSessions {
        BrokerSessions {
            session_timeout,
            sessions: HashMap::new(),
        }
    }

    /// Leadership just came to this node: every broker of `state` counts as seen now.
    pub fn seed(&mut self, state: &ControllerState, now: Instant) {
        self.sessions.clear();
        for broker in state.brokers() {
            self.sessions.insert(
                broker.id,
                Session {
                    last_contact: now,
                    applied_offset: -1,
                    controlled_shutdown_offset: None,
                },
            );
        }
    }

    /// A heartbeat arrived from `broker_id`, which has applied the log up to `applied_offset`.
    pub fn touch(&mut self, broker_id: i32, applied_offset: i64, now: Instant) {
        let session = self.sessions.entry(broker_id).or_insert(Session {
            last_contact: now,
            applied_offset,
            controlled_shutdown_offset: None,
        });
        session.last_contact = now;
        session.applied_offset = applied_offset;
    }

    /// The broker entered controlled shutdown at metadata offset `offset`.
    pub fn controlled_shutdown_began(&mut self, broker_id: i32, offset: i64) {
        if let Some(session) = self.sessions.get_mut(&broker_id) {
            session.controlled_shutdown_offset.get_or_insert(offset);
        }
    }

    pub fn forget(&mut self, broker_id: i32) {
        self.sessions.remove(&broker_id);
    }

    /// True while the broker's session is alive.
    pub fn is_alive(&self, broker_id: i32, now: Instant) -> bool {
        self.sessions
            .get(&broker_id)
            .is_some_and(|s| now.saturating_duration_since(s.last_contact) <= self.session_timeout)
    }

    /// Brokers of `state` that are unfenced but whose session lapsed, with their epochs: to be fenced.
    pub fn expired(&self, state: &ControllerState, now: Instant) -> Vec<(i32, i64)> {
        state
            .brokers()
            .filter(|b| !b.fenced && !self.is_alive(b.id, now))
            .map(|b| (b.id, b.epoch))
            .collect()
    }

    /// What [`super::heartbeat::decide_heartbeat`] needs beside the replicated state.
    pub fn liveness(&self, state: &ControllerState, broker_id: i32, committed: i64) -> Liveness {
        let lowest_active_offset = state
            .brokers()
            .filter(|b| !b.fenced && !b.in_controlled_shutdown && b.id != broker_id)
            .map(|b| self.sessions.get(&b.id).map_or(-1, |s| s.applied_offset))
            .min()
            .unwrap_or(committed);
        Liveness {
            last_committed_offset: committed,
            controlled_shutdown_offset: self
                .sessions
                .get(&broker_id)
                .and_then(|s| s.controlled_shutdown_offset),
            lowest_active_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_lapse_after_the_timeout() {
        let mut sessions = BrokerSessions::new(Duration::from_millis(100));
        let t0 = Instant::now();
        sessions.touch(2, 5, t0);
        assert!(sessions.is_alive(2, t0 + Duration::from_millis(100)));
        assert!(!sessions.is_alive(2, t0 + Duration::from_millis(101)));
        sessions.touch(2, 6, t0 + Duration::from_millis(90));
        assert!(sessions.is_alive(2, t0 + Duration::from_millis(150)));
        assert!(!sessions.is_alive(3, t0));
        sessions.forget(2);
        assert!(!sessions.is_alive(2, t0));
    }
}
