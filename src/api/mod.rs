//! One module per Kafka API: each turns a decoded request into calls on the log and the metadata store and
//! builds the response. Nothing here touches a file or a socket directly.

pub mod acl_operations;
pub mod api_versions;
pub mod configs;
pub mod context;
pub mod create_partitions;
pub mod delete_records;
pub mod describe_cluster;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod error;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod init_producer_id;
pub mod legacy;
pub mod list_offsets;
pub mod metadata;
pub mod metadata_cache;
pub mod offset_for_leader_epoch;
pub mod offsets;
pub mod partition_reassignments;
pub mod produce;
pub mod registry;
pub mod response_metrics;
pub mod topics;
pub mod txn;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::cluster::{MetadataError, MetadataStore, TopicImage};
use crate::config::{Config, Endpoint};
use crate::group::coordinator::GroupCoordinator;
use crate::log::{LogConfig, LogManager, TopicPartition};
use crate::replica::{Partition, ReplicaManager};

/// Everything a request handler needs: the broker's identity, the metadata image, its partitions.
pub struct Apis {
    pub config: Config,
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised: Endpoint,
    pub metadata: Arc<MetadataStore>,
    /// The partitions this broker holds (API handlers never open or delete logs themselves).
    pub replicas: Arc<ReplicaManager>,
    /// The storage underneath: data directory, background work, shutdown.
    pub logs: Arc<LogManager>,
    /// Fetch requests waiting in a long poll right now.
    pub parked_fetches: Arc<AtomicUsize>,
    /// Flips to true when the broker begins a clean shutdown: parked long polls answer at once instead of
    /// holding the shutdown until their deadline.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The classic group coordinator (and, through it, the committed offsets).
    pub groups: Arc<GroupCoordinator>,
    /// The transaction coordinator.
    pub txn: Arc<crate::txn::TransactionCoordinator>,
    /// This broker's metric registry (a disabled one records nothing).
    pub metrics: crate::metrics::Metrics,
    /// The transaction coordinator's check that a partition is in a producer's ongoing transaction, which
    /// a transactional write asks before it appends (KIP-890). None: nothing is verified.
    pub verify_transaction: Option<VerifyTransaction>,
    /// This broker's handle on the metadata quorum; None on a single node.
    pub controller: Option<Arc<crate::controller::quorum_controller::QuorumController>>,
    /// Whether the quorum has unfenced this broker (its last heartbeat's answer); None on a single node.
    /// A fenced broker leads nothing: a process restarted after a crash replays metadata naming it leader
    /// while the quorum is moving its leaderships away, and a produce it took would wait out its whole
    /// timeout (Kafka's broker does not serve clients until it has registered and caught up).
    pub unfenced: Option<tokio::sync::watch::Receiver<bool>>,
}

/// What a transactional write asks the transaction coordinator before appending to `partition` (KIP-890
/// part 1; Kafka sends it as AddPartitionsToTxn with verify_only).
#[derive(Clone, Copy, Debug)]
pub struct TxnVerification<'a> {
    pub transactional_id: &'a str,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partition: &'a TopicPartition,
}

