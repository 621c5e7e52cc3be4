//! brook: a Kafka-compatible message broker on a native segmented log.
//!
//! Embedding: build a [`Config`] (Kafka property names), [`Broker::start`] it (port 0 picks an ephemeral
//! port), read [`Broker::local_addr`], and [`Broker::shutdown`] it. Stock Kafka clients talk to it as to Kafka.
//! A node with `process.roles=controller` is a [`Broker`] too, one that serves no clients: it runs the
//! metadata quorum and the controller's duties only (see [`Broker::is_broker`]).
//!
//! With the default `alloc-guard` feature this crate installs [`alloc_guard::GuardedAllocator`] as the
//! global allocator: the protocol codec allocates arrays by counts read off the wire, and without the guard a
//! crafted request could abort the whole process. Turn the feature off if your binary must choose its own
//! allocator, and install the guard there.

pub mod alloc_guard;
pub mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod group;
pub mod log;
pub mod metrics;
pub mod network;
pub mod raft;
pub mod replica;
pub mod server;
pub mod txn;

#[cfg(feature = "alloc-guard")]
#[global_allocator]
static GLOBAL: alloc_guard::GuardedAllocator = alloc_guard::GuardedAllocator;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Config, ConfigError};

use api::Apis;
use cluster::{MetaProperties, MetadataError, MetadataStore};
use group::coordinator::GroupCoordinator;
use group::offset_store::{GroupStoreError, OffsetStore};
use log::{LogError, LogManager};
use replica::ReplicaManager;
use server::dispatch::Dispatcher;
use server::listener::Listener;
use txn::TransactionCoordinator;

/// How long a clean shutdown lets in-flight requests (long polls included) finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a broker could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    GroupStore(#[from] GroupStoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] controller::member::MemberError),
    #[error("cannot serve metrics on {addr} (metrics.listener): {source}")]
    MetricsBind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("background task failed: {0}")]
    Task(String),
}

/// A running node: a broker (alone or combined with a controller), or a controller-only node.
pub struct Broker {
    /// Every broker listener, in `listeners` order, with its name; empty on a controller-only node.
    listeners: Vec<(String, Listener)>,
    /// The broker's state; None on a controller-only node, which serves no client.
    apis: Option<Arc<Apis>>,
    /// The primary broker listener's address; a controller-only node's controller listener.
    local_addr: SocketAddr,
    cluster_id: String,
    metrics_endpoint: Option<metrics::MetricsEndpoint>,
    /// This node's cluster membership (quorum replica, registration, heartbeats); None on a single node.
    member: Option<Arc<controller::member::ClusterMember>>,
    /// Requests to other brokers (transaction markers); None on a single node.
    network: Option<Arc<network::NetworkClient>>,
}

