//! InitProducerId: gives an idempotent producer its producer id (KIP-98). Without a transactional id any
//! broker answers, always with a fresh id at epoch 0: a KIP-360 bump request (v3+ naming the current id and
//! epoch) gets a new id too, as in Kafka, and the partitions accept the new id at any sequence. With one,
//! the transaction coordinator answers: the id's producer id with its epoch bumped (fencing any earlier
//! instance), after aborting a transaction the id left open.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Apis;
use super::groups::Outcome;
use crate::api::context::RequestContext;
use crate::cluster::ProducerIdError;

/// InitProducerId before v4 knows no PRODUCER_FENCED (KIP-588): INVALID_PRODUCER_EPOCH instead.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 4;

pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    request: &InitProducerIdRequest,
) -> Outcome<InitProducerIdResponse> {
    // v3+: a producer id and an epoch, both or neither (Kafka: INVALID_REQUEST).
    let expected = match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => return Outcome::Respond(error(ResponseError::InvalidRequest)),
        (id, epoch) => Some((id, epoch)),
    };
    match request.transactional_id.as_ref().map(|id| id.as_str()) {
        None => Outcome::Respond(idempotent(apis)),
        // An empty transactional id is no id at all, and not a valid one either (Kafka: INVALID_REQUEST).
        Some("") => Outcome::Respond(error(ResponseError::InvalidRequest)),
        Some(id) => {
            let txn = apis.txn.clone();
            let id = id.to_string();
            let timeout_ms = request.transaction_timeout_ms;
            let version = ctx.api_version;
            Outcome::Wait(Box::pin(async move {
                match txn.init_producer_id(&id, timeout_ms, expected).await {
                    Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(epoch),
                    Err(e) => error(crate::api::txn::fenced_for_version(
                        e,
                        version,
                        FIRST_VERSION_WITH_PRODUCER_FENCED,
                    )),
                }
            }))
        }
    }
}

/// The broker's durable producer id allocator as the transaction coordinator asks it.
pub fn producer_id_source(
    metadata: std::sync::Arc<crate::cluster::MetadataStore>,
) -> crate::txn::ProducerIdSource {
    std::sync::Arc::new(move || {
        metadata.producer_ids().generate().map_err(|e| {
            tracing::error!(error = %e, "cannot allocate a producer id");
            producer_id_error(&e)
        })
    })
}

fn producer_id_error(e: &ProducerIdError) -> ResponseError {
    match e {
        // Retriable for the client: a full disk may clear.
        ProducerIdError::Storage(_) => ResponseError::CoordinatorNotAvailable,
        ProducerIdError::Exhausted => ResponseError::UnknownServerError,
    }
}

fn idempotent(apis: &Apis) -> InitProducerIdResponse {
    match apis.metadata.producer_ids().generate() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "InitProducerId failed");
            error(producer_id_error(&e))
        }
    }
}

fn error(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
