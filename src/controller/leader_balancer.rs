//! Automatic preferred leader elections (`auto.leader.rebalance.enable`, Kafka's
//! `QuorumController.maybeScheduleNextBalancePartitionLeaders`): after a broker comes back, its partitions
//! stay led by the replicas that took over; every `leader.imbalance.check.interval.seconds` the active
//! controller hands each partition whose preferred replica (the first) is in sync and alive back to it.
//! As in Kafka's KRaft controller, any imbalanced partition qualifies:
//! `leader.imbalance.per.broker.percentage` is accepted but not read.
//!
//! Every node runs the task; only the quorum leader acts, so the elections are proposed once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::command::ElectionType;
use super::quorum_controller::QuorumController;
use super::{ControllerCommand, ControllerResponse};
use crate::config::Config;

/// Most elections one command carries (Kafka's `maxElectionsPerImbalance`); a full batch is followed by
/// the next one at once, so a large cluster is balanced in bounded commands.
pub const MAX_ELECTIONS_PER_IMBALANCE: usize = 1_000;

/// Starts the balancer when `auto.leader.rebalance.enable` is true (None otherwise); it ends when `stop`
/// turns true or its sender is dropped. The lead calls it once per cluster member:
/// `leader_balancer::spawn(controller.clone(), config, stop.subscribe())`.
pub fn spawn(
    controller: Arc<QuorumController>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !config.auto_leader_rebalance_enable {
        return None;
    }
    let interval = Duration::from_secs(config.leader_imbalance_check_interval_seconds.max(1));
    Some(tokio::spawn(run(controller, interval, stop)))
}

async fn run(
    controller: Arc<QuorumController>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
        if *stop.borrow() {
            return;
        }
        if controller.quorum().is_leader() {
            balance(&controller).await;
        }
    }
}

/// Elects the preferred replicas of the imbalanced partitions, a batch at a time.
async fn balance(controller: &QuorumController) {
    loop {
        let batch = controller
            .state()
            .read()
            .imbalanced_partitions(MAX_ELECTIONS_PER_IMBALANCE);
        let named: usize = batch.iter().map(|t| t.partitions.len()).sum();
        if named == 0 {
            return;
        }
        let command = ControllerCommand::ElectLeaders {
            election_type: ElectionType::Preferred,
            partitions: Some(batch),
        };
        match controller.commit(&command).await {
            Ok(ControllerResponse::ElectLeaders(results)) => {
                let elected = results
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.error.is_ok())
                    .count();
                tracing::info!(
                    imbalanced = named,
                    elected,
                    "moved leaderships back to preferred replicas"
                );
                // Nothing elected: the state moved meanwhile; the next check looks again.
                if elected == 0 || named < MAX_ELECTIONS_PER_IMBALANCE {
                    return;
                }
            }
            Ok(other) => {
                tracing::warn!(?other, "unexpected answer to a preferred leader election");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "preferred leader election failed; retrying at the next check");
                return;
            }
        }
    }
}
