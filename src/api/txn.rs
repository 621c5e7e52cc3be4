//! The transaction APIs a transactional producer and the admin client send to the transaction coordinator:
//! AddPartitionsToTxn (v0-3, the client shape), AddOffsetsToTxn, EndTxn (v0-4, no TV2),
//! ListTransactions and DescribeTransactions. Each translates to one [`crate::txn::TransactionCoordinator`]
//! call; PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH below the version that introduced it
//! (KIP-588: v2 of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTransaction,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::context::RequestContext;
use super::groups::Outcome;
use crate::log::TopicPartition;
use crate::txn::TransactionState;

/// Versions of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn before KIP-588 know no PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

/// PRODUCER_FENCED as the request's version knows it.
pub fn fenced_for_version(error: ResponseError, version: i16, first: i16) -> ResponseError {
    if error == ResponseError::ProducerFenced && version < first {
        ResponseError::InvalidProducerEpoch
    } else {
        error
    }
}

fn code(result: Result<(), ResponseError>, version: i16) -> i16 {
    match result {
        Ok(()) => 0,
        Err(e) => fenced_for_version(e, version, FIRST_VERSION_WITH_PRODUCER_FENCED).code(),
    }
}

/// AddPartitionsToTxn v0-3: partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION and the others
/// OPERATION_NOT_ATTEMPTED (Kafka checks them before asking the coordinator); otherwise every partition
/// gets the coordinator's answer.
pub fn add_partitions_to_txn(
    apis: &Apis,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> Outcome<AddPartitionsToTxnResponse> {
    let version = ctx.api_version;
    let mut partitions = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for topic in &req.v3_and_below_topics {
        let count = apis
            .metadata
            .topic(topic.name.as_str())
            .map_or(0, |t| t.partition_count());
        for &p in &topic.partitions {
            let tp = TopicPartition::new(topic.name.as_str(), p);
            if p < 0 || p >= count {
                unknown.insert(tp);
            } else {
                partitions.insert(tp);
            }
        }
    }
    if !unknown.is_empty() {
        return Outcome::Respond(partition_results(partitions.iter().chain(&unknown), |tp| {
            if unknown.contains(tp) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        }));
    }
    let txn = apis.txn.clone();
    let id = req.v3_and_below_transactional_id.to_string();
    let (producer_id, epoch) = (
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
    );
    Outcome::Wait(Box::pin(async move {
        let result = txn
            .add_partitions(&id, producer_id, epoch, partitions.clone())
            .await;
        let error = code(result, version);
        partition_results(partitions.iter(), |_| error)
    }))
}

/// The v0-3 response: one result per partition, grouped by topic.
fn partition_results<'a>(
    partitions: impl Iterator<Item = &'a TopicPartition>,
    error_of: impl Fn(&TopicPartition) -> i16,
) -> AddPartitionsToTxnResponse {
    let mut by_topic: BTreeMap<&str, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(tp.partition)
                .with_partition_error_code(error_of(tp)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
        by_topic
            .into_iter()
            .map(|(topic, results)| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_results_by_partition(results)
            })
            .collect(),
    )
}

pub fn add_offsets_to_txn(
    apis: &Apis,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> Outcome<AddOffsetsToTxnResponse> {
    let version = ctx.api_version;
    let txn = apis.txn.clone();
    Outcome::Wait(Box::pin(async move {
        let result = txn
            .add_offsets(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                req.group_id.as_str(),
            )
            .await;
        AddOffsetsToTxnResponse::default().with_error_code(code(result, version))
    }))
}

/// EndTxn v0-4: NONE once the transaction's Prepare* is persisted; the markers follow.
pub fn end_txn(apis: &Apis, ctx: &RequestContext, req: EndTxnRequest) -> Outcome<EndTxnResponse> {
    let version = ctx.api_version;
    let txn = apis.txn.clone();
    Outcome::Wait(Box::pin(async move {
        let result = txn
            .end_txn(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
            )
            .await;
        EndTxnResponse::default()
            .with_error_code(code(result, version))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    }))
}

/// RE2/J's `matches()`: the whole id must match. INVALID_REGULAR_EXPRESSION for a pattern that does not
/// compile.
fn full_match(pattern: &str) -> Result<regex_automata::meta::Regex, ResponseError> {
    regex_automata::meta::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|_| ResponseError::InvalidRegularExpression)
}

/// ListTransactions v0-2: this broker's transactions that pass every filter given (states by name, with
/// unknown names echoed back; producer ids; v1 running longer than `duration_filter` ms; v2 ids matching
/// `transactional_id_pattern`). Dead ids are never listed.
pub fn list_transactions(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let mut states = BTreeSet::new();
    for name in &req.state_filters {
        match TransactionState::from_name(name.as_str()) {
            Some(s) => {
                states.insert(s);
            }
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    let pattern = match req.transactional_id_pattern.as_ref().map(|p| p.as_str()) {
        None | Some("") => None,
        Some(p) => match full_match(p) {
            Ok(re) => Some(re),
            Err(e) => return response.with_error_code(e.code()),
        },
    };
    let listed = match apis.txn.list() {
        Ok(listed) => listed,
        Err(e) => return response.with_error_code(e.code()),
    };
    let producer_ids: BTreeSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let now = apis.txn.clock().now_ms();
    response.transaction_states = listed
        .into_iter()
        .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
        .filter(|m| states.is_empty() || states.contains(&m.state))
        .filter(|m| req.duration_filter < 0 || now.saturating_sub(m.start_ms) > req.duration_filter)
        .filter(|m| {
            pattern
                .as_ref()
                .is_none_or(|re| re.is_match(&m.transactional_id))
        })
        .map(|m| {
            ListedTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(m.transactional_id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    response
}

/// DescribeTransactions v0: one answer per id, TRANSACTIONAL_ID_NOT_FOUND for an unknown one.
pub fn describe_transactions(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let answer = DescribedTransaction::default().with_transactional_id(id.clone());
            match apis.txn.describe(id.as_str()) {
                Err(e) => answer.with_error_code(e.code()),
                Ok(m) => {
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for tp in &m.partitions {
                        by_topic
                            .entry(tp.topic.clone())
                            .or_default()
                            .push(tp.partition);
                    }
                    answer
                        .with_transaction_state(StrBytes::from_static_str(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(
                            by_topic
                                .into_iter()
                                .map(|(topic, partitions)| {
                                    TopicData::default()
                                        .with_topic(TopicName(StrBytes::from_string(topic)))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        )
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
