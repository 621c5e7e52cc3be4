//! DescribeCluster: the cluster id, the controller and the brokers as a KRaft broker answers them (Kafka's
//! `KafkaApis.handleDescribeCluster`): every broker with an endpoint on the request's listener, fenced
//! ones only when asked (v2), and a live broker as the controller. Brokers do not describe the
//! controllers (endpoint type 2): only a controller listener does, so a broker answers that request
//! MISMATCHED_ENDPOINT_TYPE.

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::acl_operations::{ResourceType, authorized_operations};
use super::{Apis, metadata_cache};

/// Endpoint types (v1+, KIP-919).
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    if version >= 1 && request.endpoint_type != ENDPOINT_BROKERS {
        // Only the error: no cluster id, brokers or controller (Kafka's computeDescribeClusterResponse).
        let (error, message) = if request.endpoint_type == ENDPOINT_CONTROLLERS {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                    .to_string(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {}", request.endpoint_type),
            )
        };
        return DescribeClusterResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let image = apis.metadata.image();
    let brokers: Vec<DescribeClusterBroker> = metadata_cache::broker_nodes(&image, &ctx.listener)
        .into_iter()
        .filter(|node| !node.fenced || request.include_fenced_brokers)
        .map(|node| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(node.id))
                .with_host(StrBytes::from_string(node.host))
                .with_port(i32::from(node.port))
                .with_rack(node.rack.map(StrBytes::from_string))
                .with_is_fenced(node.fenced)
        })
        .collect();
    // A controller the client could not find among the brokers would only confuse it: -1 then.
    let controller = metadata_cache::controller_id(&image);
    let controller = if brokers.iter().any(|b| b.broker_id.0 == controller) {
        controller
    } else {
        -1
    };
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(apis.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_cluster_authorized_operations(authorized_operations(
            ResourceType::Cluster,
            request.include_cluster_authorized_operations,
        ))
        .with_brokers(brokers);
    if version >= 1 {
        response.with_endpoint_type(ENDPOINT_BROKERS)
    } else {
        response
    }
}
