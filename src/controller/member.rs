//! A broker's start and stop as a member of a cluster (Kafka's `BrokerServer` / `ControllerServer` start
//! sequence, for combined and broker-only nodes): start this node's quorum replica, agree on the cluster id
//! (the first id proposed wins; a data directory of another cluster is refused), import a single node's
//! metadata when its data directory is migrated, then register and heartbeat. Stopping asks for a
//! controlled shutdown first, so leaderships move before the process exits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use tokio::sync::watch;

use crate::cluster::{MetaProperties, MetadataError, MetadataStore};
use crate::config::{ClusterConfig, Config};
use crate::raft::{Quorum, QuorumConfig, RaftError};

use super::broker_lifecycle::{BrokerLifecycle, Registration};
use super::quorum_controller::{self, ControllerDefaults, QuorumController};
use super::{ControllerCommand, ControllerResponse};

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{0}")]
    InconsistentClusterId(String),
    #[error(
        "no metadata quorum answered within {0:?} (is a majority of controller.quorum.voters running?)"
    )]
    NoQuorum(Duration),
    /// This node could not reach the quorum, and a peer it tried has other voters.
    #[error("{0}")]
    VotersDiffer(String),
}

/// This node's membership: its quorum replica and the broker lifecycle.
pub struct ClusterMember {
    pub controller: Arc<QuorumController>,
    pub cluster_id: String,
    lifecycle: std::sync::Mutex<Option<Arc<BrokerLifecycle>>>,
    heartbeat_interval: Duration,
    session_timeout: Duration,
    stop: watch::Sender<bool>,
    /// The controller listener's bound address; None on a broker-only node (an observer's socket is not
    /// a controller listener).
    controller_addr: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// The quorum's directory under `metadata.log.dir` (Kafka's `__cluster_metadata-0`).
pub fn quorum_dir(cluster: &ClusterConfig) -> std::path::PathBuf {
    cluster.metadata_log_dir.join("__cluster_metadata-0")
}

impl ClusterMember {
    /// Starts the quorum replica on `socket` (the controller listener, or an ephemeral one a broker-only
    /// node receives the log on), and waits until the cluster id is agreed.
    pub async fn start(
        cluster: &ClusterConfig,
        config: &Config,
        metadata: &Arc<MetadataStore>,
        socket: std::net::TcpListener,
        import: Vec<ControllerCommand>,
    ) -> Result<ClusterMember, MemberError> {
        let voters: BTreeMap<u64, String> = cluster
            .voters
            .iter()
            .map(|(&id, e)| (id as u64, format!("{}:{}", e.host, e.port)))
            .collect();
        let mut quorum_config =
            QuorumConfig::new(cluster.node_id as u64, voters, quorum_dir(cluster));
        quorum_config.election_timeout = cluster.election_timeout;
        quorum_config.rpc_timeout = cluster.fetch_timeout;
        quorum_config.request_timeout = cluster.request_timeout.max(Duration::from_secs(5));
        // Kafka snapshots by bytes of records; a brook command is about a kilobyte.
        quorum_config.snapshot_every = (cluster.snapshot_max_new_record_bytes / 1024).max(1);
        let controller_addr = match cluster.controller_listener {
            Some(_) => Some(socket.local_addr().map_err(RaftError::Listener)?),
            None => None,
        };
        if cluster.controller_listener.is_none() {
            let bound = socket.local_addr().map_err(RaftError::Listener)?;
            quorum_config.address = Some(bound.to_string());
        }
        let state_machine = quorum_controller::state_machine(metadata, cluster.node_id);
        let reader = state_machine.reader();
        let quorum = Quorum::start(quorum_config, socket, Box::new(state_machine)).await?;
        let controller = QuorumController::new(
            quorum.clone(),
            cluster.node_id,
            ControllerDefaults {
                default_replication_factor: config.default_replication_factor,
                session_timeout: cluster.broker_session_timeout,
                static_configs: super::config_control::controller_static_configs_of(&config.log),
            },
            reader,
        );
        quorum.set_leader_handler(controller.leader_handler());
        metadata.set_writer(controller.clone());

        let joined = match agree_on_cluster_id(&controller, &config.log_dir, cluster).await {
            Ok(cluster_id) => import_single_node(&controller, &config.log_dir, import)
                .await
                .map(|()| cluster_id),
            Err(e) => Err(e),
        };
        let cluster_id = match joined {
            Ok(cluster_id) => cluster_id,
            Err(e) => {
                // Nothing of this node may keep answering its peers once its start failed.
                quorum.shutdown().await;
                return Err(e);
            }
        };
        let (stop, _) = watch::channel(false);
        tokio::spawn(controller.clone().run_session_expiry(stop.subscribe()));
        super::leader_balancer::spawn(controller.clone(), config, stop.subscribe());
        Ok(ClusterMember {
            controller,
            cluster_id,
            lifecycle: std::sync::Mutex::new(None),
            heartbeat_interval: cluster.broker_heartbeat_interval,
            session_timeout: cluster.broker_session_timeout,
            stop,
            controller_addr,
        })
    }

