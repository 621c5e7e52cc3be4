//! FindCoordinator: the coordinator of a group or transactional id is the leader of the key's partition
//! of `__consumer_offsets` / `__transaction_state`, named by its endpoint on the request's listener
//! (Kafka's `KafkaApis.getCoordinator`); COORDINATOR_NOT_AVAILABLE when that partition has no live leader
//! reachable on the listener. Before the internal topic exists a single node is the coordinator: it
//! creates the topic on first use. When this broker coordinates a transactional id whose shard is still
//! loading, COORDINATOR_LOAD_IN_PROGRESS. In a cluster the first request for a missing internal topic
//! creates it through the controller and is answered COORDINATOR_NOT_AVAILABLE, as Kafka answers it.
//!
//! Also the API whose presence librdkafka checks before it will compress with lz4, so it is advertised even
//! before the group APIs exist. Share-group coordinators are not available yet.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::metadata_cache::{self, Node};
use crate::cluster::{MetadataImage, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};

/// Kafka's coordinator key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    request: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let image = apis.metadata.image();
    let answer = |key: &StrBytes| -> Coordinator {
        let coordinator = Coordinator::default().with_key(key.clone());
        let found = match request.key_type {
            GROUP => locate(
                apis,
                &image,
                &ctx.listener,
                OFFSETS_TOPIC,
                apis.groups.store().partition_for(key.as_str()),
            ),
            // Kafka: a null or empty transactional id is INVALID_REQUEST.
            TRANSACTION if key.is_empty() => Err(ResponseError::InvalidRequest),
            TRANSACTION => locate(
                apis,
                &image,
                &ctx.listener,
                TRANSACTION_STATE_TOPIC,
                apis.txn.partition_for(key.as_str()),
            )
            .and_then(|node| match node.id == apis.node_id {
                true => apis.txn.coordinator_status(key.as_str()).map(|()| node),
                false => Ok(node),
            }),
            _ => {
                return coordinator
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "brook has no share-group coordinator yet",
                    )));
            }
        };
        match found {
            Ok(node) => coordinator
                .with_node_id(BrokerId(node.id))
                .with_host(StrBytes::from_string(node.host))
                .with_port(i32::from(node.port)),
            // Kafka's Node.noNode(): id -1, empty host, port -1.
            Err(e) => coordinator
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
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

/// The leader of `partition` of the internal `topic`, on `listener`.
fn locate(
    apis: &Apis,
    image: &MetadataImage,
    listener: &str,
    topic: &str,
    partition: i32,
) -> Result<Node, ResponseError> {
    let leader = match image.topic(topic) {
        Some(topic) => topic
            .partition(partition)
            .map_or(-1, |registration| registration.leader),
        // In a cluster, as Kafka: the first request creates the internal topic through the controller,
        // which places its leaders, and is answered COORDINATOR_NOT_AVAILABLE; the client asks again.
        None if apis.metadata.quorum().is_some() => {
            let created = if topic == OFFSETS_TOPIC {
                apis.groups
                    .store()
                    .ensure_topic()
                    .map_err(|e| e.to_string())
            } else {
                apis.txn.ensure_topic().map_err(|e| e.to_string())
            };
            if let Err(error) = created {
                static FAILED: super::LogThrottle = super::LogThrottle::new();
                if let Some(times) = FAILED.hit() {
                    tracing::warn!(topic, %error, times, "could not create the coordinator's topic");
                }
            }
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        // A single node creates it on the first write and coordinates every key.
        None => apis.node_id,
    };
    metadata_cache::alive_broker_node(image, leader, listener)
        .ok_or(ResponseError::CoordinatorNotAvailable)
}
