//! Requests from this broker to other brokers over the Kafka protocol (Kafka's `NetworkClient` as the
//! `InterBrokerSendThread`s use it): transaction markers to partition leaders, and the replica fetcher's
//! Fetch and ListOffsets to the leaders of the partitions this broker follows.
//!
//! [`NetworkClient`] keeps one [`BrokerConnection`] per destination broker, to the endpoint of the
//! inter-broker listener that broker registered in the metadata image. A connection negotiates versions with
//! ApiVersions once, then pipelines requests matched to their responses by correlation id; every request has
//! a deadline, the number in flight is bounded, and every frame read is size-limited. A failed connection is
//! dropped and reconnected on the next request, after a backoff that doubles per failure.

mod client;
mod connection;

use std::time::Duration;

pub use client::{BrokerAddressBook, NetworkClient, SendOptions};
pub use connection::BrokerConnection;

/// Why a request to another broker got no response.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    /// The metadata image has no such broker (never registered, or unregistered).
    #[error("broker {0} is not in the metadata")]
    UnknownBroker(i32),
    /// The broker registered no endpoint for the inter-broker listener.
    #[error("broker {broker} has no endpoint for listener {listener}")]
    NoEndpoint { broker: i32, listener: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection failed or closed with the request in flight: it may or may not have taken effect.
    #[error("connection to {0} lost")]
    Disconnected(String),
    /// No response before the request's deadline (the connection is closed, as Kafka does).
    #[error("request to {0} timed out")]
    Timeout(String),
    /// No version of the API is supported by both sides.
    #[error("broker {addr} supports no common version of api {api_key}")]
    UnsupportedVersion { addr: String, api_key: i16 },
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The peer sent something this side cannot read; the connection is closed.
    #[error("bad response from {addr}: {reason}")]
    BadResponse { addr: String, reason: String },
    /// The client is shutting down.
    #[error("the inter-broker client is closed")]
    Closed,
}

impl NetworkError {
    /// Whether sending again later may succeed (the caller decides whether the request is safe to repeat).
    pub fn is_retriable(&self) -> bool {
        !matches!(
            self,
            NetworkError::Encode(_)
                | NetworkError::Closed
                | NetworkError::UnsupportedVersion { .. }
        )
    }
}

/// Settings of a [`NetworkClient`], under the names of the Kafka client settings they mirror.
#[derive(Clone, Debug)]
pub struct NetworkClientConfig {
    /// `client.id` of every request (Kafka brokers send `broker-<id>-...`).
    pub client_id: String,
    /// `request.timeout.ms`: the default deadline of a request, connecting included.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: one connection attempt, ApiVersions included.
    pub connect_timeout: Duration,
    /// `reconnect.backoff.ms`: the wait after a first failed connection, doubled per further failure ...
    pub reconnect_backoff: Duration,
    /// ... up to `reconnect.backoff.max.ms`.
    pub reconnect_backoff_max: Duration,
    /// Requests in flight on one connection at most; more wait for a slot (within their deadline).
    pub max_in_flight: usize,
    /// The largest response frame accepted; a larger one closes the connection.
    pub max_response_bytes: usize,
}

impl NetworkClientConfig {
    /// Kafka's defaults for a broker's inter-broker clients, as broker `node_id`.
    pub fn for_broker(node_id: i32) -> NetworkClientConfig {
        NetworkClientConfig {
            client_id: format!("broker-{node_id}"),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            max_in_flight: 64,
            max_response_bytes: 100 << 20,
        }
    }
}

#[cfg(test)]
mod tests;
