//! This broker's side of the cluster membership (Kafka's `BrokerLifecycleManager`): registers with the
//! metadata quorum under a fresh incarnation, heartbeats to the active controller every
//! `broker.heartbeat.interval.ms`, registers again when told its epoch is stale (it was fenced and
//! unregistered, or the controller lost its session), and on a clean stop asks for a controlled shutdown and
//! waits until its leaderships moved away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;

use crate::cluster::MetadataError;

use super::command::BrokerRegistered;
use super::quorum_controller::{HeartbeatRequest, LeaderRequest, LeaderResponse, QuorumController};
use super::records::BrokerEndpoint;
use super::{ControllerCommand, ControllerResponse};

/// What this broker registers with.
#[derive(Clone, Debug)]
pub struct Registration {
    pub broker_id: i32,
    pub cluster_id: String,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// The broker epoch written at the last clean shutdown (-1: the last stop was not clean, or unknown):
    /// the controller keeps this broker eligible to lead only when it matches (KIP-966).
    pub previous_broker_epoch: i64,
}

/// The broker's membership, shared by the heartbeat task and the shutdown path.
pub struct BrokerLifecycle {
    controller: Arc<QuorumController>,
    registration: Registration,
    heartbeat_interval: Duration,
    /// How long one heartbeat may wait for its answer.
    heartbeat_timeout: Duration,
    epoch: AtomicI64,
    /// What the next registration names as its previous epoch: the clean-shutdown epoch at first, then the
    /// epoch of this process's own last registration (its log lost nothing since).
    previous_epoch: AtomicI64,
    want_shut_down: AtomicBool,
    /// True once the controller answered "unfenced"; the broker serves clients from then on.
    unfenced: watch::Sender<bool>,
    /// Set when the controller says this broker may stop (its leaderships moved away).
    may_stop: watch::Sender<bool>,
}

impl BrokerLifecycle {
    pub fn new(
        controller: Arc<QuorumController>,
        registration: Registration,
        heartbeat_interval: Duration,
        session_timeout: Duration,
    ) -> Arc<BrokerLifecycle> {
        let previous_epoch = registration.previous_broker_epoch;
        Arc::new(BrokerLifecycle {
            controller,
            registration,
            heartbeat_interval,
            heartbeat_timeout: heartbeat_interval.max(session_timeout / 3),
            epoch: AtomicI64::new(-1),
            previous_epoch: AtomicI64::new(previous_epoch),
            want_shut_down: AtomicBool::new(false),
            unfenced: watch::Sender::new(false),
            may_stop: watch::Sender::new(false),
        })
    }

    /// The broker epoch (the metadata log index of the registration); -1 before it registered.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Resolves once the controller unfenced this broker.
    pub fn unfenced(&self) -> watch::Receiver<bool> {
        self.unfenced.subscribe()
    }

    async fn register(&self) -> Result<i64, MetadataError> {
        let command = ControllerCommand::RegisterBroker {
            broker_id: self.registration.broker_id,
            incarnation_id: self.controller.incarnation(),
            cluster_id: self.registration.cluster_id.clone(),
            endpoints: self.registration.endpoints.clone(),
            rack: self.registration.rack.clone(),
            previous_broker_epoch: self.previous_epoch.load(Ordering::Relaxed),
        };
        let answer = match self
            .controller
            .call_leader(&LeaderRequest::Register(command))
            .await?
        {
            LeaderResponse::Registered(response) => response,
            LeaderResponse::Error(code) => {
                return Err(MetadataError::Controller {
                    error: ResponseError::try_from_code(code)
                        .unwrap_or(ResponseError::UnknownServerError),
                    message: "the quorum leader could not register this broker".into(),
                });
            }
            other => {
                return Err(MetadataError::Controller {
                    error: ResponseError::UnknownServerError,
                    message: format!("unexpected answer to a registration: {other:?}"),
                });
            }
        };
        // The leader applied it; this node's image holds it once it applied the same index.
        match answer {
            ControllerResponse::RegisterBroker(Ok(BrokerRegistered { broker_epoch })) => {
                Ok(broker_epoch)
            }
            other => {
                let error = other.first_error();
                let code = error
                    .as_ref()
                    .and_then(|e| e.error())
                    .unwrap_or(ResponseError::UnknownServerError);
                Err(MetadataError::Controller {
                    error: code,
                    message: error.and_then(|e| e.message).unwrap_or_default(),
                })
            }
        }
    }