impl Broker {
    /// Checks the configuration as a whole, loads the data directory (recovering logs after a crash) and
    /// starts listening on every broker listener (not the controller listener: the metadata quorum binds
    /// that one).
    pub async fn start(config: Config) -> Result<Broker, BrokerError> {
        config.validate()?;
        let broker_listeners = config.broker_listeners();
        let cluster = config.cluster_mode();
        let controller_only = cluster.as_ref().is_some_and(|c| !c.roles.broker);
        if broker_listeners.is_empty() && !controller_only {
            return Err(ConfigError::Inconsistent(
                "a broker needs a broker listener (none is left once the controller listeners are set apart)"
                    .into(),
            )
            .into());
        }
        let bind_addrs = broker_listeners
            .iter()
            .map(|l| l.bind.bind_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let limits = config.server.clone();
        // A cluster member's metadata changes wait for the quorum from the synchronous store API, which
        // needs the multi-threaded runtime (see controller::quorum_controller).
        if cluster.is_some()
            && tokio::runtime::Handle::current().runtime_flavor()
                != tokio::runtime::RuntimeFlavor::MultiThread
        {
            return Err(ConfigError::Inconsistent(
                "a cluster member (process.roles) needs tokio's multi-threaded runtime".into(),
            )
            .into());
        }
        // The quorum's socket: the controller listener, or (a broker-only node, an observer of the
        // metadata log) an ephemeral port on the primary listener's host where the leader sends the log.
        let mut quorum_socket = match &cluster {
            Some(c) => {
                let addr = match &c.controller_listener {
                    Some(listener) => listener.bind.bind_addr()?,
                    None => {
                        let primary = config
                            .primary_listener()
                            .expect("validate checked that a broker listener exists");
                        let mut addr = primary.bind.bind_addr()?;
                        addr.set_port(0);
                        addr
                    }
                };
                Some(
                    std::net::TcpListener::bind(addr)
                        .map_err(|source| BrokerError::Bind { addr, source })?,
                )
            }
            None => None,
        };
        if controller_only && let (Some(cluster), Some(socket)) = (&cluster, quorum_socket.take()) {
            return start_controller_only(config, cluster, socket).await;
        }
        let clock = clock::Clock::system();
        let log_clock = clock.clone();
        let loaded = tokio::task::spawn_blocking(move || load(config, log_clock))
            .await
            .map_err(|e| BrokerError::Task(e.to_string()))??;
        let (config, meta, metadata, replicas, offsets, txn, import) = loaded;
        let logs = replicas.logs().clone();
        let groups = GroupCoordinator::new(offsets.clone(), config.groups.clone(), clock);
        groups.restore(offsets.loaded_groups());
        groups.start();
        // The markers of __consumer_offsets partitions go through the group coordinator, which commits or
        // drops the offsets TxnOffsetCommit staged there.
        let marker_groups = Arc::downgrade(&groups);
        txn.set_offsets_marker_writer(Arc::new(
            move |partition, pid, epoch, commit, coordinator_epoch| {
                let groups = marker_groups.upgrade();
                Box::pin(async move {
                    let groups = groups.ok_or(kafka_protocol::ResponseError::NotCoordinator)?;
                    groups
                        .complete_transaction(partition, pid, epoch, commit, coordinator_epoch)
                        .await
                        .map_err(|e| e.response_error())
                })
            },
        ));
        // In a cluster, the markers of partitions led elsewhere go to their leaders over the inter-broker
        // listener.
        let network = cluster.as_ref().map(|_| {
            let client = network::NetworkClient::from_metadata(
                network::NetworkClientConfig::for_broker(config.node_id),
                &metadata,
                config.inter_broker_listener_name(),
            );
            txn.set_marker_client(client.clone());
            client
        });
        // Followers fetch from their leaders. Set before the member starts: replaying the metadata log
        // then hands every followed partition to the fetchers. The broker epoch is known once the
        // member's registration is accepted.
        let controller_slot: Arc<
            std::sync::OnceLock<std::sync::Weak<controller::quorum_controller::QuorumController>>,
        > = Arc::default();
        if let Some(client) = &network {
            let slot = controller_slot.clone();
            let fetchers = replica::ReplicaFetcherManager::new(
                config.node_id,
                client.clone(),
                config.replica_fetch.clone(),
                Arc::new(move || {
                    slot.get()
                        .and_then(std::sync::Weak::upgrade)
                        .map_or(-1, |c| c.broker_epoch())
                }),
                // As Kafka's replica fetcher: the cluster id field is KRaft's own fetches'.
                None,
            );
            replicas.set_fetcher_manager(fetchers);
        }
        // Completes the transactions a previous run left prepared, then sweeps timed-out and expired ones.
        txn.start();
        let verifier = txn.clone();
        let verify_transaction: api::VerifyTransaction =
            Arc::new(move |v: &api::TxnVerification<'_>| {
                verifier.verify_transaction(
                    v.transactional_id,
                    v.producer_id,
                    v.producer_epoch,
                    v.partition,
                )
            });

        let member = match (&cluster, quorum_socket) {
            (Some(cluster), Some(socket)) => Some(Arc::new(
                controller::member::ClusterMember::start(
                    cluster, &config, &metadata, socket, import,
                )
                .await?,
            )),
            _ => None,
        };
        if let Some(member) = &member {
            let _ = controller_slot.set(Arc::downgrade(&member.controller));
        }
        // The leaders' ISR upkeep: expansions and shrinks go to the quorum as AlterPartition.
        if let (Some(member), Some(cluster)) = (&member, &cluster) {
            replicas.start_isr_management(
                Arc::new(controller::alter_partition_manager::QuorumAlterPartition {
                    controller: member.controller.clone(),
                    node_id: config.node_id,
                }),
                cluster.replica_lag_time_max,
                member.stopping(),
            );
        }
        let cluster_id = match (&member, meta) {
            (Some(member), _) => member.cluster_id.clone(),
            (None, Some(meta)) => meta.cluster_id,
            (None, None) => unreachable!("a single node always has its meta.properties"),
        };

        // The advertised port is the bound one when a listener asks for port 0, so bind before the
        // dispatcher exists; requests cannot arrive before the listeners are started with it.
        let mut sockets = Vec::with_capacity(bind_addrs.len());
        let mut endpoints = Vec::with_capacity(bind_addrs.len());
        for (listener, addr) in broker_listeners.iter().zip(bind_addrs) {
            let socket = std::net::TcpListener::bind(addr)
                .map_err(|source| BrokerError::Bind { addr, source })?;
            let bound = socket.local_addr()?;
            if let Some(advertised) = listener.advertised_endpoint(bound) {
                endpoints.push(cluster::BrokerEndpoint {
                    listener: listener.name.clone(),
                    security_protocol: listener.security_protocol.name().into(),
                    host: advertised.host,
                    port: advertised.port,
                });
            }
            sockets.push(socket);
        }
        let primary_name = config
            .primary_listener()
            .expect("validate checked that a broker listener exists")
            .name;
        let primary = broker_listeners
            .iter()
            .position(|l| l.name == primary_name)
            .expect("the primary listener is one of the broker listeners");
        let local_addr = sockets[primary].local_addr()?;
        let advertised = config.advertised_endpoint(local_addr);
        // The primary listener's endpoint first: the answers that name one endpoint per broker (Metadata
        // today takes the first) then agree with FindCoordinator and DescribeCluster (`apis.advertised`).
        if let Some(at) = endpoints.iter().position(|e| e.listener == primary_name) {
            endpoints[..=at].rotate_right(1);
        }
        match &member {
            // A cluster member registers with the quorum (in the background: it may still be electing).
            Some(member) => member.register(controller::broker_lifecycle::Registration {
                broker_id: config.node_id,
                cluster_id: cluster_id.clone(),
                endpoints: endpoints
                    .iter()
                    .map(|e| controller::records::BrokerEndpoint {
                        name: e.listener.clone(),
                        host: e.host.clone(),
                        port: e.port,
                        security_protocol: e.security_protocol.clone(),
                    })
                    .collect(),
                rack: config.rack.clone(),
                previous_broker_epoch: logs.previous_broker_epoch(),
            }),
            None => metadata.register_broker(cluster::BrokerRegistration {
                id: config.node_id,
                endpoints,
                rack: config.rack.clone(),
                ..Default::default()
            }),
        }
        let metrics_socket = bind_metrics(&config)?;
        let metrics = match &metrics_socket {
            Some(_) => metrics::Metrics::new(&config.metrics),
            None => metrics::Metrics::disabled(),
        };
        logs.observe_flushes(metrics.flush_histogram());
        let apis = Arc::new(Apis {
            advertised,
            node_id: config.node_id,
            cluster_id,
            config,
            metadata,
            replicas,
            logs,
            groups,
            txn,
            parked_fetches: Default::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            metrics,
            verify_transaction: Some(verify_transaction),
            controller: member.as_ref().map(|m| m.controller.clone()),
            unfenced: member.as_ref().and_then(|m| m.unfenced()),
        });
        let dispatcher: Arc<Dispatcher> = Arc::new(Dispatcher::new(apis.clone()));
        let connection_counts: Arc<server::listener::ConnectionCounts> = Arc::default();
        let mut listeners = Vec::with_capacity(sockets.len());
        for (listener, socket) in broker_listeners.iter().zip(sockets) {
            let identity = server::listener::ListenerIdentity {
                name: Arc::from(listener.name.as_str()),
                security_protocol: listener.security_protocol,
            };
            let served = Listener::from_std_named(
                socket,
                identity,
                limits.clone(),
                dispatcher.clone(),
                connection_counts.clone(),
            )?;
            listeners.push((listener.name.clone(), served));
        }
        let metrics_endpoint = match metrics_socket {
            Some(socket) => {
                let scraper = server::scrape::Scraper::new(apis.clone(), connection_counts);
                let endpoint = metrics::MetricsEndpoint::start(socket, scraper)?;
                tracing::info!(
                    "serving metrics on http://{}/metrics",
                    endpoint.local_addr()
                );
                Some(endpoint)
            }
            None => None,
        };
        for (name, listener) in &listeners {
            tracing::info!(
                node_id = apis.node_id,
                cluster_id = %apis.cluster_id,
                listener = %name,
                "listening on {}",
                listener.local_addr()
            );
        }
        tracing::info!(
            advertised = %format!("{}:{}", apis.advertised.host, apis.advertised.port),
            "clients bootstrap through {local_addr} ({primary_name})"
        );
        Ok(Broker {
            listeners,
            cluster_id: apis.cluster_id.clone(),
            apis: Some(apis),
            local_addr,
            metrics_endpoint,
            member,
            network,
        })
    }

