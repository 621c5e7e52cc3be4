//! InitProducerId: gives an idempotent producer its producer id (KIP-98). Without a transactional id any
//! broker answers, always with a fresh id at epoch 0: a KIP-360 bump request (v3+ naming the current id and
//! epoch) gets a new id too, as in Kafka, and the partitions accept the new id at any sequence.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Apis;
use crate::api::context::RequestContext;
use crate::cluster::ProducerIdError;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    match request.transactional_id.as_ref().map(|id| id.as_str()) {
        None => idempotent(apis),
        // An empty transactional id is no id at all, and not a valid one either (Kafka: INVALID_REQUEST).
        Some("") => error(ResponseError::InvalidRequest),
        // Transactions need the transaction coordinator; FindCoordinator(TRANSACTION) does not name one yet.
        Some(_) => error(ResponseError::CoordinatorNotAvailable),
    }
}

fn idempotent(apis: &Apis) -> InitProducerIdResponse {
    match apis.metadata.producer_ids().generate() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "InitProducerId failed");
            error(match e {
                // Retriable for the client: a full disk may clear.
                ProducerIdError::Storage(_) => ResponseError::CoordinatorNotAvailable,
                ProducerIdError::Exhausted => ResponseError::UnknownServerError,
            })
        }
    }
}

fn error(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
