//! The limits of the network edge (`socket.request.max.bytes`, `max.connections`, ...): configuration, so
//! the config layer owns them and the server reads them.

/// Limits of the network edge, under Kafka's property names.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// socket.request.max.bytes: larger frames close the connection before any allocation for the body.
    pub socket_request_max_bytes: usize,
    /// max.connections: at this many open connections the listener stops accepting (as Kafka does); new
    /// connections wait in the kernel's accept backlog until one closes.
    pub max_connections: usize,
    /// max.connections.per.ip: a new connection from an address that has this many is closed at once.
    pub max_connections_per_ip: usize,
    /// connections.max.idle.ms: a connection with no request and nothing in flight for this long is closed.
    pub connections_max_idle_ms: u64,
    /// queued.max.requests: per-connection cap on requests read but not yet answered (pipeline depth). When
    /// reached the connection stops reading, so TCP back-pressure reaches the client. Values below 1 act as 1.
    pub queued_max_requests: usize,
    /// brook's own limit (no Kafka equivalent): per-connection cap on the bytes of replies computed but not
    /// yet written. `queued_max_requests` bounds the count, but one Fetch reply can be tens of MiB, so a client
    /// that pipelines fetches and never reads would otherwise pin gigabytes. When reached the connection stops
    /// reading. A single larger reply still goes through (it takes the whole budget). Values below 1 act as 1;
    /// values above `u32::MAX` act as `u32::MAX`.
    pub queued_max_reply_bytes: usize,
}

impl Default for ServerLimits {
    /// Kafka's defaults (and 100 MiB for brook's `queued_max_reply_bytes`).
    fn default() -> Self {
        ServerLimits {
            socket_request_max_bytes: 104_857_600,
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            connections_max_idle_ms: 600_000,
            queued_max_requests: 500,
            queued_max_reply_bytes: 104_857_600,
        }
    }
}
