//! TxnOffsetCommit (28, versions 0-4): a transactional producer commits a consumer group's offsets inside
//! its transaction (KIP-98; member fields from v3, KIP-447). The offsets are appended to the group's
//! `__consumer_offsets` partition as one transactional batch of the producer and stay pending until the
//! transaction coordinator writes the marker there ([`GroupCoordinator::complete_transaction`]).
//!
//! The order of checks is Kafka's (`KafkaApis.handleTxnOffsetCommitRequest`, then the group coordinator's
//! `commitTransactionalOffsets`): unknown topics and partitions are answered per partition and never
//! reach the coordinator; for the rest, an empty group id, then the transaction verification, then the
//! group's generation and member, then each partition's metadata size, then the write, whose failure fails
//! every partition written. The verification asks the transaction coordinator in process, or, when it is
//! on another broker, with a verify-only AddPartitionsToTxn (KIP-890) before anything else is decided.
//!
//! [`GroupCoordinator::complete_transaction`]: crate::group::coordinator::GroupCoordinator::complete_transaction

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::groups::Outcome;
use super::offsets::{partition_known, store_error};
use super::{Apis, TxnVerification};
use crate::api::context::RequestContext;
use crate::coordinator::ProducerBatch;
use crate::group::OffsetAndMetadata;
use crate::group::offset_store::GroupStoreError;
use crate::log::{LogError, TopicPartition};

/// A partition of the request: (topic index, partition index).
type Slot = (usize, usize);