/// Answers a [`TxnVerification`] as the transaction coordinator answers that partition in a verify-only
/// AddPartitionsToTxn: Ok when the producer (id and epoch) has an ongoing transaction that contains the
/// partition; else TRANSACTION_ABORTABLE (not in the transaction), PRODUCER_FENCED,
/// INVALID_PRODUCER_ID_MAPPING, CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE, or a coordinator error. Called
/// without any lock of the caller held; it must not wait for a group coordinator write.
pub type VerifyTransaction =
    Arc<dyn Fn(&TxnVerification<'_>) -> Result<(), ResponseError> + Send + Sync>;

/// A partition that can serve a request, or the error code Kafka would answer.
pub type PartitionResult = Result<Arc<Partition>, ResponseError>;

impl Apis {
    /// True while the metadata quorum holds this broker fenced (never on a single node).
    pub fn is_fenced(&self) -> bool {
        self.unfenced.as_ref().is_some_and(|u| !*u.borrow())
    }

    /// The partition this broker leads, or the error to answer for it.
    pub fn partition(&self, topic: &str, partition: i32) -> PartitionResult {
        let meta = self
            .metadata
            .topic(topic)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        self.replicas.leader_partition(&meta, partition)
    }

    /// One partition of an already resolved topic (produce and fetch resolve each topic once).
    pub fn partition_of(&self, topic: &TopicImage, partition: i32) -> PartitionResult {
        self.replicas.leader_partition(topic, partition)
    }

    /// Resolves a topic named either by name or, in newer versions, by topic id.
    pub fn resolve_topic(&self, name: &str, id: Uuid) -> Result<Arc<TopicImage>, ResponseError> {
        if !id.is_nil() {
            return self
                .metadata
                .topic_by_id(id)
                .ok_or(ResponseError::UnknownTopicId);
        }
        self.metadata
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition)
    }

    /// Creates a topic; the replica manager creates its partitions' logs as the change is published.
    /// Partitions whose log cannot be created stay offline and are reported as KAFKA_STORAGE_ERROR by the
    /// APIs, as in Kafka.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, MetadataError> {
        let topic = self.metadata.create_topic(name, partitions, configs)?;
        tracing::info!(topic = name, partitions, id = %topic.id, "created topic");
        Ok(topic)
    }

    /// The broker configuration in force: server.properties with the dynamic broker configs on top.
    pub fn effective_config(&self) -> Config {
        let dynamic = self.metadata.broker_configs().get();
        self.config
            .with_dynamic([&dynamic.cluster_default, &dynamic.broker])
    }

    /// The topic defaults in force (`log.*`, static or dynamic); a topic's overrides go on top.
    pub fn log_defaults(&self) -> LogConfig {
        self.effective_config().log
    }

    /// Deletes a topic: clients stop seeing it, then the replica manager deletes its logs.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, MetadataError> {
        let topic = self.metadata.delete_topic(name)?;
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Auto-creates a topic on first use when `auto.create.topics.enable` allows it.
    pub fn auto_create(&self, name: &str) -> Result<Arc<TopicImage>, ResponseError> {
        match self.create_topic(name, self.config.num_partitions, BTreeMap::new()) {
            Ok(topic) => Ok(topic),
            // Lost a race with another client creating the same topic: use theirs.
            Err(MetadataError::TopicExists(_)) => self
                .metadata
                .topic(name)
                .ok_or(ResponseError::UnknownTopicOrPartition),
            Err(MetadataError::InvalidTopic(_)) => Err(ResponseError::InvalidTopicException),
            Err(e) => {
                static FAILED: LogThrottle = LogThrottle::new();
                if let Some(times) = FAILED.hit() {
                    tracing::error!(topic = name, error = %e, times, "auto-creation failed");
                }
                Err(ResponseError::KafkaStorageError)
            }
        }
    }
}

/// The log defaults a replica manager derives partition configs from: this broker's static config with
/// the dynamic broker configs read afresh each time.
pub fn log_defaults_source(
    config: Config,
    metadata: &Arc<MetadataStore>,
) -> crate::replica::LogDefaults {
    let metadata = Arc::downgrade(metadata);
    Arc::new(move || match metadata.upgrade() {
        Some(metadata) => {
            let dynamic = metadata.broker_configs().get();
            config
                .with_dynamic([&dynamic.cluster_default, &dynamic.broker])
                .log
        }
        None => config.log.clone(),
    })
}

/// Logs a broker-side failure that clients meet again with every retry (a fetch, a metadata refresh) at
/// most once per [`LogThrottle::INTERVAL`], with how many happened meanwhile: one line, not one per request.
pub(crate) struct LogThrottle {
    /// When the last line was logged, and the failures since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogThrottle {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

