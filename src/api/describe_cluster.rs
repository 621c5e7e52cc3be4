//! DescribeCluster: the cluster id, the controller and the brokers (this one node).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::Apis;

/// Kafka's value for "authorized operations not requested".
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Endpoint types (v1+): brokers, or controllers (which a broker does not describe).
const ENDPOINT_BROKERS: i8 = 1;
/// Without an authorizer every cluster operation is allowed: CREATE(5), ALTER(7), DESCRIBE(8),
/// CLUSTER_ACTION(9), DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11), IDEMPOTENT_WRITE(12).
const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub fn handle(
    apis: &Apis,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(apis.cluster_id.clone()))
        .with_controller_id(BrokerId(apis.node_id))
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        });
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
