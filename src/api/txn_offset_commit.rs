//! TxnOffsetCommit (28, versions 0-4): a transactional producer commits a consumer group's offsets inside
//! its transaction (KIP-98; member fields from v3, KIP-447). The offsets are appended to the group's
//! `__consumer_offsets` partition as one transactional batch of the producer and stay pending until the
//! transaction coordinator writes the marker there ([`GroupCoordinator::complete_transaction`]).
//!
//! The order of checks is Kafka's (`KafkaApis.handleTxnOffsetCommitRequest`, then the group coordinator's
//! `commitTransactionalOffsets`): unknown topics and partitions are answered per partition and never
//! reach the coordinator; for the rest, an empty group id, then the transaction verification, then the
//! group's generation and member, then each partition's metadata size, then the write, whose failure fails
//! every partition written.
//!
//! [`GroupCoordinator::complete_transaction`]: crate::group::coordinator::GroupCoordinator::complete_transaction

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
use crate::log::TopicPartition;

/// How often a write is verified again when a transaction marker overtook its verification; each retry is
/// an in-process call, and a marker of the producer's own transaction makes the next verification fail.
const MAX_VERIFICATIONS: usize = 3;

/// TxnOffsetCommit up to v4. v5 (transaction version 2, implicit AddOffsetsToTxn) is not advertised.
pub fn handle(
    apis: &Apis,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> Outcome<TxnOffsetCommitResponse> {
    let version = ctx.api_version;
    let group = req.group_id.0.to_string();
    let now = apis.groups.clock().now_ms();
    let max_metadata = apis.config.groups.offset_metadata_max_bytes;

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
    let fail = move |topics: &mut Vec<TxnOffsetCommitResponseTopic>,
                     which: &[(usize, usize)],
                     error: ResponseError| {
        let error = for_version(error, version);
        for &(ti, pi) in which {
            if let Some(p) = topics.get_mut(ti).and_then(|t| t.partitions.get_mut(pi)) {
                p.error_code = error.code();
            }
        }
    };
    let respond = |topics| Outcome::Respond(TxnOffsetCommitResponse::default().with_topics(topics));
    if to_coordinator.is_empty() {
        return respond(topics);
    }

    let producer = ProducerBatch {
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        // Kafka's coordinator writes every transactional batch at sequence 0; only the epoch is checked
        // for a coordinator's append.
        base_sequence: 0,
        transactional: true,
    };
    let verify = || verify_in_transaction(apis, &req, &group, version);
    let checked = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if producer.producer_id < 0 {
        Err(ResponseError::InvalidProducerIdMapping)
    } else if producer.producer_epoch < 0 {
        Err(ResponseError::InvalidProducerEpoch)
    } else {
        verify().and_then(|verified| {
            apis.groups
                .validate_txn_commit(
                    &group,
                    req.generation_id,
                    req.member_id.as_str(),
                    req.group_instance_id.as_ref().map(|i| i.as_str()),
                )
                .map(|()| verified)
        })
    };
    let mut verified = match checked {
        Ok(verified) => verified,
        Err(e) => {
            fail(&mut topics, &to_coordinator, e);
            return respond(topics);
        }
    };

    let mut written = Vec::new();
    let mut offsets = Vec::new();
    for &(ti, pi) in &to_coordinator {
        let topic = &req.topics[ti];
        let p = &topic.partitions[pi];
        let metadata = p.committed_metadata.as_deref().unwrap_or("");
        if metadata.len() > max_metadata {
            fail(
                &mut topics,
                &[(ti, pi)],
                ResponseError::OffsetMetadataTooLarge,
            );
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
    if offsets.is_empty() {
        return respond(topics);
    }

    let store = apis.groups.store();
    let mut attempts = 1;
    let wait = loop {
        match store.commit_transactional(&group, producer, offsets.clone(), verified) {
            Err(GroupStoreError::StaleVerification) if attempts < MAX_VERIFICATIONS => {
                attempts += 1;
                match verify() {
                    Ok(again) => verified = again,
                    Err(e) => break Err(e),
                }
            }
            // Still overtaken by markers of other transactions: a retriable answer.
            Err(GroupStoreError::StaleVerification) => {
                break Err(ResponseError::CoordinatorLoadInProgress);
            }
            Err(e) => break Err(store_error(&e)),
            Ok(wait) => break Ok(wait),
        }
    };
    match wait {
        Ok(wait) => Outcome::Wait(Box::pin(async move {
            if let Err(e) = wait.await {
                fail(&mut topics, &written, store_error(&e));
            }
            TxnOffsetCommitResponse::default().with_topics(topics)
        })),
        Err(e) => {
            fail(&mut topics, &written, e);
            respond(topics)
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