    /// Where this voter's controller listener is bound; None on a broker-only node.
    pub fn controller_addr(&self) -> Option<std::net::SocketAddr> {
        self.controller_addr
    }

    /// Registers this broker and heartbeats from now on.
    pub fn register(&self, registration: Registration) {
        let lifecycle = BrokerLifecycle::new(
            self.controller.clone(),
            registration,
            self.heartbeat_interval,
            self.session_timeout,
        );
        tokio::spawn(lifecycle.clone().run(self.stop.subscribe()));
        *self
            .lifecycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(lifecycle);
    }

    fn lifecycle(&self) -> Option<Arc<BrokerLifecycle>> {
        self.lifecycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A receiver that turns true when this member stops (for tasks that live as long as it).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Follows whether the controller has this broker unfenced; None before it registers (and on a
    /// controller-only node).
    pub fn unfenced(&self) -> Option<watch::Receiver<bool>> {
        self.lifecycle().map(|l| l.unfenced())
    }

    /// Resolves once the controller unfenced this broker (or `limit` passed: false).
    pub async fn wait_unfenced(&self, limit: Duration) -> bool {
        let Some(lifecycle) = self.lifecycle() else {
            return false;
        };
        let mut unfenced = lifecycle.unfenced();
        tokio::time::timeout(limit, unfenced.wait_for(|u| *u))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Moves this broker's leaderships away before it stops: at most twice the session timeout (a quorum
    /// that cannot answer by then would have fenced this broker anyway, and the last nodes of a stopping
    /// cluster have no quorum left to ask).
    pub async fn controlled_shutdown(&self) {
        if let Some(lifecycle) = self.lifecycle() {
            lifecycle
                .controlled_shutdown(self.session_timeout * 2)
                .await;
        }
    }

    /// The epoch this broker registered with, -1 before its registration was accepted.
    pub fn broker_epoch(&self) -> i64 {
        self.controller.broker_epoch()
    }

    /// Stops heartbeating and the leader-side tasks at once (the quorum stops when its last handle goes).
    pub fn halt(&self) {
        self.stop.send_replace(true);
    }

    /// Stops heartbeating and this node's quorum replica.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        self.controller.quorum().shutdown().await;
    }
}

/// Commits a single node's metadata (several commands when it is large); the first refusal stops it
/// (the cluster already has brokers or these topics) and is logged, leaving the files for another try.
async fn import_single_node(
    controller: &QuorumController,
    log_dir: &Path,
    commands: Vec<ControllerCommand>,
) -> Result<(), MemberError> {
    if commands.is_empty() {
        return Ok(());
    }
    for command in &commands {
        if let Some(e) = controller.commit(command).await?.first_error() {
            tracing::warn!(
                error = ?e.error(),
                "this data directory's single-node metadata was not imported: {}",
                e.message.clone().unwrap_or_default()
            );
            return Ok(());
        }
    }
    tracing::info!("imported this data directory's single-node metadata into the cluster");
    mark_imported(log_dir);
    Ok(())
}

/// Proposes this data directory's cluster id (or a new one) and returns the one in force. A data
/// directory of another cluster is refused; a fresh one records the agreed id in `meta.properties`.
async fn agree_on_cluster_id(
    controller: &QuorumController,
    log_dir: &Path,
    cluster: &ClusterConfig,
) -> Result<String, MemberError> {
    let local = MetaProperties::load(log_dir)?;
    let proposed = local
        .as_ref()
        .map(|m| m.cluster_id.clone())
        .unwrap_or_else(crate::cluster::meta_properties::new_cluster_id);
    let command = ControllerCommand::InitializeCluster {
        cluster_id: proposed,
    };
    let limit = cluster.initial_broker_registration_timeout;
    let started = Instant::now();
    let conflict = controller.quorum().voter_conflict();
    let agreed = loop {
        let committed = controller.commit(&command).await;
        // A node that cannot reach the quorum and has met a peer with other voters stops here: it is on
        // the wrong side of a misconfiguration. One that commits carries on (the peer's own start fails).
        if committed.is_err()
            && let Some(why) = conflict.borrow().clone()
        {
            return Err(MemberError::VotersDiffer(why));
        }
        match committed {
            Ok(ControllerResponse::InitializeCluster { cluster_id }) => break cluster_id,
            Ok(other) => {
                return Err(MemberError::Metadata(MetadataError::Controller {
                    error: ResponseError::UnknownServerError,
                    message: format!("unexpected answer to InitializeCluster: {other:?}"),
                }));
            }
            Err(e) if started.elapsed() < limit => {
                tracing::debug!(error = %e, "waiting for the metadata quorum");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return Err(MemberError::NoQuorum(limit)),
        }
    };
    match local {
        Some(m) if m.cluster_id != agreed => Err(MemberError::InconsistentClusterId(format!(
            "{} belongs to cluster {}, but the metadata quorum's cluster is {agreed}",
            log_dir
                .join(crate::cluster::meta_properties::FILE_NAME)
                .display(),
            m.cluster_id
        ))),
        Some(_) => Ok(agreed),
        None => {
            MetaProperties::store(
                log_dir,
                &MetaProperties {
                    cluster_id: agreed.clone(),
                    node_id: cluster.node_id,
                },
            )?;
            Ok(agreed)
        }
    }
}

/// The metadata of a single brook that used this data directory (`brook-topics.json` and its companions),
/// as the command that imports it into a new cluster; None when there is none or it was imported already.
/// Every partition directory of its topics gets its `partition.metadata` first, so that the cluster's
/// replica manager recognises the directories as these topics' own and keeps their data.
pub fn single_node_import(
    dir: &Path,
    node_id: i32,
) -> Result<Vec<ControllerCommand>, MetadataError> {
    if !dir.join(crate::cluster::metadata_store::FILE_NAME).exists() {
        return Ok(Vec::new());
    }
    let store = MetadataStore::open(dir, node_id)?;
    for topic in store.topics() {
        for partition in 0..topic.partition_count() {
            let partition_dir = dir.join(format!("{}-{partition}", topic.name));
            if partition_dir.is_dir()
                && crate::log::partition_metadata::read(&partition_dir).is_none()
            {
                crate::log::partition_metadata::write(&partition_dir, topic.id)?;
            }
        }
    }
    Ok(ControllerCommand::import_single_node(
        node_id,
        &store,
        crate::raft::MAX_COMMAND_BYTES,
    ))
}

/// Renames the single node's metadata file once the cluster holds its contents, so it is not offered again.
pub fn mark_imported(dir: &Path) {
    let file = dir.join(crate::cluster::metadata_store::FILE_NAME);
    let done = file.with_extension("json.imported");
    if let Err(e) = std::fs::rename(&file, &done) {
        tracing::warn!(error = %e, "could not rename {}", file.display());
    }
}