    pub(crate) const fn new() -> Self {
        LogThrottle {
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Some(failures since the last logged one, this one included) when this one should be logged.
    pub(crate) fn hit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, count) = &mut *state;
        *count += 1;
        let now = std::time::Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < Self::INTERVAL) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(count))
    }
}

/// An `Apis` over a fresh data directory with the default config, for the API modules' unit tests.
#[cfg(test)]
pub(crate) fn test_apis(dir: &std::path::Path) -> Apis {
    let config = Config::new();
    let metadata = Arc::new(MetadataStore::open(dir, 1).unwrap());
    let advertised = config.advertised_endpoint("127.0.0.1:9092".parse().expect("literal"));
    // Registered as the broker registers itself at start, on the listener of `RequestContext::for_test`.
    metadata.register_broker(crate::cluster::BrokerRegistration {
        id: 1,
        endpoints: vec![crate::cluster::BrokerEndpoint {
            listener: "PLAINTEXT".into(),
            security_protocol: "PLAINTEXT".into(),
            host: advertised.host.clone(),
            port: advertised.port,
        }],
        ..Default::default()
    });
    let logs = LogManager::open(dir, config.log.clone()).unwrap();
    let replicas = ReplicaManager::new(
        1,
        logs.clone(),
        log_defaults_source(config.clone(), &metadata),
    );
    metadata.add_publisher(replicas.clone());
    let store = crate::group::offset_store::OffsetStore::open(
        metadata.clone(),
        replicas.clone(),
        config.groups.clone(),
    )
    .unwrap();
    let txn = crate::txn::TransactionCoordinator::open(
        metadata.clone(),
        replicas.clone(),
        config.txn.clone(),
        config.groups.offsets_topic_num_partitions,
        crate::clock::Clock::system(),
        init_producer_id::producer_id_source(metadata.clone()),
    );
    Apis {
        advertised,
        txn,
        node_id: 1,
        cluster_id: "test".into(),
        metadata,
        replicas,
        logs,
        groups: GroupCoordinator::new(store, config.groups.clone(), crate::clock::Clock::system()),
        config,
        parked_fetches: Default::default(),
        stopping: tokio::sync::watch::Sender::new(false),
        metrics: crate::metrics::Metrics::disabled(),
        verify_transaction: None,
        controller: None,
        unfenced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_throttle_lets_one_line_through_per_interval() {
        let throttle = LogThrottle::new();
        assert_eq!(throttle.hit(), Some(1));
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
    }
    use crate::log::record_batch::test_support::batch;

    use super::test_apis as apis;

    #[test]
    fn created_topic_never_reuses_a_stale_directory() {
        let dir = tempfile::tempdir().unwrap();
        let apis = apis(dir.path());
        apis.create_topic("orders", 1, BTreeMap::new()).unwrap();
        let log = apis.partition("orders", 0).unwrap();
        log.append_records_to_leader(
            bytes::BytesMut::from(&batch(3, 10, 1)[..]),
            crate::log::AppendOrigin::Client,
        )
        .unwrap();
        assert_eq!(log.log_end_offset(), 3);
        drop(log);
        apis.logs.shutdown().unwrap();

        // As a crash between the two steps of a deletion leaves it: the topic is gone from the
        // metadata, its directory is still on disk.
        MetadataStore::open(dir.path(), 1)
            .unwrap()
            .delete_topic("orders")
            .unwrap();
        let apis = self::apis(dir.path());
        assert!(dir.path().join("orders-0").exists());

        apis.create_topic("orders", 1, BTreeMap::new()).unwrap();
        let log = apis.partition("orders", 0).unwrap();
        assert_eq!(log.log_end_offset(), 0, "the new topic starts empty");
        apis.logs.shutdown().unwrap();
    }

    #[test]
    fn the_offsets_topic_cannot_get_more_partitions() {
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
        use kafka_protocol::messages::{CreatePartitionsRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;

        let dir = tempfile::tempdir().unwrap();
        let apis = apis(dir.path());
        apis.create_topic(crate::group::OFFSETS_TOPIC, 2, BTreeMap::new())
            .unwrap();
        let request = CreatePartitionsRequest::default().with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(
                    crate::group::OFFSETS_TOPIC,
                )))
                .with_count(4),
        ]);
        let response = create_partitions::handle(
            &apis,
            &context::RequestContext::for_test(
                kafka_protocol::messages::ApiKey::CreatePartitions,
                3,
            ),
            request,
        );
        assert_eq!(
            response.results[0].error_code,
            ResponseError::InvalidRequest.code(),
            "groups are hashed over its partitions"
        );
        assert_eq!(
            apis.metadata
                .topic(crate::group::OFFSETS_TOPIC)
                .unwrap()
                .partition_count(),
            2
        );
        apis.logs.shutdown().unwrap();
    }

    /// A broker the quorum holds fenced takes no produce, even for a partition its (stale) metadata says it
    /// leads: NOT_LEADER_OR_FOLLOWER sends the client to ask for metadata, and nothing is appended.
    #[test]
    fn a_fenced_broker_takes_no_produce() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;

        let dir = tempfile::tempdir().unwrap();
        let (unfenced, receiver) = tokio::sync::watch::channel(false);
        let mut fenced = apis(dir.path());
        fenced.unfenced = Some(receiver);
        let apis = Arc::new(fenced);
        apis.create_topic("orders", 1, BTreeMap::new()).unwrap();
        let request = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(bytes::Bytes::from(batch(2, 10, 1)))),
                ]),
        ]);
        let produce = |request: &ProduceRequest| {
            let produce::ProduceOutcome::Respond(response) = produce::handle(
                &apis,
                &context::RequestContext::for_test(kafka_protocol::messages::ApiKey::Produce, 9),
                request.clone(),
            ) else {
                panic!("acks=1 answers at once");
            };
            response.responses[0].partition_responses[0].error_code
        };
        assert_eq!(produce(&request), ResponseError::NotLeaderOrFollower.code());
        let log = apis.partition("orders", 0).unwrap();
        assert_eq!(log.log_end_offset(), 0, "nothing appended while fenced");
        unfenced.send_replace(true);
        assert_eq!(produce(&request), 0);
        assert_eq!(log.log_end_offset(), 2);
        drop(log);
        apis.logs.shutdown().unwrap();
    }

    #[test]
    fn clients_cannot_produce_to_or_delete_the_offsets_topic() {
        use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{DeleteTopicsRequest, ProduceRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;

        let dir = tempfile::tempdir().unwrap();
        let apis = Arc::new(apis(dir.path()));
        apis.create_topic(crate::group::OFFSETS_TOPIC, 1, BTreeMap::new())
            .unwrap();
        let name = TopicName(StrBytes::from_static_str(crate::group::OFFSETS_TOPIC));
        let request = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name.clone())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(bytes::Bytes::from(batch(1, 10, 1)))),
                ]),
        ]);
        let produce::ProduceOutcome::Respond(response) = produce::handle(
            &apis,
            &context::RequestContext::for_test(kafka_protocol::messages::ApiKey::Produce, 9),
            request,
        ) else {
            panic!("acks=1 without waiting answers at once");
        };
        assert_eq!(
            response.responses[0].partition_responses[0].error_code,
            ResponseError::InvalidTopicException.code()
        );
        assert_eq!(
            apis.partition(crate::group::OFFSETS_TOPIC, 0)
                .unwrap()
                .log_end_offset(),
            0
        );

        let request = DeleteTopicsRequest::default()
            .with_topics(vec![DeleteTopicState::default().with_name(Some(name))]);
        let response = topics::delete_topics(
            &apis,
            &context::RequestContext::for_test(kafka_protocol::messages::ApiKey::DeleteTopics, 6),
            request,
            6,
        );
        assert_eq!(
            response.responses[0].error_code,
            ResponseError::InvalidTopicException.code()
        );
        assert!(apis.metadata.topic(crate::group::OFFSETS_TOPIC).is_some());
        apis.logs.shutdown().unwrap();
    }
}
