//! [`NetworkClient`]: one connection per destination broker, made on first use, remade after a failure
//! once its backoff has passed, and replaced when the broker's registered address changes (a restarted
//! broker on a new port).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::protocol::Request;
use tokio::time::Instant;

use super::connection::BrokerConnection;
use super::{NetworkClientConfig, NetworkError};
use crate::cluster::MetadataStore;

/// Where broker `id` listens for other brokers (`host:port`), read afresh for each connection attempt.
pub type BrokerAddressBook = Arc<dyn Fn(i32) -> Result<String, NetworkError> + Send + Sync>;

/// Per-request choices; the defaults are the client's.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendOptions {
    /// The highest version to use (the highest both sides support otherwise).
    pub max_version: Option<i16>,
    /// Instead of the client's `request_timeout` (a long-polling Fetch needs more than its wait).
    pub timeout: Option<Duration>,
}

/// The connection to one broker and its reconnect backoff.
#[derive(Default)]
struct Node {
    connection: Option<Arc<BrokerConnection>>,
    /// Failed attempts in a row.
    failures: u32,
    /// No new attempt before this.
    retry_at: Option<Instant>,
}

/// The inter-broker client (see the module doc of [`super`]).
pub struct NetworkClient {
    config: NetworkClientConfig,
    addresses: BrokerAddressBook,
    /// One slot per destination ever used (bounded by the brokers of the cluster); the async lock is
    /// held while connecting, so concurrent requests to one broker share one attempt.
    nodes: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Node>>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for NetworkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkClient")
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl NetworkClient {
    pub fn new(config: NetworkClientConfig, addresses: BrokerAddressBook) -> Arc<NetworkClient> {
        Arc::new(NetworkClient {
            config,
            addresses,
            nodes: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A client that finds brokers in `metadata`'s image, at their endpoint named `listener` (the
    /// inter-broker listener, `inter.broker.listener.name`).
    pub fn from_metadata(
        config: NetworkClientConfig,
        metadata: &Arc<MetadataStore>,
        listener: &str,
    ) -> Arc<NetworkClient> {
        let metadata = Arc::downgrade(metadata);
        let listener = listener.to_string();
        NetworkClient::new(
            config,
            Arc::new(move |broker| {
                let metadata = metadata.upgrade().ok_or(NetworkError::Closed)?;
                let image = metadata.image();
                let registration = image
                    .broker(broker)
                    .ok_or(NetworkError::UnknownBroker(broker))?;
                registration
                    .endpoints
                    .iter()
                    .find(|e| e.listener.eq_ignore_ascii_case(&listener))
                    .map(|e| format!("{}:{}", e.host, e.port))
                    .ok_or_else(|| NetworkError::NoEndpoint {
                        broker,
                        listener: listener.clone(),
                    })
            }),
        )
    }

    pub fn config(&self) -> &NetworkClientConfig {
        &self.config
    }

    /// Sends `request` to broker `broker_id` at the highest version both sides support and returns the
    /// response, or why there is none within the client's request timeout.
    pub async fn send<R: Request>(
        &self,
        broker_id: i32,
        request: R,
    ) -> Result<R::Response, NetworkError> {
        self.send_with(broker_id, request, SendOptions::default())
            .await
            .map(|(_, response)| response)
    }

    /// [`Self::send`] with `options`; returns the version used with the response.
    pub async fn send_with<R: Request>(
        &self,
        broker_id: i32,
        request: R,
        options: SendOptions,
    ) -> Result<(i16, R::Response), NetworkError> {
        let deadline = Instant::now() + options.timeout.unwrap_or(self.config.request_timeout);
        let connection = self.connection(broker_id, deadline).await?;
        let version = connection.version_for::<R>(options.max_version)?;
        let response = connection.send(&request, version, deadline).await?;
        Ok((version, response))
    }

    /// [`Self::send_with`] for a request whose fields depend on the version (Fetch: `replica_id` below
    /// v15, `replica_state` from it): `build` makes it once the version both sides support is known.
    pub async fn send_built<R: Request>(
        &self,
        broker_id: i32,
        build: impl FnOnce(i16) -> R,
        options: SendOptions,
    ) -> Result<(i16, R::Response), NetworkError> {
        let deadline = Instant::now() + options.timeout.unwrap_or(self.config.request_timeout);
        let connection = self.connection(broker_id, deadline).await?;
        let version = connection.version_for::<R>(options.max_version)?;
        let response = connection.send(&build(version), version, deadline).await?;
        Ok((version, response))
    }

    /// Closes the connection to `broker_id`, if any (requests in flight on it fail).
    pub fn disconnect(&self, broker_id: i32) {
        let node = self.node(broker_id);
        if let Ok(mut node) = node.try_lock()
            && let Some(connection) = node.connection.take()
        {
            connection.close();
        }
    }

    /// Fails every request in flight and every later one with [`NetworkError::Closed`].
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let nodes: Vec<_> = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for node in nodes {
            if let Ok(mut node) = node.try_lock()
                && let Some(connection) = node.connection.take()
            {
                connection.close();
            }
        }
    }

    fn node(&self, broker_id: i32) -> Arc<tokio::sync::Mutex<Node>> {
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(broker_id)
            .or_default()
            .clone()
    }

    /// A live connection to `broker_id` at its current address: the existing one, or a new one once the
    /// backoff of the last failure has passed (waiting for it within `deadline`).
    async fn connection(
        &self,
        broker_id: i32,
        deadline: Instant,
    ) -> Result<Arc<BrokerConnection>, NetworkError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(NetworkError::Closed);
        }
        let addr = (self.addresses)(broker_id)?;
        let node = self.node(broker_id);
        let timed_out = || NetworkError::Timeout(addr.clone());
        let mut node = tokio::time::timeout_at(deadline, node.lock())
            .await
            .map_err(|_| timed_out())?;
        if let Some(connection) = &node.connection {
            if connection.is_alive() && connection.addr() == addr {
                return Ok(connection.clone());
            }
            connection.close();
            node.connection = None;
        }
        if let Some(retry_at) = node.retry_at {
            if retry_at > deadline {
                return Err(timed_out());
            }
            tokio::time::sleep_until(retry_at).await;
        }
        let mut config = self.config.clone();
        config.connect_timeout = config
            .connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        match BrokerConnection::connect(&addr, &config).await {
            // Closed while connecting: the new connection is not kept.
            Ok(_) if self.closed.load(std::sync::atomic::Ordering::Acquire) => {
                Err(NetworkError::Closed)
            }
            Ok(connection) => {
                tracing::debug!(broker_id, %addr, "connected to broker");
                let connection = Arc::new(connection);
                node.connection = Some(connection.clone());
                node.failures = 0;
                node.retry_at = None;
                Ok(connection)
            }
            Err(e) => {
                node.failures = node.failures.saturating_add(1);
                let backoff = self.backoff(node.failures);
                node.retry_at = Some(Instant::now() + backoff);
                tracing::debug!(broker_id, %addr, error = %e, ?backoff, "cannot connect to broker");
                Err(e)
            }
        }
    }

    /// The wait after `failures` failed attempts in a row: doubling from `reconnect_backoff` up to
    /// `reconnect_backoff_max`, with up to 20% taken off at random so brokers do not retry in lockstep.
    fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .config
            .reconnect_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.config.reconnect_backoff_max);
        let jitter = uuid::Uuid::new_v4().as_u128() as u64 % 1000; // per mille
        base.saturating_sub(base.mul_f64(jitter as f64 / 5000.0))
    }
}
