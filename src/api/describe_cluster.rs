//! DescribeCluster: the cluster id, the controller and the brokers (this one node).

use crate::api::context::RequestContext;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::acl_operations::{ResourceType, authorized_operations};

/// Endpoint types (v1+): brokers, or controllers (which a broker does not describe).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(apis.cluster_id.clone()))
        .with_controller_id(BrokerId(apis.node_id))
        .with_cluster_authorized_operations(authorized_operations(
            ResourceType::Cluster,
            request.include_cluster_authorized_operations,
        ));
    if version >= 1 {
        response = response.with_endpoint_type(request.endpoint_type);
        if request.endpoint_type != ENDPOINT_BROKERS {
            return response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
                )))
                .with_controller_id(BrokerId(-1));
        }
    }
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(apis.node_id))
        .with_host(StrBytes::from_string(apis.advertised.host.clone()))
        .with_port(i32::from(apis.advertised.port))
        .with_rack(None);
    response.with_brokers(vec![broker])
}
