//! Ending a transaction in its partitions (Kafka's `TransactionMarkerChannelManager`, in process): a
//! COMMIT or ABORT marker appended to every partition of a prepared transaction and waited for until
//! committed, then Complete* persisted; and the completion of the prepared transactions a loaded shard
//! holds.

use super::*;

impl TransactionCoordinator {
    /// Writes the markers of `prepared` and then its Complete*, in the background.
    pub(super) fn spawn_completion(
        &self,
        partition: i32,
        coordinator_epoch: i32,
        prepared: TransactionMetadata,
    ) {
        let Some(this) = self.weak.upgrade() else {
            return;
        };
        if !lock(&self.completing).insert(prepared.transactional_id.clone()) {
            return;
        }
        let id = prepared.transactional_id.clone();
        let task = async move {
            let done = this.complete(partition, coordinator_epoch, &prepared).await;
            lock(&this.completing).remove(&prepared.transactional_id);
            if let Err(e) = done {
                tracing::warn!(id = %prepared.transactional_id, error = ?e,
                    "could not complete transaction; it is completed when its shard is loaded again");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
            }
            Err(_) => {
                lock(&self.completing).remove(&id);
                tracing::error!(id, "no runtime to complete the transaction on");
            }
        }
    }

    /// Whether this broker still coordinates `partition` at `coordinator_epoch`.
    pub(super) fn still_coordinating(&self, partition: i32, coordinator_epoch: i32) -> bool {
        self.runtime.epoch(partition) == Some(coordinator_epoch) && !*self.stopping.borrow()
    }

    /// The markers of a Prepare* transaction, then its Complete*.
    async fn complete(
        &self,
        partition: i32,
        coordinator_epoch: i32,
        prepared: &TransactionMetadata,
    ) -> Result<(), ResponseError> {
        let commit = prepared.state == TransactionState::PrepareCommit;
        debug_assert!(
            prepared.state.is_prepare(),
            "only a Prepare* transaction is completed"
        );
        // Every partition at once, as Kafka sends one request per leader: the slowest flush sets the pace.
        let written = futures_util::future::join_all(
            prepared
                .partitions
                .iter()
                .map(|tp| self.write_marker(tp, prepared, commit, partition, coordinator_epoch)),
        )
        .await;
        written.into_iter().collect::<Result<Vec<()>, _>>()?;
        let now = self.clock.now_ms();
        let id = prepared.transactional_id.as_str();
        self.transit(id, |current, _pending| {
            let Some(m) = current else {
                return Ok((None, ()));
            };
            if m.state != prepared.state
                || m.producer_id != prepared.producer_id
                || m.producer_epoch != prepared.producer_epoch
            {
                return Ok((None, ())); // completed meanwhile
            }
            Ok((Some(prepare_complete(&m, now)?), ()))
        })
        .await?;
        tracing::debug!(
            id,
            commit,
            partitions = prepared.partitions.len(),
            "transaction completed"
        );
        Ok(())
    }

    /// Writes one marker and waits until it is committed; retries while the partition is unavailable, and
    /// gives up on a partition that no longer exists (a deleted topic leaves the transaction).
    async fn write_marker(
        &self,
        tp: &TopicPartition,
        txn: &TransactionMetadata,
        commit: bool,
        partition: i32,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        let mut backoff = MARKER_RETRY_MIN;
        loop {
            if !self.still_coordinating(partition, coordinator_epoch) {
                return Err(ResponseError::NotCoordinator);
            }
            let writer = self
                .offsets_markers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let offsets_partition_exists = || {
                self.metadata
                    .topic(OFFSETS_TOPIC)
                    .is_some_and(|t| t.partition(tp.partition).is_some())
            };
            let outcome = match writer {
                // No such partition: no offsets were ever staged there.
                Some(_) if tp.topic == OFFSETS_TOPIC && !offsets_partition_exists() => {
                    Err(ResponseError::UnknownTopicOrPartition)
                }
                Some(writer) if tp.topic == OFFSETS_TOPIC => {
                    writer(
                        tp.partition,
                        txn.producer_id,
                        txn.producer_epoch,
                        commit,
                        coordinator_epoch,
                    )
                    .await
                }
                _ => self.append_marker(tp, txn, commit, coordinator_epoch).await,
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(ResponseError::UnknownTopicOrPartition) => {
                    tracing::info!(partition = %tp, id = %txn.transactional_id,
                        "partition gone; dropped from the transaction");
                    return Ok(());
                }
                Err(
                    e @ (ResponseError::InvalidProducerEpoch
                    | ResponseError::TransactionCoordinatorFenced
                    | ResponseError::CorruptMessage
                    | ResponseError::InvalidRecord
                    | ResponseError::UnknownServerError),
                ) => {
                    tracing::warn!(partition = %tp, id = %txn.transactional_id, error = ?e,
                        "partition refused the transaction marker; dropped from the transaction");
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(partition = %tp, error = ?e, ?backoff, "marker not written yet; retrying");
                    let mut stopping = self.stopping.subscribe();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopping.wait_for(|s| *s) => return Err(ResponseError::NotCoordinator),
                    }
                    backoff = (backoff * 2).min(MARKER_RETRY_MAX);
                }
            }
        }
    }

    /// Appends a marker to a partition this broker leads and waits for its high watermark.
    async fn append_marker(
        &self,
        tp: &TopicPartition,
        txn: &TransactionMetadata,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        let topic = self
            .metadata
            .topic(&tp.topic)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let partition = self.replicas.leader_partition(&topic, tp.partition)?;
        let marker = end_transaction_marker(
            txn.producer_id,
            txn.producer_epoch,
            commit,
            coordinator_epoch,
            self.clock.now_ms(),
        )
        .map_err(|_| ResponseError::UnknownServerError)?;
        let info = partition
            .append_records_to_leader(marker, AppendOrigin::Coordinator)
            .map_err(|e| match e {
                LogError::Storage(_) | LogError::Offline(_) => ResponseError::KafkaStorageError,
                LogError::CorruptMessage(_) => ResponseError::CorruptMessage,
                LogError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
                LogError::TransactionCoordinatorFenced(_) => {
                    ResponseError::TransactionCoordinatorFenced
                }
                other => {
                    tracing::warn!(partition = %tp, error = %other, "transaction marker refused");
                    ResponseError::InvalidRecord
                }
            })?;
        partition
            .wait_for_high_watermark(info.last_offset + 1)
            .await
            .map_err(|_| ResponseError::KafkaStorageError)
    }

    /// Completes the Prepare* transactions of every shard loaded since the last look (crash recovery).
    pub(super) fn recover_loaded_shards(&self) {
        for partition in self.runtime.partitions() {
            if self.runtime.state(partition) != Some(ShardState::Active) {
                continue;
            }
            let Some(epoch) = self.runtime.epoch(partition) else {
                continue;
            };
            if lock(&self.recovered).insert(partition, epoch) == Some(epoch) {
                continue;
            }
            let prepared: Vec<TransactionMetadata> = self
                .runtime
                .read(partition, |shard| {
                    shard
                        .transactions()
                        .filter(|m| m.state.is_prepare())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for m in prepared {
                tracing::info!(id = %m.transactional_id, state = ?m.state,
                    "completing a transaction found prepared on load");
                self.spawn_completion(partition, epoch, m);
            }
        }
    }
}