/// How often a write is verified again when a transaction marker overtook its verification; each retry is
/// an in-process call, and a marker of the producer's own transaction makes the next verification fail.
const MAX_VERIFICATIONS: usize = 3;
/// How long a verification with a transaction coordinator on another broker may take (TxnOffsetCommit
/// carries no timeout); past it the client is told to retry.
const REMOTE_VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// TxnOffsetCommit up to v4. v5 (transaction version 2, implicit AddOffsetsToTxn) is not advertised.
pub fn handle(
    apis: &Arc<Apis>,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> Outcome<TxnOffsetCommitResponse> {
    let version = ctx.api_version;
    let group = req.group_id.0.to_string();
    let (topics, to_coordinator) = answer_unknown_partitions(apis, &req);
    if to_coordinator.is_empty() {
        return Outcome::Respond(TxnOffsetCommitResponse::default().with_topics(topics));
    }

    // KIP-890 with the transaction coordinator on another broker: ask it first (a verify-only
    // AddPartitionsToTxn over the inter-broker listener), then go on as with a local verification.
    if let Some(coordinator) = apis.txn.remote_coordinator(req.transactional_id.as_str()) {
        let apis = apis.clone();
        return Outcome::Wait(Box::pin(async move {
            let verified = verify_remotely(&apis, coordinator, &req, &group, version).await;
            let verify = || verified;
            match commit(
                &apis,
                version,
                &req,
                &group,
                topics,
                &to_coordinator,
                verify,
            ) {
                Outcome::Respond(response) => response,
                Outcome::Wait(pending) => pending.await,
            }
        }));
    }
    let verify = || verify_in_transaction(apis, &req, &group, version);
    commit(apis, version, &req, &group, topics, &to_coordinator, verify)
}

/// The checks after the unknown partitions, then the transactional write of the offsets; `verify` answers
/// the transaction verification (again, when a transaction marker overtook it).
fn commit(
    apis: &Apis,
    version: i16,
    req: &TxnOffsetCommitRequest,
    group: &str,
    mut topics: Vec<TxnOffsetCommitResponseTopic>,
    to_coordinator: &[(usize, usize)],
    verify: impl Fn() -> Result<Option<i64>, ResponseError>,
) -> Outcome<TxnOffsetCommitResponse> {
    let now = apis.groups.clock().now_ms();
    let max_metadata = apis.config.groups.offset_metadata_max_bytes;
    let fail = move |topics: &mut Vec<TxnOffsetCommitResponseTopic>,
                     which: &[(usize, usize)],
                     error| { fail_partitions(topics, which, error, version) };
    let respond = |topics| Outcome::Respond(TxnOffsetCommitResponse::default().with_topics(topics));
    let producer = ProducerBatch {
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        // Kafka's coordinator writes every transactional batch at sequence 0; only the epoch is checked
        // for a coordinator's append.
        base_sequence: 0,
        transactional: true,
    };
    let checked = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if let Err(e) = apis.groups.store().check_coordinator(group) {
        Err(e)
    } else if producer.producer_id < 0 {
        Err(ResponseError::InvalidProducerIdMapping)
    } else if producer.producer_epoch < 0 {
        Err(ResponseError::InvalidProducerEpoch)
    } else {
        verify().and_then(|verified| {
            apis.groups
                .validate_txn_commit(
                    group,
                    req.generation_id,
                    req.member_id.as_str(),
                    req.group_instance_id.as_ref().map(|i| i.as_str()),
                )
                .map(|()| verified)
        })
    };
    let verified = match checked {
        Ok(verified) => verified,
        Err(e) => {
            fail(&mut topics, to_coordinator, e);
            return respond(topics);
        }
    };

    let (written, offsets) =
        offsets_to_write(req, to_coordinator, max_metadata, now, &mut |which, e| {
            fail(&mut topics, which, e)
        });
    if offsets.is_empty() {
        return respond(topics);
    }

    let wait = commit_with_verification(apis, group, producer, offsets, verified, verify);
    match wait {
        Ok(wait) => Outcome::Wait(Box::pin(async move {
            if let Err(e) = wait.await {
                fail(&mut topics, &written, write_error(&e));
            }
            TxnOffsetCommitResponse::default().with_topics(topics)
        })),
        Err(e) => {
            fail(&mut topics, &written, e);
            respond(topics)
        }
    }
}

/// Partitions of unknown topics or partitions are answered UNKNOWN_TOPIC_OR_PARTITION and go no further;
/// returns the response skeleton and the (topic, partition) indexes that go on to the coordinator.
fn answer_unknown_partitions(
    apis: &Apis,
    req: &TxnOffsetCommitRequest,
) -> (Vec<TxnOffsetCommitResponseTopic>, Vec<(usize, usize)>) {
    // Per partition: Some(error) when answered before the coordinator, None when it goes on.
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::with_capacity(req.topics.len());
    // (topic index, partition index) of each partition handed to the coordinator.
    let mut to_coordinator: Vec<(usize, usize)> = Vec::new();
    for (ti, topic) in req.topics.iter().enumerate() {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let known = partition_known(apis, topic.name.0.as_str(), p.partition_index);
            if known {
                to_coordinator.push((ti, pi));
            }
            partitions.push(
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(if known {
                        0
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    }),
            );
        }
        topics.push(
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    (topics, to_coordinator)
}

/// Sets `error` (in the version's vocabulary) on the partitions `which`.
fn fail_partitions(
    topics: &mut [TxnOffsetCommitResponseTopic],
    which: &[(usize, usize)],
    error: ResponseError,
    version: i16,
) {
    let error = for_version(error, version);
    for &(ti, pi) in which {
        if let Some(p) = topics.get_mut(ti).and_then(|t| t.partitions.get_mut(pi)) {
            p.error_code = error.code();
        }
    }
}

/// The offsets to write, refusing those whose metadata is too large (through `fail`); returns the
/// (topic, partition) indexes written and the offsets.
fn offsets_to_write(
    req: &TxnOffsetCommitRequest,
    to_coordinator: &[(usize, usize)],
    max_metadata: usize,
    now: i64,
    fail: &mut dyn FnMut(&[Slot], ResponseError),
) -> (Vec<Slot>, Vec<(TopicPartition, OffsetAndMetadata)>) {
    let mut written = Vec::new();
    let mut offsets = Vec::new();
    for &(ti, pi) in to_coordinator {
        let topic = &req.topics[ti];
        let p = &topic.partitions[pi];
        let metadata = p.committed_metadata.as_deref().unwrap_or("");
        if metadata.len() > max_metadata {
            fail(&[(ti, pi)], ResponseError::OffsetMetadataTooLarge);
            continue;
        }
        written.push((ti, pi));
        offsets.push((
            TopicPartition::new(topic.name.0.as_str(), p.partition_index),
            OffsetAndMetadata {
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: metadata.to_string(),
                commit_timestamp_ms: now,
            },
        ));
    }
    (written, offsets)
}

/// Appends the offsets as the producer's transactional batch; a transaction marker that overtook the
/// verification makes it verify again, up to MAX_VERIFICATIONS times.
fn commit_with_verification(
    apis: &Apis,
    group: &str,
    producer: ProducerBatch,
    offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    mut verified: Option<i64>,
    verify: impl Fn() -> Result<Option<i64>, ResponseError>,
) -> Result<crate::group::offset_store::WriteWait, ResponseError> {
    let store = apis.groups.store();
    let mut attempts = 1;
    loop {
        match store.commit_transactional(group, producer, offsets.clone(), verified) {
            Err(GroupStoreError::StaleVerification) if attempts < MAX_VERIFICATIONS => {
                attempts += 1;
                verified = verify()?;
            }
            // Still overtaken by markers of other transactions: a retriable answer.
            Err(GroupStoreError::StaleVerification) => {
                return Err(ResponseError::CoordinatorLoadInProgress);
            }
            Err(e) => return Err(write_error(&e)),
            Ok(wait) => return Ok(wait),
        }
    }
}

/// Asks the transaction coordinator whether the group's offsets partition is in the producer's ongoing
/// transaction. Ok(Some(last marker offset read before asking)) once verified, Ok(None) when no
/// transaction coordinator is connected (nothing to verify against).
fn verify_in_transaction(
    apis: &Apis,
    req: &TxnOffsetCommitRequest,
    group: &str,
    version: i16,
) -> Result<Option<i64>, ResponseError> {
    let Some(verifier) = &apis.verify_transaction else {
        return Ok(None);
    };
    let store = apis.groups.store();
    let seen = store.last_marker_offset(group);
    let partition = TopicPartition::new(crate::group::OFFSETS_TOPIC, store.partition_for(group));
    verifier(&TxnVerification {
        transactional_id: req.transactional_id.0.as_str(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        partition: &partition,
    })
    .map(|()| Some(seen))
    .map_err(|e| verification_error(e, version))
}

/// [`verify_in_transaction`] with the transaction coordinator on broker `coordinator`.
async fn verify_remotely(
    apis: &Apis,
    coordinator: i32,
    req: &TxnOffsetCommitRequest,
    group: &str,
    version: i16,
) -> Result<Option<i64>, ResponseError> {
    let store = apis.groups.store();
    let seen = store.last_marker_offset(group);
    let partition = TopicPartition::new(crate::group::OFFSETS_TOPIC, store.partition_for(group));
    apis.txn
        .verify_remotely(
            coordinator,
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            std::slice::from_ref(&partition),
            REMOTE_VERIFY_TIMEOUT,
        )
        .await
        .into_iter()
        .next()
        .unwrap_or(Err(ResponseError::UnknownServerError))
        .map(|()| Some(seen))
        .map_err(|e| verification_error(e, version))
}

/// The transaction coordinator's answer as a TxnOffsetCommit error, as Kafka's AddPartitionsToTxnManager
/// and the group coordinator's operation-error mapping turn it: a fenced producer sees
/// INVALID_PRODUCER_EPOCH; a partition outside the transaction TRANSACTION_ABORTABLE from v4 and
/// INVALID_TXN_STATE below (the v4 client can abort and go on); transport-like failures become the
/// coordinator errors a client retries.
fn verification_error(e: ResponseError, version: i16) -> ResponseError {
    match e {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable if version < 4 => ResponseError::InvalidTxnState,
        ResponseError::NetworkException => ResponseError::CoordinatorLoadInProgress,
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator
        }
        e => e,
    }
}

/// A failed append of the transactional batch, as Kafka's group coordinator answers it: a batch above
/// `message.max.bytes` (it is never split, being one transaction's) is UNKNOWN_SERVER_ERROR, not a
/// retriable error the producer would repeat forever; the rest as OffsetCommit answers them.
fn write_error(e: &GroupStoreError) -> ResponseError {
    match e {
        GroupStoreError::Log(LogError::MessageTooLarge { .. }) => ResponseError::UnknownServerError,
        e => store_error(e),
    }
}

/// Clients before v2 (Kafka 2.0) may crash on COORDINATOR_LOAD_IN_PROGRESS (KAFKA-7296): they get
/// COORDINATOR_NOT_AVAILABLE, as from Kafka.
fn for_version(error: ResponseError, version: i16) -> ResponseError {
    match error {
        ResponseError::CoordinatorLoadInProgress if version < 2 => {
            ResponseError::CoordinatorNotAvailable
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, DeleteGroupsRequest, GroupId, OffsetDeleteRequest, OffsetFetchRequest, ProducerId,
        TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::test_apis;

    const TOPIC: &str = "t";
    const PID: i64 = 4000;

    fn apis(dir: &std::path::Path) -> Apis {
        let apis = test_apis(dir);
        if apis.metadata.topic(TOPIC).is_none() {
            apis.create_topic(TOPIC, 2, BTreeMap::new()).unwrap();
        }
        apis
    }

    async fn run<R>(outcome: Outcome<R>) -> R {
        match outcome {
            Outcome::Respond(r) => r,
            Outcome::Wait(f) => tokio::time::timeout(Duration::from_secs(10), f)
                .await
                .expect("answers within 10 s"),
        }
    }

    fn request(group: &str, pid: i64, offsets: &[(&str, i32, i64)]) -> TxnOffsetCommitRequest {
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for &(topic, partition, offset) in offsets {
            let p = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(StrBytes::from_static_str("md")));
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.into())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(3)
            .with_topics(topics)
    }

    async fn commit(apis: &Arc<Apis>, version: i16, req: TxnOffsetCommitRequest) -> Vec<Vec<i16>> {
        let ctx = RequestContext::for_test(ApiKey::TxnOffsetCommit, version);
        let response = run(handle(apis, &ctx, req)).await;
        response
            .topics
            .iter()
            .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
            .collect()
    }

    /// OffsetFetch of the group's `t` partitions 0 and 1 at `version`: (error, offset) each.
    fn fetch(apis: &Apis, group: &str, version: i16, require_stable: bool) -> Vec<(i16, i64)> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_require_stable(require_stable)
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_indexes(vec![0, 1]),
            ]));
        let ctx = RequestContext::for_test(ApiKey::OffsetFetch, version);
        let response = crate::api::offsets::offset_fetch(apis, &ctx, &req, version);
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.committed_offset))
            .collect()
    }

    async fn end(apis: &Apis, group: &str, pid: i64, commit: bool) {
        let partition = apis.groups.store().partition_for(group);
        let groups = apis.groups.clone();
        // The transaction coordinator runs it on its own task: the future must be Send.
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                groups.complete_transaction(partition, pid, 3, commit, 0),
            )
            .await
            .expect("the marker is committed within 10 s")
        })
        .await
        .unwrap()
        .unwrap();
    }

    const NONE: i16 = 0;
    const UNSTABLE: i16 = 88;

    #[tokio::test]
    async fn offsets_are_visible_only_after_the_commit_marker() {
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        assert_eq!(
            commit(
                &apis,
                3,
                request("g", PID, &[(TOPIC, 0, 10), (TOPIC, 1, 11)])
            )
            .await,
            vec![vec![NONE, NONE]]
        );
        // Pending: the committed value (none) is answered, or UNSTABLE_OFFSET_COMMIT with require_stable.
        assert_eq!(fetch(&apis, "g", 7, false), vec![(NONE, -1), (NONE, -1)]);
        assert_eq!(
            fetch(&apis, "g", 7, true),
            vec![(UNSTABLE, -1), (UNSTABLE, -1)]
        );
        // require_stable does not exist before v7.
        assert_eq!(fetch(&apis, "g", 6, true), vec![(NONE, -1), (NONE, -1)]);
        end(&apis, "g", PID, true).await;
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, 10), (NONE, 11)]);
        let om = apis
            .groups
            .store()
            .fetch("g", &TopicPartition::new(TOPIC, 0))
            .unwrap();
        assert_eq!((om.offset, om.metadata.as_str()), (10, "md"));
        // The batch on disk is the producer's transactional batch, followed by its COMMIT marker.
        let partition = apis
            .partition(
                crate::group::OFFSETS_TOPIC,
                apis.groups.store().partition_for("g"),
            )
            .unwrap();
        let data = partition
            .read(0, 1 << 20, true, crate::replica::FetchIsolation::LogEnd)
            .unwrap();
        let first = crate::log::record_batch::RecordBatchHeader::parse(&data.records).unwrap();
        assert!(first.is_transactional() && !first.is_control());
        assert_eq!((first.producer_id(), first.producer_epoch()), (PID, 3));
        assert_eq!(first.record_count(), 2);
        let marker = crate::log::record_batch::RecordBatchHeader::parse(
            &data.records[first.total_size().unwrap()..],
        )
        .unwrap();
        assert!(marker.is_control() && marker.producer_id() == PID);
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn abort_discards_and_the_plain_commit_stays() {
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        let plain = apis
            .groups
            .store()
            .commit(
                "g",
                vec![(
                    TopicPartition::new(TOPIC, 0),
                    OffsetAndMetadata {
                        offset: 5,
                        leader_epoch: -1,
                        metadata: String::new(),
                        commit_timestamp_ms: 1,
                    },
                )],
            )
            .unwrap();
        plain.await.unwrap();
        commit(
            &apis,
            2,
            request("g", PID, &[(TOPIC, 0, 10), (TOPIC, 1, 11)]),
        )
        .await;
        assert_eq!(fetch(&apis, "g", 5, false), vec![(NONE, 5), (NONE, -1)]);
        end(&apis, "g", PID, false).await;
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, 5), (NONE, -1)]);
        // The producer's next transaction starts with nothing staged.
        commit(&apis, 2, request("g", PID, &[(TOPIC, 1, 12)])).await;
        end(&apis, "g", PID, true).await;
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, 5), (NONE, 12)]);
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn a_retried_commit_is_idempotent_and_the_last_value_wins() {
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        for _ in 0..2 {
            assert_eq!(
                commit(&apis, 3, request("g", PID, &[(TOPIC, 0, 10)])).await,
                vec![vec![NONE]]
            );
        }
        assert_eq!(
            commit(&apis, 3, request("g", PID, &[(TOPIC, 0, 20)])).await,
            vec![vec![NONE]]
        );
        // Another producer's transaction on the same group stays its own.
        commit(&apis, 3, request("g", PID + 1, &[(TOPIC, 1, 99)])).await;
        end(&apis, "g", PID, true).await;
        assert_eq!(fetch(&apis, "g", 7, false), vec![(NONE, 20), (NONE, -1)]);
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, 20), (UNSTABLE, -1)]);
        end(&apis, "g", PID + 1, true).await;
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, 20), (NONE, 99)]);
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn a_pending_transaction_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let apis = Arc::new(apis(dir.path()));
            commit(&apis, 3, request("g", PID, &[(TOPIC, 0, 10)])).await;
            // A transaction that ended before the restart is replayed as ended.
            commit(&apis, 3, request("g", PID + 1, &[(TOPIC, 1, 11)])).await;
            end(&apis, "g", PID + 1, true).await;
            apis.logs.shutdown().unwrap();
        }
        let apis = Arc::new(apis(dir.path()));
        assert_eq!(fetch(&apis, "g", 7, true), vec![(UNSTABLE, -1), (NONE, 11)]);
        end(&apis, "g", PID, true).await;
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, 10), (NONE, 11)]);
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn requests_are_checked_as_kafka_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        let long = "x".repeat(apis.config.groups.offset_metadata_max_bytes + 1);
        let mut req = request(
            "g",
            PID,
            &[(TOPIC, 0, 1), (TOPIC, 1, 2), (TOPIC, 7, 3), ("nope", 0, 4)],
        );
        req.topics[0].partitions[1].committed_metadata = Some(StrBytes::from_string(long));
        assert_eq!(
            commit(&apis, 3, req).await,
            vec![
                vec![
                    NONE,
                    ResponseError::OffsetMetadataTooLarge.code(),
                    ResponseError::UnknownTopicOrPartition.code()
                ],
                vec![ResponseError::UnknownTopicOrPartition.code()]
            ]
        );
        // An unknown group takes a commit only without a generation.
        let mut req = request("other", PID, &[(TOPIC, 0, 1), ("nope", 0, 4)]);
        req.generation_id = 1;
        req.member_id = StrBytes::from_static_str("m");
        assert_eq!(
            commit(&apis, 3, req).await,
            vec![
                vec![ResponseError::IllegalGeneration.code()],
                vec![ResponseError::UnknownTopicOrPartition.code()]
            ]
        );
        assert_eq!(
            commit(&apis, 3, request("", PID, &[(TOPIC, 0, 1)])).await,
            vec![vec![ResponseError::InvalidGroupId.code()]]
        );
        assert_eq!(
            commit(&apis, 3, request("g", -1, &[(TOPIC, 0, 1)])).await,
            vec![vec![ResponseError::InvalidProducerIdMapping.code()]]
        );
        // Only the first request wrote.
        assert!(
            !apis
                .groups
                .store()
                .has_pending_offset("other", &TopicPartition::new(TOPIC, 0))
        );
        assert!(
            !apis
                .groups
                .store()
                .has_pending_offset("", &TopicPartition::new(TOPIC, 0))
        );
        assert!(
            !apis
                .groups
                .store()
                .has_pending_offset("g", &TopicPartition::new(TOPIC, 1))
        );
        assert!(
            apis.groups
                .store()
                .has_pending_offset("g", &TopicPartition::new(TOPIC, 0))
        );
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn members_are_checked_but_not_the_rebalance_state() {
        use crate::group::coordinator::{JoinParams, Pending};
        let dir = tempfile::tempdir().unwrap();
        let mut apis = apis(dir.path());
        let config = crate::group::GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..apis.config.groups.clone()
        };
        apis.groups = crate::group::coordinator::GroupCoordinator::new(
            apis.groups.store().clone(),
            config,
            crate::clock::Clock::system(),
        );
        apis.groups.start();
        let apis = Arc::new(apis);
        let join = |member_id: &str, instance: Option<&str>| JoinParams {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), bytes::Bytes::new())],
            require_known_member_id: false,
        };
        // A static member joins (the group then waits for its SyncGroup: CompletingRebalance).
        let joined = match apis.groups.join_group(join("", Some("i-1"))) {
            Pending::Now(r) => r,
            Pending::Later(rx) => tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .unwrap()
                .unwrap(),
        };
        assert_eq!(joined.error, None, "{joined:?}");
        let member = joined.member_id.clone();
        let generation = joined.generation;
        let with_member = |generation: i32, member: &str, instance: Option<&str>| {
            let mut req = request("g", PID, &[(TOPIC, 0, 1)]);
            req.generation_id = generation;
            req.member_id = StrBytes::from_string(member.into());
            req.group_instance_id = instance.map(|i| StrBytes::from_string(i.into()));
            req
        };
        let code = |e: ResponseError| vec![vec![e.code()]];
        // CompletingRebalance (not synced yet): a transactional commit is still taken.
        assert_eq!(
            commit(&apis, 3, with_member(generation, &member, Some("i-1"))).await,
            vec![vec![NONE]]
        );
        assert_eq!(
            commit(&apis, 3, with_member(generation + 1, &member, None)).await,
            code(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            commit(&apis, 3, with_member(generation, "someone", None)).await,
            code(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            commit(&apis, 3, with_member(generation, "someone", Some("i-1"))).await,
            code(ResponseError::FencedInstanceId)
        );
        assert_eq!(
            commit(&apis, 3, with_member(generation, &member, Some("i-2"))).await,
            code(ResponseError::UnknownMemberId)
        );
        // A v0-v2 request names no member: accepted although the group has members.
        assert_eq!(
            commit(&apis, 2, with_member(-1, "", None)).await,
            vec![vec![NONE]]
        );
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn verification_failures_are_answered_per_version_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut apis = apis(dir.path());
        let answer = Arc::new(Mutex::new(Err(ResponseError::TransactionAbortable)));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (a, q) = (answer.clone(), asked.clone());
        apis.verify_transaction = Some(Arc::new(move |v: &TxnVerification<'_>| {
            q.lock().unwrap().push((
                v.transactional_id.to_string(),
                v.producer_id,
                v.producer_epoch,
                v.partition.clone(),
            ));
            *a.lock().unwrap()
        }));
        let apis = Arc::new(apis);
        let tp0 = TopicPartition::new(TOPIC, 0);
        let code = |e: ResponseError| vec![vec![e.code()]];
        assert_eq!(
            commit(&apis, 3, request("g", PID, &[(TOPIC, 0, 1)])).await,
            code(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            commit(&apis, 4, request("g", PID, &[(TOPIC, 0, 1)])).await,
            code(ResponseError::TransactionAbortable)
        );
        *answer.lock().unwrap() = Err(ResponseError::ProducerFenced);
        assert_eq!(
            commit(&apis, 4, request("g", PID, &[(TOPIC, 0, 1)])).await,
            code(ResponseError::InvalidProducerEpoch)
        );
        *answer.lock().unwrap() = Err(ResponseError::CoordinatorLoadInProgress);
        assert_eq!(
            commit(&apis, 1, request("g", PID, &[(TOPIC, 0, 1)])).await,
            code(ResponseError::CoordinatorNotAvailable),
            "clients before v2 do not know LOAD_IN_PROGRESS here"
        );
        assert!(!apis.groups.store().has_pending_offset("g", &tp0));
        *answer.lock().unwrap() = Ok(());
        assert_eq!(
            commit(&apis, 4, request("g", PID, &[(TOPIC, 0, 1)])).await,
            vec![vec![NONE]]
        );
        assert!(apis.groups.store().has_pending_offset("g", &tp0));
        let offsets_tp = TopicPartition::new(
            crate::group::OFFSETS_TOPIC,
            apis.groups.store().partition_for("g"),
        );
        assert_eq!(
            asked.lock().unwrap().last(),
            Some(&("txn".to_string(), PID, 3, offsets_tp))
        );
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn deleting_the_group_or_its_offsets_drops_pending_ones() {
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        // Only pending offsets: the group exists (a simple group) and can be deleted.
        commit(
            &apis,
            3,
            request("g", PID, &[(TOPIC, 0, 10), (TOPIC, 1, 11)]),
        )
        .await;
        assert!(apis.groups.group_exists("g"));
        let ctx = RequestContext::for_test(ApiKey::OffsetDelete, 0);
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(vec![
                kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![
                        kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(1),
                    ]),
            ]);
        let response = run(crate::api::offsets::offset_delete(&apis, &ctx, &req)).await;
        assert_eq!(response.error_code, NONE);
        assert_eq!(fetch(&apis, "g", 7, true), vec![(UNSTABLE, -1), (NONE, -1)]);
        let ctx = RequestContext::for_test(ApiKey::DeleteGroups, 2);
        let req = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_static_str("g"))]);
        let response = run(crate::api::groups::delete_groups(&apis, &ctx, &req)).await;
        assert_eq!(response.results[0].error_code, NONE);
        assert!(!apis.groups.group_exists("g"));
        // The transaction's COMMIT then has nothing left to materialise.
        end(&apis, "g", PID, true).await;
        assert_eq!(fetch(&apis, "g", 7, true), vec![(NONE, -1), (NONE, -1)]);
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn require_stable_covers_batched_and_all_partition_fetches() {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        let plain = apis.groups.store().commit(
            "g",
            [0, 1]
                .map(|p| {
                    (
                        TopicPartition::new(TOPIC, p),
                        OffsetAndMetadata {
                            offset: 5,
                            leader_epoch: -1,
                            metadata: String::new(),
                            commit_timestamp_ms: 1,
                        },
                    )
                })
                .to_vec(),
        );
        plain.unwrap().await.unwrap();
        commit(&apis, 3, request("g", PID, &[(TOPIC, 1, 10)])).await;
        // v8, every committed partition of the group (topics null).
        let req = OffsetFetchRequest::default()
            .with_require_stable(true)
            .with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_topics(None),
            ]);
        let ctx = RequestContext::for_test(ApiKey::OffsetFetch, 8);
        let response = crate::api::offsets::offset_fetch(&apis, &ctx, &req, 8);
        let answers: Vec<(i32, i16, i64)> = response.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.committed_offset))
            .collect();
        assert_eq!(answers, vec![(0, NONE, 5), (1, UNSTABLE, -1)]);
        // Without require_stable the committed value is answered.
        let response = crate::api::offsets::offset_fetch(
            &apis,
            &ctx,
            &req.clone().with_require_stable(false),
            8,
        );
        let offsets: Vec<i64> = response.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(offsets, vec![5, 5]);
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn a_transaction_batch_above_the_size_limit_is_not_retriable() {
        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        let configs = BTreeMap::from([("max.message.bytes".to_string(), "400".to_string())]);
        apis.create_topic(crate::group::OFFSETS_TOPIC, 1, configs)
            .unwrap();
        let mut req = request("g", PID, &[(TOPIC, 0, 1), (TOPIC, 1, 2)]);
        for p in &mut req.topics[0].partitions {
            p.committed_metadata = Some(StrBytes::from_string("m".repeat(300)));
        }
        let unknown = ResponseError::UnknownServerError.code();
        assert_eq!(commit(&apis, 3, req).await, vec![vec![unknown, unknown]]);
        assert!(
            !apis
                .groups
                .store()
                .has_pending_offset("g", &TopicPartition::new(TOPIC, 0))
        );
        // One partition fits.
        assert_eq!(
            commit(&apis, 3, request("g", PID, &[(TOPIC, 0, 1)])).await,
            vec![vec![NONE]]
        );
        apis.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn ending_a_transaction_without_an_offsets_topic_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let apis = test_apis(dir.path());
        apis.groups
            .complete_transaction(0, PID, 3, true, 0)
            .await
            .unwrap();
        assert!(apis.metadata.topic(crate::group::OFFSETS_TOPIC).is_none());
        apis.logs.shutdown().unwrap();
    }
}
