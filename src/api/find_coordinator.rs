//! FindCoordinator: on a single node, this broker coordinates every consumer group and every transactional
//! id (COORDINATOR_LOAD_IN_PROGRESS while the id's `__transaction_state` partition loads).
//!
//! Also the API whose presence librdkafka checks before it will compress with lz4, so it is advertised even
//! before the group APIs exist. Share-group coordinators are not available yet.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::Apis;

/// Kafka's coordinator key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let answer = |key: &StrBytes| -> Coordinator {
        let coordinator = Coordinator::default().with_key(key.clone());
        let this_broker = |c: Coordinator| {
            c.with_node_id(BrokerId(apis.node_id))
                .with_host(StrBytes::from_string(apis.advertised.host.clone()))
                .with_port(apis.advertised.port as i32)
        };
        let refused = |c: Coordinator, e: ResponseError| {
            c.with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
        };
        if request.key_type == GROUP {
            this_broker(coordinator)
        } else if request.key_type == TRANSACTION {
            // Kafka: a null or empty transactional id is INVALID_REQUEST.
            match key.is_empty() {
                true => refused(coordinator, ResponseError::InvalidRequest),
                false => match apis.txn.coordinator_status(key.as_str()) {
                    Ok(()) => this_broker(coordinator),
                    Err(e) => refused(coordinator, e),
                },
            }
        } else {
            coordinator
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "brook has no share-group coordinator yet",
                )))
        }
    };
    if version >= 4 {
        // Batched (KIP-699): one answer per key.
        return FindCoordinatorResponse::default()
            .with_coordinators(request.coordinator_keys.iter().map(answer).collect());
    }
    let one = answer(&request.key);
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message.filter(|_| version >= 1))
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}
