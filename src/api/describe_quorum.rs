//! DescribeQuorum (KIP-595/KIP-836/KIP-853): what `kafka-metadata-quorum.sh describe --status` and
//! `--replication` print. A broker answers with the view of the quorum leader (Kafka's brokers forward the
//! request to the active controller), for `__cluster_metadata` partition 0 only. A single brook runs no
//! quorum and says so.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::groups::Outcome;
use crate::controller::quorum_controller::{QuorumView, ReplicaView};

/// The metadata log's name, as Kafka calls it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(apis: &Apis, request: DescribeQuorumRequest) -> Outcome<DescribeQuorumResponse> {
    let asks_metadata_log = matches!(
        request.topics.as_slice(),
        [t] if t.topic_name.as_str() == METADATA_TOPIC
            && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0)
    );
    if !asks_metadata_log {
        return Outcome::Respond(error_response(
            ResponseError::UnknownTopicOrPartition,
            "DescribeQuorum describes __cluster_metadata partition 0 only",
        ));
    }
    let Some(controller) = apis.controller.clone() else {
        return Outcome::Respond(partition_error(
            ResponseError::UnknownTopicOrPartition,
            "this broker runs without a metadata quorum (process.roles is not set)",
        ));
    };
    let voters = apis
        .config
        .cluster_mode()
        .map(|c| c.voters)
        .unwrap_or_default();
    let listener = apis
        .config
        .cluster_mode()
        .and_then(|c| c.controller_listener_names.first().cloned())
        .unwrap_or_else(|| "CONTROLLER".into());
    Outcome::Wait(Box::pin(async move {
        match controller.describe_quorum().await {
            Ok(view) => {
                let nodes = voters
                    .iter()
                    .map(|(&id, endpoint)| {
                        Node::default()
                            .with_node_id(BrokerId(id))
                            .with_listeners(vec![
                                Listener::default()
                                    .with_name(StrBytes::from_string(listener.clone()))
                                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                                    .with_port(endpoint.port),
                            ])
                    })
                    .collect();
                answer(&view).with_nodes(nodes)
            }
            Err(e) => partition_error(crate::api::error::metadata_error_code(&e), &e.to_string()),
        }
    }))
}

fn replica(r: &ReplicaView) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(r.replica_id))
        .with_log_end_offset(r.log_end_offset)
        .with_last_fetch_timestamp(r.last_fetch_timestamp)
        .with_last_caught_up_timestamp(r.last_caught_up_timestamp)
}

fn answer(view: &QuorumView) -> DescribeQuorumResponse {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(view.leader_id))
        .with_leader_epoch(view.leader_epoch)
        .with_high_watermark(view.high_watermark)
        .with_current_voters(view.voters.iter().map(replica).collect())
        .with_observers(view.observers.iter().map(replica).collect());
    DescribeQuorumResponse::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition]),
    ])
}

fn partition_error(error: ResponseError, message: &str) -> DescribeQuorumResponse {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
        .with_leader_id(BrokerId(-1))
        .with_leader_epoch(-1)
        .with_high_watermark(-1);
    DescribeQuorumResponse::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition]),
    ])
}

fn error_response(error: ResponseError, message: &str) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}
