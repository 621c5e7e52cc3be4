//! KIP-890 part 1 across brokers: a partition leader whose transactional id is coordinated by another
//! broker asks that broker, before appending, whether the partitions are in the producer's ongoing
//! transaction (a verify-only AddPartitionsToTxn, v4+, as Kafka's `AddPartitionsToTxnManager` sends it).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::TransactionCoordinator;
use crate::log::TopicPartition;
use crate::network::SendOptions;
use crate::txn::TRANSACTION_STATE_TOPIC;

/// The first AddPartitionsToTxn version with the brokers' batched, verify-only shape.
const FIRST_BROKER_VERSION: i16 = 4;

impl TransactionCoordinator {
    /// The broker that coordinates `transactional_id` when that is another broker of the cluster; None on
    /// a single node, when this broker coordinates it, or when its partition has no leader now.
    pub fn remote_coordinator(&self, transactional_id: &str) -> Option<i32> {
        let cluster = self
            .marker_client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !cluster {
            return None;
        }
        let topic = self.metadata.topic(TRANSACTION_STATE_TOPIC)?;
        let leader = topic
            .partition(self.partition_for(transactional_id))?
            .leader;
        (leader >= 0 && leader != self.replicas.node_id()).then_some(leader)
    }

    /// Asks `coordinator` whether each of `partitions` is in the ongoing transaction of
    /// `transactional_id` at `producer_id` and `producer_epoch`: one answer per partition, in order, with
    /// the errors the local check gives; NETWORK_EXCEPTION when the coordinator could not be asked within
    /// `timeout`.
    pub async fn verify_remotely(
        &self,
        coordinator: i32,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Vec<Result<(), ResponseError>> {
        let all = |error| vec![Err(error); partitions.len()];
        let client = self
            .marker_client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(client) = client else {
            return all(ResponseError::NotCoordinator);
        };
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions)
            })
            .collect();
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    transactional_id.to_string(),
                )))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_verify_only(true)
                .with_topics(topics),
        ]);
        let options = SendOptions {
            timeout: Some(timeout),
            ..SendOptions::default()
        };
        match client.send_with(coordinator, request, options).await {
            Ok((version, response)) if version >= FIRST_BROKER_VERSION => {
                answers(&response, transactional_id, partitions)
            }
            Ok((version, _)) => {
                tracing::warn!(
                    coordinator,
                    version,
                    "the transaction coordinator does not take verify-only AddPartitionsToTxn"
                );
                all(ResponseError::UnsupportedVersion)
            }
            Err(e) => {
                tracing::debug!(coordinator, error = %e, "cannot verify a transactional produce");
                all(ResponseError::NetworkException)
            }
        }
    }
}

/// Each partition's answer in a v4+ response; a partition the coordinator did not answer is an
/// UNKNOWN_SERVER_ERROR.
fn answers(
    response: &AddPartitionsToTxnResponse,
    transactional_id: &str,
    partitions: &[TopicPartition],
) -> Vec<Result<(), ResponseError>> {
    let error = |code| match code {
        0 => Ok(()),
        code => {
            Err(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
        }
    };
    if response.error_code != 0 {
        return vec![error(response.error_code); partitions.len()];
    }
    let result = response
        .results_by_transaction
        .iter()
        .find(|r| r.transactional_id.as_str() == transactional_id);
    partitions
        .iter()
        .map(|tp| {
            result
                .and_then(|r| {
                    r.topic_results
                        .iter()
                        .filter(|t| t.name.as_str() == tp.topic.as_str())
                        .flat_map(|t| &t.results_by_partition)
                        .find(|p| p.partition_index == tp.partition)
                })
                .map_or(Err(ResponseError::UnknownServerError), |p| {
                    error(p.partition_error_code)
                })
        })
        .collect()
}