    /// Registers (retrying while the quorum elects a leader), then heartbeats until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if self.epoch() < 0 {
                match self.register().await {
                    Ok(epoch) => {
                        tracing::info!(broker_epoch = epoch, "registered with the metadata quorum");
                        self.epoch.store(epoch, Ordering::Relaxed);
                        self.previous_epoch.store(epoch, Ordering::Relaxed);
                        self.controller.set_broker_epoch(epoch);
                    }
                    Err(MetadataError::Controller { error, message })
                        if error == ResponseError::InconsistentClusterId
                            || error == ResponseError::DuplicateBrokerRegistration =>
                    {
                        tracing::error!(?error, "broker registration refused: {message}");
                    }
                    Err(e) => tracing::debug!(error = %e, "broker registration not yet possible"),
                }
            } else {
                self.heartbeat().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.heartbeat_interval) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn heartbeat(&self) {
        let request = HeartbeatRequest {
            broker_id: self.registration.broker_id,
            broker_epoch: self.epoch(),
            applied_index: *self.controller.quorum().applied().borrow(),
            want_fence: false,
            want_shut_down: self.want_shut_down.load(Ordering::Relaxed),
        };
        // Bounded well inside the session: a heartbeat stuck on a leader that went away must not keep the
        // next one from reaching the new leader before the session lapses.
        let request = LeaderRequest::Heartbeat(request);
        let call = self.controller.call_leader(&request);
        let answer = match tokio::time::timeout(self.heartbeat_timeout, call).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::debug!("heartbeat not answered within {:?}", self.heartbeat_timeout);
                return;
            }
        };
        let response = match answer {
            Ok(LeaderResponse::Heartbeat(response)) => response,
            Ok(other) => {
                tracing::debug!(?other, "heartbeat not answered");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not answered");
                return;
            }
        };
        match ResponseError::try_from_code(response.error_code) {
            None => {
                self.unfenced.send_if_modified(|u| {
                    let changed = *u == response.is_fenced;
                    *u = !response.is_fenced;
                    changed
                });
                if response.should_shut_down {
                    self.may_stop.send_replace(true);
                }
            }
            Some(ResponseError::StaleBrokerEpoch | ResponseError::BrokerIdNotRegistered) => {
                tracing::warn!(
                    "the controller no longer knows this broker's epoch; registering again"
                );
                self.epoch.store(-1, Ordering::Relaxed);
            }
            Some(error) => tracing::debug!(?error, "heartbeat refused"),
        }
    }

    /// Asks the controller to move this broker's leaderships away and waits until it says this broker may
    /// stop, or `deadline` passes (the broker then stops anyway; the session expiry fences it).
    pub async fn controlled_shutdown(&self, deadline: Duration) {
        if self.epoch() < 0 {
            return;
        }
        self.want_shut_down.store(true, Ordering::Relaxed);
        let mut may_stop = self.may_stop.subscribe();
        let wait = async {
            loop {
                self.heartbeat().await;
                if *may_stop.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.heartbeat_interval.min(Duration::from_millis(200))) => {}
                    _ = may_stop.changed() => {}
                }
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(()) => tracing::info!("controlled shutdown: leaderships moved away"),
            Err(_) => tracing::warn!(
                "controlled shutdown did not finish in {deadline:?}; stopping anyway"
            ),
        }
    }
}
