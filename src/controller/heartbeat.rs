//! What a broker's heartbeat asks of the controller (Kafka's `BrokerHeartbeatManager.
//! calculateNextBrokerState`). Liveness itself is soft state of the active controller (session timers,
//! each broker's controlled-shutdown offset, the lowest metadata offset active brokers have applied); given
//! those, this pure function answers which command to propose, if any, and what to reply once it commits.

use super::command::{ApiError, ControllerCommand};
use super::state::ControllerState;

/// A BrokerHeartbeat request's fields (api 63).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerHeartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The metadata log offset the broker has applied.
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// A broker's lifecycle state as the controller sees it (Kafka's `BrokerControlState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerControlState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

/// What to propose for a heartbeat, and the reply once it (if anything) has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatDecision {
    pub next: BrokerControlState,
    pub command: Option<ControllerCommand>,
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    pub should_shut_down: bool,
}

/// The soft state the active controller keeps beside the replicated one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// The last committed offset of the metadata log.
    pub last_committed_offset: i64,
    /// The offset at which this broker entered controlled shutdown, if it did.
    pub controlled_shutdown_offset: Option<i64>,
    /// The lowest metadata offset every active broker has applied.
    pub lowest_active_offset: i64,
}

/// Decides a heartbeat: FENCED -> UNFENCED once the broker has applied its own registration; a fenced
/// broker asking to stop stops at once; an unfenced one asking to stop enters controlled shutdown while
/// it leads partitions; controlled shutdown ends (fenced) once it leads nothing and every active broker
/// has seen it.
pub fn decide_heartbeat(
    state: &ControllerState,
    request: &BrokerHeartbeat,
    liveness: Liveness,
) -> Result<HeartbeatDecision, ApiError> {
    let broker = state
        .broker(request.broker_id)
        .filter(|b| b.epoch == request.broker_epoch)
        .ok_or_else(|| {
            ApiError::new(
                kafka_protocol::ResponseError::StaleBrokerEpoch,
                format!(
                    "Broker {} is not registered at epoch {}",
                    request.broker_id, request.broker_epoch
                ),
            )
        })?;
    use BrokerControlState::*;
    // A broker in controlled shutdown stays there until it stops, fenced or not.
    let current = if broker.in_controlled_shutdown {
        ControlledShutdown
    } else if broker.fenced {
        Fenced
    } else {
        Unfenced
    };
    let leads = || {
        state
            .topics()
            .flat_map(|t| &t.partitions)
            .any(|p| p.leader == request.broker_id)
    };
    let next = match current {
        Fenced if request.want_shut_down => ShutdownNow,
        Fenced if !request.want_fence && request.current_metadata_offset >= broker.epoch => {
            Unfenced
        }
        Fenced => Fenced,
        Unfenced if request.want_fence && request.want_shut_down => ShutdownNow,
        Unfenced if request.want_fence => Fenced,
        Unfenced if request.want_shut_down && leads() => ControlledShutdown,
        Unfenced if request.want_shut_down => ShutdownNow,
        Unfenced => Unfenced,
        ControlledShutdown if leads() => ControlledShutdown,
        ControlledShutdown
            if liveness
                .controlled_shutdown_offset
                .is_some_and(|offset| offset <= liveness.lowest_active_offset) =>
        {
            ShutdownNow
        }
        ControlledShutdown => ControlledShutdown,
        ShutdownNow => ShutdownNow,
    };
    let (broker_id, broker_epoch) = (request.broker_id, request.broker_epoch);
    let command = match (current, next) {
        (Fenced, Unfenced) => Some(ControllerCommand::UnfenceBroker {
            broker_id,
            broker_epoch,
        }),
        (Unfenced, ControlledShutdown) => Some(ControllerCommand::BeginControlledShutdown {
            broker_id,
            broker_epoch,
        }),
        (Unfenced | ControlledShutdown, Fenced | ShutdownNow) => {
            Some(ControllerCommand::FenceBroker {
                broker_id,
                broker_epoch,
            })
        }
        _ => None,
    };
    Ok(HeartbeatDecision {
        next,
        command,
        is_caught_up: request.current_metadata_offset >= liveness.last_committed_offset,
        is_fenced: matches!(next, Fenced | ShutdownNow),
        in_controlled_shutdown: next == ControlledShutdown,
        should_shut_down: next == ShutdownNow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::command::{ControllerResponse, NewTopic};
    use uuid::Uuid;

    fn heartbeat(
        epoch: i64,
        offset: i64,
        want_fence: bool,
        want_shut_down: bool,
    ) -> BrokerHeartbeat {
        BrokerHeartbeat {
            broker_id: 1,
            broker_epoch: epoch,
            current_metadata_offset: offset,
            want_fence,
            want_shut_down,
        }
    }

    const LIVE: Liveness = Liveness {
        last_committed_offset: 10,
        controlled_shutdown_offset: None,
        lowest_active_offset: 0,
    };

    #[test]
    fn a_broker_goes_through_its_lifecycle() {
        let mut state = ControllerState::new();
        let mut index = 0;
        let mut apply = |state: &mut ControllerState, command: ControllerCommand| {
            index += 1;
            state.apply(index, &command).response
        };
        apply(
            &mut state,
            ControllerCommand::InitializeCluster {
                cluster_id: "c".into(),
            },
        );
        let ControllerResponse::RegisterBroker(Ok(registered)) = apply(
            &mut state,
            ControllerCommand::RegisterBroker {
                broker_id: 1,
                incarnation_id: Uuid::from_u128(1),
                cluster_id: "c".into(),
                endpoints: Vec::new(),
                rack: None,
                previous_broker_epoch: -1,
            },
        ) else {
            panic!("not registered");
        };
        let epoch = registered.broker_epoch;

        // Not caught up with its own registration: stays fenced.
        let d = decide_heartbeat(&state, &heartbeat(epoch, epoch - 1, false, false), LIVE).unwrap();
        assert_eq!(
            (d.next, d.command.clone(), d.is_fenced),
            (BrokerControlState::Fenced, None, true)
        );
        let d = decide_heartbeat(&state, &heartbeat(epoch, epoch, false, false), LIVE).unwrap();
        assert_eq!(d.next, BrokerControlState::Unfenced);
        assert!(!d.is_fenced && !d.is_caught_up);
        apply(&mut state, d.command.unwrap());
        assert!(!state.broker(1).unwrap().fenced);

        // Leading something, it shuts down in a controlled way.
        apply(
            &mut state,
            ControllerCommand::CreateTopics {
                topics: vec![NewTopic {
                    name: "t".into(),
                    topic_id: Uuid::from_u128(5),
                    num_partitions: 1,
                    replication_factor: 1,
                    assignments: Vec::new(),
                    configs: Default::default(),
                }],
                validate_only: false,
            },
        );
        let d = decide_heartbeat(&state, &heartbeat(epoch, 10, false, true), LIVE).unwrap();
        assert_eq!(d.next, BrokerControlState::ControlledShutdown);
        assert!(d.in_controlled_shutdown && !d.should_shut_down && d.is_caught_up);
        apply(&mut state, d.command.unwrap());
        // Its only partition went leaderless: it may stop once every active broker has seen that.
        let waiting = Liveness {
            controlled_shutdown_offset: Some(6),
            lowest_active_offset: 5,
            ..LIVE
        };
        let d = decide_heartbeat(&state, &heartbeat(epoch, 10, false, true), waiting).unwrap();
        assert_eq!(
            (d.next, d.command.clone()),
            (BrokerControlState::ControlledShutdown, None)
        );
        let seen = Liveness {
            lowest_active_offset: 6,
            ..waiting
        };
        let d = decide_heartbeat(&state, &heartbeat(epoch, 10, false, true), seen).unwrap();
        assert!(d.should_shut_down && d.is_fenced);
        assert!(matches!(
            d.command,
            Some(ControllerCommand::FenceBroker { .. })
        ));

        let stale = decide_heartbeat(&state, &heartbeat(epoch + 1, 10, false, false), LIVE);
        assert_eq!(
            stale.unwrap_err().error(),
            Some(kafka_protocol::ResponseError::StaleBrokerEpoch)
        );
    }
}
