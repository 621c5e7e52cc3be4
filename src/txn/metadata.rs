//! A transactional id's state (Kafka's `TransactionMetadata` and `TransactionState`) and the coordinator's
//! decisions as pure functions of it: InitProducerId, AddPartitionsToTxn, EndTxn, completion, the timeout
//! fence and expiration. Each returns the metadata to persist (or the error to answer); the coordinator
//! writes it to `__transaction_state` and the shard takes it from there.
//!
//! `pending` is true while another transition of the same id is being persisted; Kafka then answers
//! CONCURRENT_TRANSACTIONS at the point of its checks where it looks at `pendingState`.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use crate::log::TopicPartition;

/// Kafka's transaction states, with their ids in `__transaction_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

use TransactionState::*;

impl TransactionState {
    pub const ALL: [TransactionState; 8] = [
        Empty,
        Ongoing,
        PrepareCommit,
        PrepareAbort,
        CompleteCommit,
        CompleteAbort,
        Dead,
        PrepareEpochFence,
    ];

    /// The status byte of TransactionLogValue.
    pub fn id(self) -> i8 {
        match self {
            Empty => 0,
            Ongoing => 1,
            PrepareCommit => 2,
            PrepareAbort => 3,
            CompleteCommit => 4,
            CompleteAbort => 5,
            Dead => 6,
            PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TransactionState> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions use (Kafka's `TransactionState.stateName`).
    pub fn name(self) -> &'static str {
        match self {
            Empty => "Empty",
            Ongoing => "Ongoing",
            PrepareCommit => "PrepareCommit",
            PrepareAbort => "PrepareAbort",
            CompleteCommit => "CompleteCommit",
            CompleteAbort => "CompleteAbort",
            Dead => "Dead",
            PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TransactionState> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states a transition into `self` may start from (Kafka 4.x `TransactionState.validPreviousStates`;
    /// PrepareAbort from Empty and Complete* is TV2's "abort when uncertain").
    pub fn valid_previous_states(self) -> &'static [TransactionState] {
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    pub fn can_follow(self, previous: TransactionState) -> bool {
        self.valid_previous_states().contains(&previous)
    }

    /// Only an id with no transaction in flight may expire.
    pub fn is_expiration_allowed(self) -> bool {
        matches!(self, Empty | CompleteCommit | CompleteAbort)
    }

    pub fn is_prepare(self) -> bool {
        matches!(self, PrepareCommit | PrepareAbort)
    }
}

/// Kafka's `isEpochExhausted`: the last epochs are kept for the coordinator's own fencing bump.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// One transactional id's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (-1): a retried InitProducerId with it is not fenced.
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last client bump (-1): a retried InitProducerId with it gets the current epoch.
    /// Kafka keeps it in memory only, as brook does.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TransactionState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current transaction started (its first partition), -1 when none.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TransactionMetadata {
    /// A new id: Empty at epoch -1, which the first InitProducerId bumps to 0.
    pub fn new(
        transactional_id: &str,
        producer_id: i64,
        timeout_ms: i32,
        now: i64,
    ) -> TransactionMetadata {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
        }
    }

    /// `next` in place of `self`, checked against the transition table.
    fn transit(&self, next: TransactionMetadata) -> Result<TransactionMetadata, ResponseError> {
        if !next.state.can_follow(self.state) {
            tracing::error!(id = %self.transactional_id, from = ?self.state, to = ?next.state,
                "invalid transaction state transition");
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(next)
    }

    /// Ongoing past its timeout at `now` (Kafka's `timedOutTransactions`).
    pub fn is_timed_out(&self, now: i64) -> bool {
        self.state == Ongoing && self.start_ms.saturating_add(i64::from(self.timeout_ms)) < now
    }

    /// Expirable at `now`: no transaction in flight and idle for `expiration_ms`.
    pub fn is_expired(&self, now: i64, expiration_ms: i64) -> bool {
        self.state.is_expiration_allowed()
            && self.last_update_ms <= now.saturating_sub(expiration_ms)
    }
}

/// What an InitProducerId with a transactional id leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitProducerIdTransition {
    /// Persist this (Empty) metadata, then answer its producer id and epoch.
    Ready(TransactionMetadata),
    /// The id has an Ongoing transaction: persist this PrepareAbort at a bumped epoch, complete it, and answer
    /// CONCURRENT_TRANSACTIONS; the client's retry then bumps the epoch once more.
    FenceAndAbort(TransactionMetadata),
}

/// `transaction_timeout_ms` must be in (0, transaction.max.timeout.ms].
pub fn validate_timeout(timeout_ms: i32, max_timeout_ms: i32) -> Result<(), ResponseError> {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    Ok(())
}

/// InitProducerId for a transactional id (Kafka's `handleInitProducerId` and
/// `prepareInitProducerIdTransit`): `current` is the id's metadata (None: a new id, which gets a producer
/// id from `new_producer_id`), `expected` the v3+ producer id and epoch when the client named them.
pub fn prepare_init_producer_id(
    current: Option<&TransactionMetadata>,
    pending: bool,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    now: i64,
    new_producer_id: &mut dyn FnMut() -> Result<i64, ResponseError>,
) -> Result<InitProducerIdTransition, ResponseError> {
    let m = match current {
        Some(m) => m.clone(),
        None => TransactionMetadata::new(transactional_id, new_producer_id()?, timeout_ms, now),
    };
    if pending {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = expected {
        let valid = m.producer_epoch == -1
            || pid == m.producer_id
            || (pid == m.previous_producer_id && is_epoch_exhausted(epoch));
        if !valid {
            return Err(ResponseError::ProducerFenced);
        }
    }
    match m.state {
        PrepareCommit | PrepareAbort => Err(ResponseError::ConcurrentTransactions),
        Empty | CompleteCommit | CompleteAbort => {
            let mut next = m.clone();
            if is_epoch_exhausted(m.producer_epoch)
                && expected.is_none_or(|(_, e)| e == m.producer_epoch)
            {
                // Rotate to a fresh producer id at epoch 0.
                next.previous_producer_id = m.producer_id;
                next.producer_id = new_producer_id()?;
                next.producer_epoch = 0;
                next.last_producer_epoch = if expected.is_some() {
                    m.producer_epoch
                } else {
                    -1
                };
            } else {
                if is_epoch_exhausted(m.producer_epoch) {
                    // Only a stale retry gets here; Kafka fails it as an illegal state.
                    return Err(ResponseError::ProducerFenced);
                }
                let bumped = m.producer_epoch + 1;
                match expected.map(|(_, e)| e) {
                    None => {
                        next.producer_epoch = bumped;
                        next.last_producer_epoch = -1;
                    }
                    Some(e) if m.producer_epoch == -1 || e == m.producer_epoch => {
                        next.producer_epoch = bumped;
                        next.last_producer_epoch = m.producer_epoch;
                    }
                    // A retry of a bump whose answer was lost: the current epoch again.
                    Some(e) if e == m.last_producer_epoch => {}
                    Some(_) => return Err(ResponseError::ProducerFenced),
                }
            }
            next.state = Empty;
            next.timeout_ms = timeout_ms;
            next.partitions.clear();
            next.start_ms = -1;
            next.last_update_ms = now;
            m.transit(next).map(InitProducerIdTransition::Ready)
        }
        Ongoing => prepare_fence_and_abort(&m, now).map(InitProducerIdTransition::FenceAndAbort),
        Dead | PrepareEpochFence => {
            tracing::error!(id = transactional_id, state = ?m.state, "transactional id in a state it is never left in");
            Err(ResponseError::UnknownServerError)
        }
    }
}

/// Fences the producer of an Ongoing transaction and aborts it (Kafka's `prepareFenceProducerEpoch` then
/// `endTransaction(ABORT, isFromClient = false)`): PrepareAbort at epoch + 1, so the markers carry the new
/// epoch and the old producer's late writes are refused.
pub fn prepare_fence_and_abort(
    m: &TransactionMetadata,
    now: i64,
) -> Result<TransactionMetadata, ResponseError> {
    if m.state != Ongoing {
        return Err(ResponseError::InvalidTxnState);
    }
    let mut next = m.clone();
    if m.producer_epoch < i16::MAX {
        next.producer_epoch = m.producer_epoch + 1;
    }
    next.last_producer_epoch = -1;
    next.state = PrepareAbort;
    next.last_update_ms = now;
    m.transit(next)
}

/// AddPartitionsToTxn v0-3 (and AddOffsetsToTxn's partition): None when there is nothing to write (the
/// partitions are already in the Ongoing transaction).
pub fn prepare_add_partitions(
    current: Option<&TransactionMetadata>,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &BTreeSet<TopicPartition>,
    now: i64,
) -> Result<Option<TransactionMetadata>, ResponseError> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if pending || m.state.is_prepare() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.state == Ongoing && partitions.is_subset(&m.partitions) {
        return Ok(None);
    }
    let mut next = m.clone();
    if matches!(m.state, Empty | CompleteCommit | CompleteAbort) {
        next.start_ms = now;
        next.partitions.clear();
    }
    next.partitions.extend(partitions.iter().cloned());
    next.state = Ongoing;
    next.last_update_ms = now;
    m.transit(next).map(Some)
}

/// KIP-890 part 1's verification of a transactional produce: the partition must be in the id's ongoing
/// transaction at the same producer id and epoch (Kafka's `handleVerifyPartitionsInTransaction`).
pub fn verify_partition(
    m: &TransactionMetadata,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    tp: &TopicPartition,
) -> Result<(), ResponseError> {
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if pending || m.state.is_prepare() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.state == Ongoing && m.partitions.contains(tp) {
        Ok(())
    } else {
        Err(ResponseError::TransactionAbortable)
    }
}

/// EndTxn v0-4 from a client (TV1): Some(Prepare*) to persist, or None when the transaction already ended
/// this way (a retry: answer NONE).
pub fn prepare_end_txn(
    current: Option<&TransactionMetadata>,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    now: i64,
) -> Result<Option<TransactionMetadata>, ResponseError> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if pending {
        return Err(ResponseError::ConcurrentTransactions);
    }
    match (m.state, commit) {
        (Ongoing, _) => {
            let mut next = m.clone();
            next.state = if commit { PrepareCommit } else { PrepareAbort };
            next.last_update_ms = now;
            m.transit(next).map(Some)
        }
        (CompleteCommit, true) | (CompleteAbort, false) => Ok(None),
        (PrepareCommit, true) | (PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
        (Dead | PrepareEpochFence, _) => {
            tracing::error!(id = %m.transactional_id, state = ?m.state, "transactional id in a state it is never left in");
            Err(ResponseError::UnknownServerError)
        }
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// The Complete* that follows a Prepare* once every marker is written: no partitions, same producer.
pub fn prepare_complete(
    m: &TransactionMetadata,
    now: i64,
) -> Result<TransactionMetadata, ResponseError> {
    let mut next = m.clone();
    next.state = match m.state {
        PrepareCommit => CompleteCommit,
        PrepareAbort => CompleteAbort,
        _ => return Err(ResponseError::InvalidTxnState),
    };
    next.partitions.clear();
    next.last_update_ms = now;
    m.transit(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::ResponseError as E;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn meta(state: TransactionState, epoch: i16) -> TransactionMetadata {
        let mut m = TransactionMetadata::new("tx", 10, 60_000, 1_000);
        m.producer_epoch = epoch;
        m.state = state;
        if !matches!(state, Empty | CompleteCommit | CompleteAbort) {
            m.partitions.insert(tp(0));
            m.start_ms = 1_000;
        }
        m
    }

    fn no_pid() -> Result<i64, ResponseError> {
        panic!("no new producer id expected")
    }

    fn init(
        current: Option<&TransactionMetadata>,
        expected: Option<(i64, i16)>,
    ) -> Result<InitProducerIdTransition, ResponseError> {
        let mut next = 99;
        prepare_init_producer_id(current, false, "tx", 30_000, expected, 5_000, &mut || {
            next += 1;
            Ok(next)
        })
    }

    fn ready(r: Result<InitProducerIdTransition, ResponseError>) -> (i64, i16, i16) {
        match r {
            Ok(InitProducerIdTransition::Ready(m)) => {
                assert_eq!(m.state, Empty);
                assert!(m.partitions.is_empty());
                assert_eq!(
                    (m.timeout_ms, m.last_update_ms, m.start_ms),
                    (30_000, 5_000, -1)
                );
                (m.producer_id, m.producer_epoch, m.last_producer_epoch)
            }
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    #[test]
    fn state_ids_names_and_transitions_are_kafkas() {
        for s in TransactionState::ALL {
            assert_eq!(TransactionState::from_id(s.id()), Some(s));
            assert_eq!(TransactionState::from_name(s.name()), Some(s));
        }
        assert_eq!(TransactionState::from_id(8), None);
        assert_eq!(PrepareEpochFence.id(), 7);
        assert!(PrepareCommit.can_follow(Ongoing));
        assert!(!PrepareCommit.can_follow(Empty));
        assert!(!CompleteCommit.can_follow(PrepareAbort));
        assert!(Ongoing.can_follow(CompleteAbort));
        assert!(!Ongoing.can_follow(PrepareCommit));
        assert!(Dead.can_follow(Empty) && !Dead.can_follow(Ongoing));
        let expirable: Vec<_> = TransactionState::ALL
            .into_iter()
            .filter(|s| s.is_expiration_allowed())
            .collect();
        assert_eq!(expirable, vec![Empty, CompleteCommit, CompleteAbort]);
    }

    #[test]
    fn init_producer_id_table() {
        // A new id: a fresh producer id at epoch 0.
        assert_eq!(ready(init(None, None)), (100, 0, -1));
        // A new id named with a (lost) producer id and epoch: accepted, as its metadata was just created.
        assert_eq!(ready(init(None, Some((5, 3)))), (100, 0, -1));
        // Empty / Complete*: the epoch is bumped, no new producer id.
        for s in [Empty, CompleteCommit, CompleteAbort] {
            assert_eq!(ready(init(Some(&meta(s, 4)), None)), (10, 5, -1));
        }
        // Prepare*: CONCURRENT_TRANSACTIONS.
        for s in [PrepareCommit, PrepareAbort] {
            assert_eq!(
                init(Some(&meta(s, 4)), None),
                Err(E::ConcurrentTransactions)
            );
        }
        // Ongoing: fenced at epoch + 1 and aborted; the answer is CONCURRENT_TRANSACTIONS.
        match init(Some(&meta(Ongoing, 4)), None) {
            Ok(InitProducerIdTransition::FenceAndAbort(m)) => {
                assert_eq!((m.state, m.producer_epoch), (PrepareAbort, 5));
                assert_eq!(m.partitions, BTreeSet::from([tp(0)]));
            }
            other => panic!("{other:?}"),
        }
        // A pending transition answers CONCURRENT_TRANSACTIONS before anything else.
        let m = meta(Empty, 4);
        assert_eq!(
            prepare_init_producer_id(Some(&m), true, "tx", 1, Some((77, 0)), 0, &mut no_pid),
            Err(E::ConcurrentTransactions)
        );
    }

    #[test]
    fn init_producer_id_with_expected_epoch_kip_360() {
        let m = meta(CompleteCommit, 4);
        // The current pair: bumped, and the last epoch remembered.
        assert_eq!(ready(init(Some(&m), Some((10, 4)))), (10, 5, 4));
        // Another producer id: fenced.
        assert_eq!(init(Some(&m), Some((11, 4))), Err(E::ProducerFenced));
        // An older epoch that is not the last one: fenced.
        assert_eq!(init(Some(&m), Some((10, 2))), Err(E::ProducerFenced));
        // A retry with the last epoch gets the current epoch again, not a second bump.
        let mut bumped = m.clone();
        bumped.producer_epoch = 5;
        bumped.last_producer_epoch = 4;
        assert_eq!(ready(init(Some(&bumped), Some((10, 4)))), (10, 5, 4));
        // After a bump by another instance (no expected epoch) the last epoch is -1, so the old
        // instance's retry with its epoch is fenced.
        let mut other = m.clone();
        other.producer_epoch = 5;
        other.last_producer_epoch = -1;
        assert_eq!(init(Some(&other), Some((10, 4))), Err(E::ProducerFenced));
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let m = meta(CompleteAbort, i16::MAX - 1);
        assert!(is_epoch_exhausted(m.producer_epoch));
        assert!(!is_epoch_exhausted(i16::MAX - 2));
        match init(Some(&m), Some((10, i16::MAX - 1))) {
            Ok(InitProducerIdTransition::Ready(n)) => {
                assert_eq!((n.producer_id, n.producer_epoch), (100, 0));
                assert_eq!(
                    (n.previous_producer_id, n.last_producer_epoch),
                    (10, i16::MAX - 1)
                );
                // The retry of that rotation names the previous id with the exhausted epoch: the same
                // answer, not a fence.
                assert_eq!(
                    ready(init(Some(&n), Some((10, i16::MAX - 1)))),
                    (100, 0, i16::MAX - 1)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ready(init(Some(&m), None)), (100, 0, -1));
    }

    #[test]
    fn timeout_must_be_positive_and_at_most_the_max() {
        assert_eq!(
            validate_timeout(0, 900_000),
            Err(E::InvalidTransactionTimeout)
        );
        assert_eq!(
            validate_timeout(-1, 900_000),
            Err(E::InvalidTransactionTimeout)
        );
        assert_eq!(
            validate_timeout(i32::MAX, 900_000),
            Err(E::InvalidTransactionTimeout)
        );
        assert_eq!(validate_timeout(900_000, 900_000), Ok(()));
        assert_eq!(validate_timeout(1, 900_000), Ok(()));
    }

    #[test]
    fn add_partitions_table() {
        let parts = BTreeSet::from([tp(1)]);
        let add = |m: Option<&TransactionMetadata>, pid, epoch, pending| {
            prepare_add_partitions(m, pending, pid, epoch, &parts, 9_000)
        };
        assert_eq!(add(None, 10, 0, false), Err(E::InvalidProducerIdMapping));
        let empty = meta(Empty, 0);
        assert_eq!(
            add(Some(&empty), 11, 0, false),
            Err(E::InvalidProducerIdMapping)
        );
        assert_eq!(add(Some(&empty), 10, 1, false), Err(E::ProducerFenced));
        assert_eq!(
            add(Some(&empty), 10, 0, true),
            Err(E::ConcurrentTransactions)
        );
        for s in [PrepareCommit, PrepareAbort] {
            assert_eq!(
                add(Some(&meta(s, 0)), 10, 0, false),
                Err(E::ConcurrentTransactions)
            );
        }
        // From Empty / Complete*: a new transaction starts now with only these partitions.
        for s in [Empty, CompleteCommit, CompleteAbort] {
            let mut m = meta(s, 0);
            m.partitions.insert(tp(7)); // left over, never carried into the new transaction
            let next = add(Some(&m), 10, 0, false).unwrap().unwrap();
            assert_eq!((next.state, next.start_ms), (Ongoing, 9_000));
            assert_eq!(next.partitions, parts);
        }
        // Ongoing: added to, start time kept; a subset writes nothing.
        let ongoing = meta(Ongoing, 0);
        let next = add(Some(&ongoing), 10, 0, false).unwrap().unwrap();
        assert_eq!(next.partitions, BTreeSet::from([tp(0), tp(1)]));
        assert_eq!((next.start_ms, next.last_update_ms), (1_000, 9_000));
        assert_eq!(add(Some(&next), 10, 0, false), Ok(None));
    }

    /// P12: the EndTxn table.
    #[test]
    fn end_txn_table() {
        let end = |state, commit| prepare_end_txn(Some(&meta(state, 2)), false, 10, 2, commit, 7);
        assert_eq!(end(Ongoing, true).unwrap().unwrap().state, PrepareCommit);
        assert_eq!(end(Ongoing, false).unwrap().unwrap().state, PrepareAbort);
        assert_eq!(end(CompleteCommit, true), Ok(None));
        assert_eq!(end(CompleteAbort, false), Ok(None));
        assert_eq!(end(CompleteCommit, false), Err(E::InvalidTxnState));
        assert_eq!(end(CompleteAbort, true), Err(E::InvalidTxnState));
        assert_eq!(end(PrepareCommit, true), Err(E::ConcurrentTransactions));
        assert_eq!(end(PrepareAbort, false), Err(E::ConcurrentTransactions));
        assert_eq!(end(PrepareCommit, false), Err(E::InvalidTxnState));
        assert_eq!(end(PrepareAbort, true), Err(E::InvalidTxnState));
        assert_eq!(end(Empty, true), Err(E::InvalidTxnState));
        assert_eq!(end(Empty, false), Err(E::InvalidTxnState));
        // Checks before the state, in Kafka's order.
        let m = meta(Ongoing, 2);
        assert_eq!(
            prepare_end_txn(None, false, 10, 2, true, 0),
            Err(E::InvalidProducerIdMapping)
        );
        assert_eq!(
            prepare_end_txn(Some(&m), true, 11, 3, true, 0),
            Err(E::InvalidProducerIdMapping)
        );
        assert_eq!(
            prepare_end_txn(Some(&m), true, 10, 3, true, 0),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            prepare_end_txn(Some(&m), true, 10, 2, true, 0),
            Err(E::ConcurrentTransactions)
        );
        // Complete keeps the producer and clears the partitions.
        let prepared = end(Ongoing, true).unwrap().unwrap();
        let done = prepare_complete(&prepared, 8).unwrap();
        assert_eq!((done.state, done.producer_epoch), (CompleteCommit, 2));
        assert!(done.partitions.is_empty());
        assert_eq!(prepare_complete(&done, 9), Err(E::InvalidTxnState));
    }

    /// P10 and P11: fencing bumps the epoch; the fenced producer's requests are refused.
    #[test]
    fn fencing_bumps_the_epoch_and_refuses_the_old_producer() {
        let m = meta(Ongoing, 3);
        assert!(!m.is_timed_out(61_000));
        assert!(m.is_timed_out(61_001));
        let fenced = prepare_fence_and_abort(&m, 61_001).unwrap();
        assert_eq!((fenced.state, fenced.producer_epoch), (PrepareAbort, 4));
        let done = prepare_complete(&fenced, 61_002).unwrap();
        assert_eq!(
            prepare_end_txn(Some(&done), false, 10, 3, true, 0),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            prepare_add_partitions(Some(&done), false, 10, 3, &BTreeSet::from([tp(0)]), 0),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            prepare_fence_and_abort(&done, 0),
            Err(E::InvalidTxnState),
            "only an Ongoing transaction is fenced"
        );
        // An epoch at the maximum is not bumped past it.
        let max = meta(Ongoing, i16::MAX);
        assert_eq!(
            prepare_fence_and_abort(&max, 0).unwrap().producer_epoch,
            i16::MAX
        );
    }

    #[test]
    fn verification_and_expiry() {
        let m = meta(Ongoing, 1);
        assert_eq!(verify_partition(&m, false, 10, 1, &tp(0)), Ok(()));
        assert_eq!(
            verify_partition(&m, false, 10, 1, &tp(1)),
            Err(E::TransactionAbortable)
        );
        assert_eq!(
            verify_partition(&m, false, 11, 1, &tp(0)),
            Err(E::InvalidProducerIdMapping)
        );
        assert_eq!(
            verify_partition(&m, false, 10, 0, &tp(0)),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            verify_partition(&meta(PrepareCommit, 1), false, 10, 1, &tp(0)),
            Err(E::ConcurrentTransactions)
        );
        assert_eq!(
            verify_partition(&meta(Empty, 1), false, 10, 1, &tp(0)),
            Err(E::TransactionAbortable)
        );
        let idle = meta(CompleteCommit, 1);
        assert!(!idle.is_expired(1_000 + 99, 100));
        assert!(idle.is_expired(1_000 + 100, 100));
        assert!(!meta(Ongoing, 1).is_expired(i64::MAX, 100));
    }
}
