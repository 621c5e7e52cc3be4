//! The transaction APIs a transactional producer and the admin client send to the transaction coordinator:
//! AddPartitionsToTxn (v0-3, the client shape; v4-5, the brokers' batched shape, verify-only for KIP-890's
//! check of a transactional produce on another broker), AddOffsetsToTxn, EndTxn (v0-4, no TV2),
//! ListTransactions and DescribeTransactions. Each translates to one [`crate::txn::TransactionCoordinator`]
//! call; PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH below the version that introduced it
//! (KIP-588: v2 of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
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
    if version >= 4 {
        return add_partitions_for_brokers(apis, req, version);
    }
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

/// AddPartitionsToTxn v4+, which brokers send: several transactions at once, each answered per partition.
/// A verify-only one (KIP-890 part 1: a partition leader asking before it appends a transactional batch)
/// checks each partition against the id's ongoing transaction and changes nothing; the others add the
/// partitions as v0-3 does. A transactional id this broker does not coordinate gets NOT_COORDINATOR.
fn add_partitions_for_brokers(
    apis: &Apis,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> Outcome<AddPartitionsToTxnResponse> {
    let txn = apis.txn.clone();
    Outcome::Wait(Box::pin(async move {
        let mut results = Vec::with_capacity(req.transactions.len());
        for transaction in req.transactions {
            let id = transaction.transactional_id.to_string();
            let (producer_id, epoch) = (transaction.producer_id.0, transaction.producer_epoch);
            let partitions: BTreeSet<TopicPartition> = transaction
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|&p| TopicPartition::new(t.name.as_str(), p))
                })
                .collect();
            let answer: BTreeMap<TopicPartition, i16> = if txn.remote_coordinator(&id).is_some() {
                let code = ResponseError::NotCoordinator.code();
                partitions.into_iter().map(|tp| (tp, code)).collect()
            } else if transaction.verify_only {
                partitions
                    .into_iter()
                    .map(|tp| {
                        let verified = txn.verify_transaction(&id, producer_id, epoch, &tp);
                        (tp, code(verified, version))
                    })
                    .collect()
            } else {
                let added = txn
                    .add_partitions(&id, producer_id, epoch, partitions.clone())
                    .await;
                let error = code(added, version);
                partitions.into_iter().map(|tp| (tp, error)).collect()
            };
            let by_topic = partition_results(answer.keys(), |tp| answer[tp]);
            results.push(
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(transaction.transactional_id)
                    .with_topic_results(by_topic.results_by_topic_v3_and_below),
            );
        }
        AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{
        ApiKey, FindCoordinatorRequest, GroupId, InitProducerIdRequest, InitProducerIdResponse,
    };

    use super::*;
    use crate::api::test_apis;

    async fn resolve<R>(outcome: Outcome<R>) -> R {
        match outcome {
            Outcome::Respond(r) => r,
            Outcome::Wait(f) => tokio::time::timeout(Duration::from_secs(10), f)
                .await
                .expect("answered within 10 s"),
        }
    }

    fn ctx(key: ApiKey, version: i16) -> RequestContext {
        RequestContext::for_test(key, version)
    }

    fn id(s: &str) -> TransactionalId {
        TransactionalId(StrBytes::from_string(s.to_string()))
    }

    async fn init(apis: &Apis, version: i16, req: InitProducerIdRequest) -> InitProducerIdResponse {
        resolve(crate::api::init_producer_id::handle(
            apis,
            &ctx(ApiKey::InitProducerId, version),
            &req,
        ))
        .await
    }

    fn init_request(txn_id: &str) -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(id(txn_id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    }

    fn add_request(
        txn_id: &str,
        pid: i64,
        epoch: i16,
        topics: &[(&str, &[i32])],
    ) -> AddPartitionsToTxnRequest {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(id(txn_id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps.to_vec())
                    })
                    .collect(),
            )
    }

    fn errors(r: &AddPartitionsToTxnResponse) -> Vec<(String, i32, i16)> {
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.partition_error_code,
                    )
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn find_coordinator_names_this_broker_for_a_transactional_id() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_key(StrBytes::from_static_str("tx"));
        let response = crate::api::find_coordinator::handle(
            &apis,
            &ctx(ApiKey::FindCoordinator, 2),
            &request,
            2,
        );
        assert_eq!((response.error_code, response.node_id.0), (0, 1));
        let empty = request.clone().with_key(StrBytes::from_static_str(""));
        let response = crate::api::find_coordinator::handle(
            &apis,
            &ctx(ApiKey::FindCoordinator, 2),
            &empty,
            2,
        );
        assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn init_producer_id_with_a_transactional_id_checks_its_input_and_fences() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        // The same allocator as idempotent producers: ids never repeat across both.
        let idempotent = init(
            &apis,
            4,
            InitProducerIdRequest::default().with_transaction_timeout_ms(1),
        )
        .await;
        let first = init(&apis, 4, init_request("tx")).await;
        assert_eq!(first.error_code, 0);
        assert_ne!(first.producer_id, idempotent.producer_id);
        assert_eq!(first.producer_epoch, 0);
        // librdkafka 0103 misuse_txn: a timeout above transaction.max.timeout.ms.
        let too_long = init(
            &apis,
            4,
            init_request("tx").with_transaction_timeout_ms(i32::MAX),
        )
        .await;
        assert_eq!(
            too_long.error_code,
            ResponseError::InvalidTransactionTimeout.code()
        );
        // A producer id without an epoch.
        let half = init(&apis, 4, init_request("tx").with_producer_id(ProducerId(5))).await;
        assert_eq!(half.error_code, ResponseError::InvalidRequest.code());
        // KIP-360 with a producer id that is not the id's: PRODUCER_FENCED from v4, INVALID_PRODUCER_EPOCH before.
        let stale = init_request("tx")
            .with_producer_id(ProducerId(first.producer_id.0 + 100))
            .with_producer_epoch(0);
        assert_eq!(
            init(&apis, 4, stale.clone()).await.error_code,
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(
            init(&apis, 3, stale).await.error_code,
            ResponseError::InvalidProducerEpoch.code()
        );
        let second = init(&apis, 4, init_request("tx")).await;
        assert_eq!(
            (second.producer_id, second.producer_epoch),
            (first.producer_id, 1)
        );
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn add_partitions_end_txn_and_the_admin_listings() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.create_topic("t", 2, BTreeMap::new()).unwrap();
        let init = init(&apis, 4, init_request("tx")).await;
        let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
        let add = |version, req| {
            resolve(add_partitions_to_txn(
                &apis,
                &ctx(ApiKey::AddPartitionsToTxn, version),
                req,
            ))
        };
        // An unknown partition: only it is UNKNOWN_TOPIC_OR_PARTITION, the others are not attempted.
        let r = add(
            3,
            add_request("tx", pid, epoch, &[("t", &[0, 7]), ("nope", &[0])]),
        )
        .await;
        assert_eq!(
            errors(&r),
            vec![
                (
                    "nope".into(),
                    0,
                    ResponseError::UnknownTopicOrPartition.code()
                ),
                ("t".into(), 0, ResponseError::OperationNotAttempted.code()),
                ("t".into(), 7, ResponseError::UnknownTopicOrPartition.code()),
            ]
        );
        // A fenced epoch, by version.
        let r = add(1, add_request("tx", pid, epoch + 1, &[("t", &[0])])).await;
        assert_eq!(
            errors(&r),
            vec![("t".into(), 0, ResponseError::InvalidProducerEpoch.code())]
        );
        let r = add(2, add_request("tx", pid, epoch + 1, &[("t", &[0])])).await;
        assert_eq!(
            errors(&r),
            vec![("t".into(), 0, ResponseError::ProducerFenced.code())]
        );
        let r = add(0, add_request("tx", pid, epoch, &[("t", &[0, 1])])).await;
        assert_eq!(errors(&r), vec![("t".into(), 0, 0), ("t".into(), 1, 0)]);
        let offsets = resolve(add_offsets_to_txn(
            &apis,
            &ctx(ApiKey::AddOffsetsToTxn, 0),
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(id("tx"))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(StrBytes::from_static_str("g"))),
        ))
        .await;
        assert_eq!(offsets.error_code, 0);

        let described = describe_transactions(
            &apis,
            &ctx(ApiKey::DescribeTransactions, 0),
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![id("tx"), id("unknown")]),
        );
        let tx = &described.transaction_states[0];
        assert_eq!(
            (tx.error_code, tx.transaction_state.as_str()),
            (0, "Ongoing")
        );
        assert_eq!(
            (
                tx.producer_id.0,
                tx.producer_epoch,
                tx.transaction_timeout_ms
            ),
            (pid, epoch, 60_000)
        );
        let topics: Vec<(String, Vec<i32>)> = tx
            .topics
            .iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect();
        let group_partition = apis.txn.offsets_partition_for("g");
        assert_eq!(
            topics,
            vec![
                ("__consumer_offsets".into(), vec![group_partition]),
                ("t".into(), vec![0, 1])
            ]
        );
        assert_eq!(
            described.transaction_states[1].error_code,
            ResponseError::TransactionalIdNotFound.code()
        );

        let list = |req: ListTransactionsRequest| {
            let r = list_transactions(&apis, &ctx(ApiKey::ListTransactions, 2), &req);
            let ids: Vec<String> = r
                .transaction_states
                .iter()
                .map(|t| t.transactional_id.to_string())
                .collect();
            (
                r.error_code,
                ids,
                r.unknown_state_filters
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        let all = ListTransactionsRequest::default().with_duration_filter(-1);
        assert_eq!(list(all.clone()), (0, vec!["tx".to_string()], vec![]));
        let states = all.clone().with_state_filters(vec![
            StrBytes::from_static_str("Empty"),
            StrBytes::from_static_str("Bogus"),
        ]);
        assert_eq!(list(states), (0, vec![], vec!["Bogus".to_string()]));
        assert_eq!(
            list(
                all.clone()
                    .with_producer_id_filters(vec![ProducerId(pid + 1)])
            )
            .1
            .len(),
            0
        );
        assert_eq!(
            list(all.clone().with_duration_filter(60_000)).1.len(),
            0,
            "started just now"
        );
        assert_eq!(
            list(
                all.clone()
                    .with_transactional_id_pattern(Some(StrBytes::from_static_str("t.")))
            )
            .1
            .len(),
            1
        );
        assert_eq!(
            list(
                all.clone()
                    .with_transactional_id_pattern(Some(StrBytes::from_static_str("t")))
            )
            .1
            .len(),
            0,
            "a full match"
        );
        assert_eq!(
            list(
                all.clone()
                    .with_transactional_id_pattern(Some(StrBytes::from_static_str("(")))
            )
            .0,
            ResponseError::InvalidRegularExpression.code()
        );

        let end = |version, epoch, committed| {
            resolve(end_txn(
                &apis,
                &ctx(ApiKey::EndTxn, version),
                EndTxnRequest::default()
                    .with_transactional_id(id("tx"))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(committed),
            ))
        };
        assert_eq!(
            end(1, epoch + 1, true).await.error_code,
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            end(3, epoch + 1, true).await.error_code,
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(end(3, epoch, true).await.error_code, 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while apis.txn.describe("tx").unwrap().state != TransactionState::CompleteCommit {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the commit completes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            end(3, epoch, false).await.error_code,
            ResponseError::InvalidTxnState.code()
        );
        apis.logs.shutdown().unwrap();
    }
}