    /// Whether this node serves clients (false on a `process.roles=controller` node).
    pub fn is_broker(&self) -> bool {
        self.apis.is_some()
    }

    /// The controller listener's address when this node is a voter of the metadata quorum.
    pub fn controller_addr(&self) -> Option<SocketAddr> {
        self.member.as_ref().and_then(|m| m.controller_addr())
    }

    /// The address the primary listener is bound to (the real port when the config said 0): the
    /// inter-broker listener, else the first broker listener. A controller-only node has no broker
    /// listener: its controller listener's address, which speaks the quorum's protocol, not Kafka's.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the broker listener called `name` (as in `listeners`, any case) is bound to; None for a
    /// name that is not a broker listener of this broker (a controller listener included).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(listener, _)| listener.eq_ignore_ascii_case(name))
            .map(|(_, listener)| listener.local_addr())
    }

    /// Where `GET /metrics` is served (the real port when `metrics.listener` said 0); None when metrics are
    /// disabled or the default address was taken.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.as_ref().map(|e| e.local_addr())
    }

    /// `host:port` for a client's `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.local_addr.to_string()
    }

    /// Fetch requests parked in a long poll right now, waiting for data or their deadline.
    pub fn parked_fetches(&self) -> usize {
        self.apis.as_ref().map_or(0, |apis| {
            apis.parked_fetches
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// A dispatcher on this broker's state, to run request frames through it without a socket (fuzzing,
    /// tests); None on a controller-only node.
    #[doc(hidden)]
    pub fn try_dispatcher(&self) -> Option<Dispatcher> {
        self.apis.clone().map(Dispatcher::new)
    }

    /// [`Self::try_dispatcher`] of a node known to be a broker.
    #[doc(hidden)]
    pub fn dispatcher(&self) -> Dispatcher {
        self.try_dispatcher().expect(
            "dispatcher() is for broker nodes; a controller-only node has none (try_dispatcher)",
        )
    }

    /// Resolves true once the metadata quorum unfenced this broker (at once on a single node); false when
    /// `limit` passed first, and at once on a controller-only node (it is no broker to unfence).
    pub async fn wait_until_unfenced(&self, limit: Duration) -> bool {
        match &self.member {
            Some(_) if self.apis.is_none() => false,
            Some(member) => member.wait_unfenced(limit).await,
            None => true,
        }
    }

    /// The partitions this broker holds (tests compare replicas' logs through it). A broker node's only:
    /// a controller-only node holds none.
    #[doc(hidden)]
    pub fn replica_manager(&self) -> &Arc<ReplicaManager> {
        &self
            .apis
            .as_ref()
            .expect(
                "replica_manager() is for broker nodes; a controller-only node has no partitions",
            )
            .replicas
    }

    /// This node's cluster id, from `meta.properties` (agreed by the quorum in a cluster).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Clean stop: stop accepting, finish in-flight requests, flush every log, write the checkpoints and the
    /// clean-shutdown marker (so the next start does not rescan the logs).
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        // A cluster member first hands its leaderships to other replicas (Kafka's controlled shutdown),
        // serving meanwhile.
        if let Some(member) = &self.member {
            member.controlled_shutdown().await;
        }
        if let Some(apis) = &self.apis {
            apis.stopping.send_replace(true);
            // Followers stop fetching before the logs close (a fetch in flight is dropped).
            if let Some(fetchers) = apis.replicas.fetcher_manager() {
                fetchers.shutdown().await;
            }
            // Members waiting in JoinGroup/SyncGroup are told to find the coordinator again, not held.
            apis.groups.shutdown();
            apis.txn.shutdown();
        }
        if let Some(network) = &self.network {
            network.close();
        }
        futures_util::future::join_all(
            self.listeners
                .into_iter()
                .map(|(_, listener)| listener.shutdown(SHUTDOWN_GRACE)),
        )
        .await;
        if let Some(endpoint) = self.metrics_endpoint {
            endpoint.shutdown().await;
        }
        if let Some(apis) = &self.apis {
            let logs = apis.logs.clone();
            // The clean-shutdown marker carries this run's broker epoch: the next registration names it,
            // and the controller then knows the log lost nothing (KIP-966).
            if let Some(member) = &self.member {
                logs.set_broker_epoch(member.broker_epoch());
            }
            tokio::task::spawn_blocking(move || logs.shutdown())
                .await
                .map_err(|e| BrokerError::Task(e.to_string()))??;
        }
        if let Some(member) = &self.member {
            member.stop().await;
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }

    /// Stops the broker's background work from synchronous code (a test harness dropping brokers while it
    /// unwinds from a failure): nothing flushed, as [`Self::crash`]; the listeners end with the runtime.
    #[doc(hidden)]
    pub fn halt(&self) {
        if let Some(apis) = &self.apis {
            apis.stopping.send_replace(true);
            if let Some(fetchers) = apis.replicas.fetcher_manager() {
                fetchers.halt();
            }
            apis.groups.shutdown();
            apis.txn.shutdown();
        }
        if let Some(member) = &self.member {
            member.halt();
        }
        if let Some(apis) = &self.apis {
            apis.logs.abandon();
        }
    }

    /// Stops as a `kill -9` would leave things: connections dropped, nothing flushed, no checkpoints, no
    /// clean-shutdown marker. For recovery tests.
    pub async fn crash(self) {
        if let Some(apis) = &self.apis {
            if let Some(fetchers) = apis.replicas.fetcher_manager() {
                fetchers.halt();
            }
            apis.groups.shutdown();
            apis.txn.shutdown();
        }
        if let Some(network) = &self.network {
            network.close();
        }
        for (_, listener) in self.listeners {
            listener.shutdown(Duration::ZERO).await;
        }
        if let Some(member) = &self.member {
            member.stop().await;
        }
        if let Some(apis) = &self.apis {
            apis.logs.abandon();
        }
    }
}

/// Starts a `process.roles=controller` node: the metadata quorum's voter on `socket` (the controller
/// listener) and the controller's duties (session expiry, leader balancing, the leader's answers to
/// heartbeats, registrations and DescribeQuorum). No broker listener, no partitions, no registration as a
/// broker; its metadata image is only the quorum's state, which nothing here serves.
async fn start_controller_only(
    config: Config,
    cluster: &config::ClusterConfig,
    socket: std::net::TcpListener,
) -> Result<Broker, BrokerError> {
    let local_addr = socket.local_addr()?;
    let (dir, node_id) = (config.log_dir.clone(), config.node_id);
    // Refuses another node's data directory before the quorum starts, as a broker's start does.
    tokio::task::spawn_blocking(move || -> Result<(), BrokerError> {
        std::fs::create_dir_all(&dir)?;
        MetaProperties::load_of_node(&dir, node_id)?;
        Ok(())
    })
    .await
    .map_err(|e| BrokerError::Task(e.to_string()))??;
    let metadata = Arc::new(MetadataStore::replicated(node_id));
    let member = Arc::new(
        controller::member::ClusterMember::start(cluster, &config, &metadata, socket, Vec::new())
            .await?,
    );
    let cluster_id = member.cluster_id.clone();
    tracing::info!(
        node_id,
        cluster_id = %cluster_id,
        "controller listening on {local_addr} (process.roles=controller: no broker listener)"
    );
    Ok(Broker {
        listeners: Vec::new(),
        apis: None,
        local_addr,
        cluster_id,
        metrics_endpoint: None,
        member: Some(member),
        network: None,
    })
}

/// Binds `metrics.listener`. A failure is fatal when the address was configured; when it is only the
/// default (`127.0.0.1:9464`, taken by another broker on the host) brook logs it and runs without metrics.
fn bind_metrics(config: &Config) -> Result<Option<std::net::TcpListener>, BrokerError> {
    let Some(endpoint) = &config.metrics.listener else {
        return Ok(None);
    };
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let bound = endpoint
        .bind_addr()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
        .and_then(std::net::TcpListener::bind);
    match bound {
        Ok(socket) => Ok(Some(socket)),
        Err(source) if !config.explicit().contains_key("metrics.listener") => {
            tracing::warn!(%addr, error = %source, "default metrics listener unavailable; metrics are off (set metrics.listener)");
            Ok(None)
        }
        Err(source) => Err(BrokerError::MetricsBind { addr, source }),
    }
}

type Loaded = (
    Config,
    Option<MetaProperties>,
    Arc<MetadataStore>,
    Arc<ReplicaManager>,
    Arc<OffsetStore>,
    Arc<TransactionCoordinator>,
    Vec<controller::ControllerCommand>,
);

/// Opens the data directory: identity, topics, and every partition log.
fn load(config: Config, clock: clock::Clock) -> Result<Loaded, BrokerError> {
    std::fs::create_dir_all(&config.log_dir)?;
    // A cluster member's metadata is the quorum's; its identity is recorded once the cluster id is agreed.
    let (meta, metadata, import) = if config.cluster_mode().is_some() {
        let meta = MetaProperties::load_of_node(&config.log_dir, config.node_id)?;
        let import = controller::member::single_node_import(&config.log_dir, config.node_id)?;
        (
            meta,
            Arc::new(MetadataStore::replicated(config.node_id)),
            import,
        )
    } else {
        let meta = MetaProperties::load_or_create(&config.log_dir, config.node_id)?;
        let metadata = Arc::new(MetadataStore::open(&config.log_dir, config.node_id)?);
        (Some(meta), metadata, Vec::new())
    };
    // Dynamic broker configs (AlterConfigs) override server.properties from the start.
    let log_defaults = api::log_defaults_source(config.clone(), &metadata);
    let logs = LogManager::open_with_clock(&config.log_dir, log_defaults(), clock.clone())?;

    group::upgrade_offsets_topic_config(&metadata);
    // The replica manager opens every partition of the image now, and follows every later change.
    let replicas = ReplicaManager::new(config.node_id, logs.clone(), log_defaults);
    metadata.add_publisher(replicas.clone());
    if !logs.had_clean_shutdown() {
        // Recovery fsynced what it checked: record that now, so that another crash soon after (before the
        // periodic checkpoint) does not scan it all again.
        if let Err(e) = logs.checkpoint() {
            tracing::warn!(error = %e, "could not write the recovery point checkpoint after recovery");
        }
    }
    let offsets = OffsetStore::open(metadata.clone(), replicas.clone(), config.groups.clone())?;
    // Loads every partition of an existing __transaction_state now, as the offsets above.
    let txn = TransactionCoordinator::open(
        metadata.clone(),
        replicas.clone(),
        config.txn.clone(),
        config.groups.offsets_topic_num_partitions,
        clock,
        api::init_producer_id::producer_id_source(metadata.clone()),
    );
    logs.start_background(config.cleaner.clone())?;
    Ok((config, meta, metadata, replicas, offsets, txn, import))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller-only node (here the single voter of its quorum) starts with no broker listener, and
    /// its accessors answer without panicking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_controller_only_node_serves_no_clients() {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut config = Config::new();
        for (key, value) in [
            ("process.roles", "controller"),
            ("node.id", "1"),
            ("controller.quorum.voters", &format!("1@127.0.0.1:{port}")),
            ("controller.listener.names", "CONTROLLER"),
            ("listeners", &format!("CONTROLLER://127.0.0.1:{port}")),
            ("metrics.listener", ""),
            ("log.dirs", dir.path().to_str().expect("UTF-8 temp dir")),
        ] {
            config.set(key, value).expect(key);
        }
        let node = Broker::start(config).await.expect("start");
        assert!(!node.is_broker());
        assert_eq!(node.local_addr().port(), port, "the controller listener");
        assert_eq!(node.controller_addr(), Some(node.local_addr()));
        assert_eq!(node.listener_addr("CONTROLLER"), None, "no broker listener");
        assert!(node.try_dispatcher().is_none());
        assert_eq!(node.parked_fetches(), 0);
        assert!(
            !node.cluster_id().is_empty(),
            "the quorum agreed on a cluster id"
        );
        assert!(
            !node.wait_until_unfenced(Duration::ZERO).await,
            "no broker to unfence"
        );
        let meta = MetaProperties::load(dir.path())
            .expect("read")
            .expect("written");
        assert_eq!(meta.cluster_id, node.cluster_id());
        node.shutdown().await.expect("clean shutdown");
    }

    /// The broker registers one endpoint per broker listener, as advertised, with its rack: what other
    /// brokers and (through Metadata) clients learn of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registration_lists_every_advertised_broker_listener_and_the_rack() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new();
        for (key, value) in [
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0,EXTRA://127.0.0.1:0",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,EXTRA:PLAINTEXT",
            ),
            (
                "advertised.listeners",
                "PLAINTEXT://broker1.example:0,INTERNAL://127.0.0.1:0",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
            ("broker.rack", "rack-a"),
            ("metrics.listener", ""),
            ("log.dirs", dir.path().to_str().expect("UTF-8 temp dir")),
        ] {
            config.set(key, value).expect(key);
        }
        let broker = Broker::start(config).await.expect("start");
        let port = |name| broker.listener_addr(name).expect(name).port();
        let (plaintext, internal, extra) = (port("PLAINTEXT"), port("INTERNAL"), port("EXTRA"));
        let apis = broker.apis.as_ref().expect("a broker");
        let image = apis.metadata.image();
        let registration = image.broker(1).expect("the broker registered itself");
        let endpoints: Vec<(&str, &str, &str, u16)> = registration
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.listener.as_str(),
                    e.security_protocol.as_str(),
                    e.host.as_str(),
                    e.port,
                )
            })
            .collect();
        assert_eq!(
            endpoints,
            [
                ("INTERNAL", "PLAINTEXT", "127.0.0.1", internal),
                ("PLAINTEXT", "PLAINTEXT", "broker1.example", plaintext),
            ],
            "the inter-broker listener first; EXTRA is bound (port {extra}) but not advertised"
        );
        assert_eq!(registration.rack.as_deref(), Some("rack-a"));
        assert_eq!(broker.local_addr().port(), internal);
        assert_eq!(
            (apis.advertised.host.as_str(), apis.advertised.port),
            ("127.0.0.1", internal),
            "the answers that name one endpoint name the inter-broker listener's"
        );
        broker.shutdown().await.expect("clean shutdown");
    }
}
