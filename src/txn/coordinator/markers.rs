//! Ending a transaction in its partitions (Kafka's `TransactionMarkerChannelManager`): a COMMIT or ABORT
//! marker written to every partition of a prepared transaction and waited for until committed, then
//! Complete* persisted; and the completion of the prepared transactions a loaded shard holds. Partitions
//! this broker leads get theirs appended here; in a cluster, every other leader gets one WriteTxnMarkers
//! (v1) for all of its partitions of the transaction over the inter-broker client.

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::network::SendOptions;

/// How much longer than its request timeout a WriteTxnMarkers is given (see `send_markers`).
const MARKER_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Where a partition's marker goes.
enum MarkerRoute {
    /// This broker leads it.
    Local,
    /// Broker `n` leads it.
    Remote(i32),
    /// It has no leader right now.
    Unavailable,
    /// Its topic or the partition no longer exists.
    Gone,
}

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
        self.write_markers(prepared, commit, partition, coordinator_epoch)
            .await?;
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

    /// Writes the marker of every partition of `txn` and waits until each is committed, in rounds: each
    /// round routes the partitions still due by the current image (this broker's own partitions are
    /// appended here, every other leader gets one WriteTxnMarkers for all of its partitions, as Kafka's
    /// TransactionMarkerChannelManager sends them), then retries the ones that failed for a passing reason
    /// (no leader, a leader that moved, a broker unreachable) after a backoff. A partition that is gone
    /// leaves the transaction, as does one that refuses the marker for good (a newer producer or
    /// coordinator epoch there: the transaction is over for it). Gives up with NOT_COORDINATOR once this
    /// broker no longer coordinates the transaction at `coordinator_epoch` (the new coordinator completes it).
    async fn write_markers(
        &self,
        txn: &TransactionMetadata,
        commit: bool,
        partition: i32,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        let mut due: Vec<TopicPartition> = txn.partitions.iter().cloned().collect();
        let mut backoff = MARKER_RETRY_MIN;
        loop {
            if !self.still_coordinating(partition, coordinator_epoch) {
                return Err(ResponseError::NotCoordinator);
            }
            let mut local = Vec::new();
            let mut remote: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
            let mut retry = Vec::new();
            for tp in due {
                match self.marker_route(&tp) {
                    MarkerRoute::Local => local.push(tp),
                    MarkerRoute::Remote(broker) => remote.entry(broker).or_default().push(tp),
                    MarkerRoute::Unavailable => retry.push(tp),
                    MarkerRoute::Gone => {
                        tracing::info!(partition = %tp, id = %txn.transactional_id,
                            "partition gone; dropped from the transaction");
                    }
                }
            }
            let local = futures_util::future::join_all(local.into_iter().map(|tp| async move {
                let outcome = self
                    .write_local_marker(&tp, txn, commit, coordinator_epoch)
                    .await;
                vec![(tp, outcome)]
            }));
            let remote =
                futures_util::future::join_all(remote.into_iter().map(|(broker, partitions)| {
                    self.send_markers(broker, partitions, txn, commit, coordinator_epoch)
                }));
            let (local, remote) = tokio::join!(local, remote);
            for (tp, outcome) in local.into_iter().chain(remote).flatten() {
                match outcome {
                    Ok(()) => {}
                    Err(
                        e @ (ResponseError::InvalidProducerEpoch
                        | ResponseError::TransactionCoordinatorFenced
                        | ResponseError::CorruptMessage
                        | ResponseError::InvalidRecord
                        | ResponseError::UnknownServerError),
                    ) => {
                        tracing::warn!(partition = %tp, id = %txn.transactional_id, error = ?e,
                            "partition refused the transaction marker; dropped from the transaction");
                    }
                    Err(e) => {
                        tracing::debug!(partition = %tp, error = ?e, ?backoff, "marker not written yet; retrying");
                        retry.push(tp);
                    }
                }
            }
            if retry.is_empty() {
                return Ok(());
            }
            due = retry;
            let mut stopping = self.stopping.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopping.wait_for(|s| *s) => return Err(ResponseError::NotCoordinator),
            }
            backoff = (backoff * 2).min(MARKER_RETRY_MAX);
        }
    }

    /// Where the marker of `tp` goes now, by the image.
    fn marker_route(&self, tp: &TopicPartition) -> MarkerRoute {
        let Some(topic) = self.metadata.topic(&tp.topic) else {
            return MarkerRoute::Gone;
        };
        let Some(registration) = topic.partition(tp.partition) else {
            return MarkerRoute::Gone;
        };
        let client = self
            .marker_client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        match registration.leader {
            // A single node leads all its partitions (its image may not name it as their leader).
            _ if !client => MarkerRoute::Local,
            leader if leader == self.replicas.node_id() => MarkerRoute::Local,
            leader if leader < 0 => MarkerRoute::Unavailable,
            leader => MarkerRoute::Remote(leader),
        }
    }

    /// One attempt at the marker of a partition this broker leads: a `__consumer_offsets` partition
    /// through the group coordinator (which completes the offsets the transaction staged there), any
    /// other appended here.
    async fn write_local_marker(
        &self,
        tp: &TopicPartition,
        txn: &TransactionMetadata,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        let writer = self
            .offsets_markers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let outcome = match writer {
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
            // No such partition here (and the image said it exists): nothing was ever written to it
            // through this broker, so nothing waits for a marker.
            Err(ResponseError::UnknownTopicOrPartition) => {
                tracing::info!(partition = %tp, id = %txn.transactional_id,
                    "partition unknown here; dropped from the transaction");
                Ok(())
            }
            other => other,
        }
    }

    /// One WriteTxnMarkers to `broker` for the partitions of `txn` it leads; each partition's outcome.
    /// Any failure of the request itself fails every partition with a retriable error (the leader is
    /// looked up again in the next round).
    async fn send_markers(
        &self,
        broker: i32,
        partitions: Vec<TopicPartition>,
        txn: &TransactionMetadata,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Vec<(TopicPartition, Result<(), ResponseError>)> {
        let client = self
            .marker_client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(client) = client else {
            return partitions
                .into_iter()
                .map(|tp| (tp, Err(ResponseError::NotLeaderOrFollower)))
                .collect();
        };
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in &partitions {
            topics
                .entry(tp.topic.as_str())
                .or_default()
                .push(tp.partition);
        }
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(txn.producer_id))
            .with_producer_epoch(txn.producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            );
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        // The leader answers REQUEST_TIMED_OUT itself after waiting `request.timeout.ms` for its high
        // watermark; wait a little longer for that answer rather than time out here and close a connection
        // other transactions' markers share.
        let options = SendOptions {
            timeout: Some(client.config().request_timeout + MARKER_ANSWER_GRACE),
            ..Default::default()
        };
        let answered = match client.send_with(broker, request, options).await {
            Ok((_, response)) => response,
            Err(e) => {
                tracing::debug!(broker, error = %e, id = %txn.transactional_id,
                    "WriteTxnMarkers not answered");
                return partitions
                    .into_iter()
                    .map(|tp| (tp, Err(ResponseError::NetworkException)))
                    .collect();
            }
        };
        let mut codes: HashMap<(String, i32), i16> = HashMap::new();
        for marker in answered
            .markers
            .iter()
            .filter(|m| m.producer_id.0 == txn.producer_id)
        {
            for topic in &marker.topics {
                for p in &topic.partitions {
                    codes.insert((topic.name.to_string(), p.partition_index), p.error_code);
                }
            }
        }
        partitions
            .into_iter()
            .map(|tp| {
                let outcome = match codes.get(&(tp.topic.to_string(), tp.partition)) {
                    Some(0) => Ok(()),
                    Some(&code) => Err(ResponseError::try_from_code(code)
                        .unwrap_or(ResponseError::UnknownServerError)),
                    // Left out of the answer: asked again.
                    None => Err(ResponseError::NetworkException),
                };
                (tp, outcome)
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicI64, Ordering};

    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    use kafka_protocol::messages::{RequestHeader, ResponseHeader, WriteTxnMarkersResponse};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::cluster::{BrokerEndpoint, BrokerRegistration, PartitionRegistration, TopicDelta};
    use crate::cluster::{MetadataDelta, TopicImage};
    use crate::log::{LogConfig, LogManager};
    use crate::network::{NetworkClient, NetworkClientConfig};

    /// What the fake leader saw: per WriteTxnMarkers, (producer id, commit, coordinator epoch, topic ->
    /// partitions).
    type Seen = Arc<Mutex<Vec<(i64, bool, i32, BTreeMap<String, Vec<i32>>)>>>;

    async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<(RequestHeader, Bytes)> {
        let size = stream.read_i32().await.ok()?;
        let mut frame = vec![0u8; size as usize];
        stream.read_exact(&mut frame).await.ok()?;
        let mut frame = Bytes::from(frame);
        let key = (&frame[..2]).get_i16();
        let version = (&frame[2..4]).get_i16();
        let header_version = kafka_protocol::messages::ApiKey::try_from(key)
            .unwrap()
            .request_header_version(version);
        Some((
            RequestHeader::decode(&mut frame, header_version).unwrap(),
            frame,
        ))
    }

    async fn write_frame<M: Encodable>(
        stream: &mut tokio::net::TcpStream,
        correlation_id: i32,
        header_version: i16,
        body: &M,
        version: i16,
    ) {
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, header_version)
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&frame).await.unwrap();
    }

    /// A fake broker 2 that answers NOT_LEADER_OR_FOLLOWER for `remote-1` the first time it is asked,
    /// and writes every other marker.
    async fn fake_leader(seen: Seen) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let refused = Arc::new(AtomicI64::new(0));
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let refused = refused.clone();
                tokio::spawn(async move {
                    while let Some((header, mut body)) = read_frame(&mut stream).await {
                        let version = header.request_api_version;
                        if header.request_api_key == 18 {
                            let keys = ApiVersionsResponse::default().with_api_keys(vec![
                                ApiVersion::default()
                                    .with_api_key(27)
                                    .with_min_version(1)
                                    .with_max_version(1),
                            ]);
                            write_frame(&mut stream, header.correlation_id, 0, &keys, version)
                                .await;
                            continue;
                        }
                        let request = WriteTxnMarkersRequest::decode(&mut body, version).unwrap();
                        let mut results = Vec::new();
                        for marker in &request.markers {
                            let mut topics = BTreeMap::new();
                            let mut topic_results = Vec::new();
                            for topic in &marker.topics {
                                topics.insert(
                                    topic.name.to_string(),
                                    topic.partition_indexes.clone(),
                                );
                                let partitions = topic.partition_indexes.iter().map(|&p| {
                                    let refuse = topic.name.as_str() == "remote"
                                        && p == 1
                                        && refused.fetch_add(1, Ordering::SeqCst) == 0;
                                    WritableTxnMarkerPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_error_code(if refuse { 6 } else { 0 })
                                });
                                topic_results.push(
                                    WritableTxnMarkerTopicResult::default()
                                        .with_name(topic.name.clone())
                                        .with_partitions(partitions.collect()),
                                );
                            }
                            seen.lock().unwrap().push((
                                marker.producer_id.0,
                                marker.transaction_result,
                                marker.coordinator_epoch,
                                topics,
                            ));
                            results.push(
                                WritableTxnMarkerResult::default()
                                    .with_producer_id(marker.producer_id)
                                    .with_topics(topic_results),
                            );
                        }
                        let response = WriteTxnMarkersResponse::default().with_markers(results);
                        write_frame(&mut stream, header.correlation_id, 1, &response, version)
                            .await;
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn markers_of_partitions_led_elsewhere_go_to_their_leader_in_one_request_and_are_retried()
    {
        let dir = tempfile::tempdir().unwrap();
        let metadata = Arc::new(MetadataStore::open(dir.path(), 1).unwrap());
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let defaults = LogConfig::default();
        let replicas = ReplicaManager::new(1, logs, Arc::new(move || defaults.clone()));
        metadata.add_publisher(replicas.clone());
        let next = Arc::new(AtomicI64::new(1000));
        let txn = TransactionCoordinator::open(
            metadata.clone(),
            replicas.clone(),
            crate::txn::TransactionConfig {
                state_log_num_partitions: 1,
                ..Default::default()
            },
            1,
            Clock::system(),
            Arc::new(move || Ok(next.fetch_add(1, Ordering::SeqCst))),
        );
        let seen: Seen = Arc::default();
        let port = fake_leader(seen.clone()).await;
        metadata.register_broker(BrokerRegistration {
            id: 2,
            endpoints: vec![BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                security_protocol: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port,
            }],
            ..Default::default()
        });
        // Three partitions broker 2 leads (none held here), one this broker leads.
        metadata.publish_delta(&MetadataDelta {
            topics: vec![TopicDelta::Created(Arc::new(TopicImage {
                name: "remote".into(),
                id: uuid::Uuid::new_v4(),
                partitions: (0..3)
                    .map(|_| PartitionRegistration {
                        replicas: vec![2],
                        isr: vec![2],
                        leader: 2,
                        ..Default::default()
                    })
                    .collect(),
                configs: BTreeMap::new(),
            }))],
            ..Default::default()
        });
        metadata.create_topic("local", 1, BTreeMap::new()).unwrap();
        let mut config = NetworkClientConfig::for_broker(1);
        config.request_timeout = Duration::from_secs(5);
        txn.set_marker_client(NetworkClient::from_metadata(config, &metadata, "PLAINTEXT"));

        let (pid, epoch) = txn.init_producer_id("tx", 60_000, None).await.unwrap();
        let partitions = BTreeSet::from([
            TopicPartition::new("local", 0),
            TopicPartition::new("remote", 0),
            TopicPartition::new("remote", 1),
            TopicPartition::new("remote", 2),
        ]);
        txn.add_partitions("tx", pid, epoch, partitions)
            .await
            .unwrap();
        txn.end_txn("tx", pid, epoch, true).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while txn.describe("tx").unwrap().state != TransactionState::CompleteCommit {
            assert!(
                tokio::time::Instant::now() < deadline,
                "transaction completes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let coordinator_epoch = replicas
            .partition(&TopicPartition::new(TRANSACTION_STATE_TOPIC, 0))
            .unwrap()
            .leader_epoch();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                // One request for all three, then the refused one alone.
                (
                    pid,
                    true,
                    coordinator_epoch,
                    BTreeMap::from([("remote".to_string(), vec![0, 1, 2])])
                ),
                (
                    pid,
                    true,
                    coordinator_epoch,
                    BTreeMap::from([("remote".to_string(), vec![1])])
                ),
            ]
        );
        // The local partition's marker was appended here.
        let local = replicas
            .partition(&TopicPartition::new("local", 0))
            .unwrap();
        assert_eq!(local.log_end_offset(), 1, "one marker");
    }
}
