//! [`BrokerConnection`]: one TCP connection to another broker, with its negotiated versions and the
//! requests in flight on it.
//!
//! Two tasks own the socket: the writer takes whole frames from a bounded channel (so a caller that gives
//! up mid-request never leaves half a frame on the wire), the reader matches each response frame to its
//! waiter by correlation id. Whatever ends either task (an I/O error, EOF, a bad frame, a timed-out request)
//! fails every request still in flight with [`NetworkError::Disconnected`] and marks the connection dead;
//! the [`super::NetworkClient`] then makes a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::{NetworkClientConfig, NetworkError};

/// ApiVersions, the one request sent before versions are known.
const API_VERSIONS_KEY: i16 = 18;
/// The ApiVersions version this client asks with first (v3 carries the client's software name).
const API_VERSIONS_VERSION: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;

type Waiter = oneshot::Sender<Result<Bytes, NetworkError>>;

/// The requests in flight, by correlation id; `dead` set under the same lock, so none is added after the
/// connection failed and left waiting forever.
#[derive(Default)]
struct InFlight {
    waiters: HashMap<i32, Waiter>,
    dead: bool,
}

/// One connection to a broker. Cheap to share (`Arc`); dropping the last handle stops its tasks.
pub struct BrokerConnection {
    addr: String,
    client_id: StrBytes,
    in_flight: Arc<Mutex<InFlight>>,
    /// Slots for requests in flight; a request holds one until answered or failed.
    slots: Semaphore,
    /// Whole frames for the writer task; bounded by `max_in_flight` (each holder of a slot sends one).
    frames: mpsc::Sender<Bytes>,
    next_correlation_id: AtomicI32,
    /// The peer's version range per api key, from ApiVersions.
    versions: HashMap<i16, VersionRange>,
    closed: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("addr", &self.addr)
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

impl Drop for BrokerConnection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        fail_all(&self.in_flight, &self.closed, &self.addr);
    }
}

/// Marks the connection dead and fails every waiter.
fn fail_all(in_flight: &Mutex<InFlight>, closed: &AtomicBool, addr: &str) {
    closed.store(true, Ordering::Release);
    let waiters = {
        let mut in_flight = in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.dead = true;
        std::mem::take(&mut in_flight.waiters)
    };
    for (_, waiter) in waiters {
        let _ = waiter.send(Err(NetworkError::Disconnected(addr.to_string())));
    }
}

impl BrokerConnection {
    /// Connects to `addr` (`host:port`) and negotiates versions, all within `config.connect_timeout`.
    pub async fn connect(
        addr: &str,
        config: &NetworkClientConfig,
    ) -> Result<BrokerConnection, NetworkError> {
        let connect_error = |reason: String| NetworkError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            stream
                .set_nodelay(true)
                .map_err(|e| connect_error(e.to_string()))?;
            let mut connection = BrokerConnection::start(addr, stream, config);
            connection.versions = connection.negotiate(config.connect_timeout).await?;
            Ok(connection)
        };
        match tokio::time::timeout(config.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(connect_error(format!(
                "no connection within {:?}",
                config.connect_timeout
            ))),
        }
    }

    fn start(addr: &str, stream: TcpStream, config: &NetworkClientConfig) -> BrokerConnection {
        assert!(
            config.max_in_flight > 0,
            "invariant: a connection has slots"
        );
        let (read, write) = stream.into_split();
        let in_flight: Arc<Mutex<InFlight>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (frames, queued) = mpsc::channel(config.max_in_flight);
        let writer = tokio::spawn(write_frames(
            write,
            queued,
            in_flight.clone(),
            closed.clone(),
            addr.to_string(),
        ));
        let reader = tokio::spawn(read_frames(
            read,
            config.max_response_bytes,
            in_flight.clone(),
            closed.clone(),
            addr.to_string(),
        ));
        BrokerConnection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            in_flight,
            slots: Semaphore::new(config.max_in_flight),
            frames,
            next_correlation_id: AtomicI32::new(0),
            versions: HashMap::new(),
            closed,
            tasks: vec![writer, reader],
        }
    }

    /// Asks the peer for its versions: ApiVersions v3 first; a peer that does not know v3 answers with a
    /// v0 body, error UNSUPPORTED_VERSION and its own range of ApiVersions (KIP-511), asked again at that.
    async fn negotiate(&self, limit: Duration) -> Result<HashMap<i16, VersionRange>, NetworkError> {
        let deadline = Instant::now() + limit;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("brook"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_VERSION;
        for _ in 0..2 {
            let frame = self
                .round_trip(API_VERSIONS_KEY, version, &request, deadline)
                .await?;
            // Response header v0 always, whatever the version.
            let response = decode_response::<ApiVersionsResponse>(frame.clone(), version, 0)
                .or_else(|_| decode_response::<ApiVersionsResponse>(frame, 0, 0))
                .map_err(|reason| self.bad_response(reason))?;
            if response.error_code == UNSUPPORTED_VERSION {
                let theirs = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == API_VERSIONS_KEY)
                    .map(|k| k.max_version.min(API_VERSIONS_VERSION))
                    .unwrap_or(0);
                if theirs < version {
                    version = theirs;
                    continue;
                }
            }
            if response.error_code != 0 {
                return Err(self.bad_response(format!(
                    "ApiVersions answered error {}",
                    response.error_code
                )));
            }
            return Ok(response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect());
        }
        Err(NetworkError::UnsupportedVersion {
            addr: self.addr.clone(),
            api_key: API_VERSIONS_KEY,
        })
    }

    /// `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// False once the connection failed or closed; a dead connection answers every request
    /// [`NetworkError::Disconnected`].
    pub fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// The peer's range for `api_key`, as its ApiVersions said.
    pub fn peer_versions(&self, api_key: i16) -> Option<VersionRange> {
        self.versions.get(&api_key).copied()
    }

    /// The highest version of `R` both sides support, at most `max_version`.
    pub fn version_for<R: Request>(&self, max_version: Option<i16>) -> Result<i16, NetworkError> {
        let ours = <R as Message>::VERSIONS;
        let unsupported = || NetworkError::UnsupportedVersion {
            addr: self.addr.clone(),
            api_key: R::KEY,
        };
        let theirs = self.peer_versions(R::KEY).ok_or_else(unsupported)?;
        let max = ours
            .max
            .min(theirs.max)
            .min(max_version.unwrap_or(i16::MAX));
        let min = ours.min.max(theirs.min);
        if max < min {
            return Err(unsupported());
        }
        Ok(max)
    }

    /// Sends `request` at `version` and decodes its response, or fails by `deadline`.
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        deadline: Instant,
    ) -> Result<R::Response, NetworkError> {
        let frame = self.round_trip(R::KEY, version, request, deadline).await?;
        decode_response::<R::Response>(
            frame,
            version,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .map_err(|reason| {
            // The stream may be fine, but a peer that sends what cannot be read is not trusted further.
            fail_all(&self.in_flight, &self.closed, &self.addr);
            self.bad_response(reason)
        })
    }

    /// One request frame out, its response frame (header included) back.
    async fn round_trip<M: Encodable + HeaderVersion>(
        &self,
        api_key: i16,
        version: i16,
        request: &M,
        deadline: Instant,
    ) -> Result<Bytes, NetworkError> {
        let timed_out = || NetworkError::Timeout(self.addr.clone());
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| NetworkError::Disconnected(self.addr.clone()))?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let frame = self.encode(api_key, version, correlation_id, request)?;
        let (waiter, answer) = oneshot::channel();
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if in_flight.dead {
                return Err(NetworkError::Disconnected(self.addr.clone()));
            }
            in_flight.waiters.insert(correlation_id, waiter);
        }
        // Never full: the queue holds as many frames as there are slots, and this request holds one.
        if self.frames.try_send(frame).is_err() {
            self.forget(correlation_id);
            return Err(NetworkError::Disconnected(self.addr.clone()));
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetworkError::Disconnected(self.addr.clone())),
            Err(_) => {
                // Kafka's NetworkClient closes a connection on which a request timed out: the peer is
                // stuck or gone, and later requests are better served by a new connection.
                tracing::debug!(addr = %self.addr, api_key, correlation_id, "request timed out; closing the connection");
                self.forget(correlation_id);
                fail_all(&self.in_flight, &self.closed, &self.addr);
                Err(timed_out())
            }
        }
    }

    fn forget(&self, correlation_id: i32) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiters
            .remove(&correlation_id);
    }

    /// The size-prefixed frame of one request.
    fn encode<M: Encodable + HeaderVersion>(
        &self,
        api_key: i16,
        version: i16,
        correlation_id: i32,
        request: &M,
    ) -> Result<Bytes, NetworkError> {
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        header
            .encode(&mut frame, M::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| NetworkError::Encode(e.to_string()))?;
        let size = i32::try_from(frame.len() - 4)
            .map_err(|_| NetworkError::Encode("request over 2 GiB".into()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        Ok(frame.freeze())
    }

    fn bad_response(&self, reason: String) -> NetworkError {
        NetworkError::BadResponse {
            addr: self.addr.clone(),
            reason,
        }
    }

    /// Fails every request in flight and stops both tasks.
    pub fn close(&self) {
        fail_all(&self.in_flight, &self.closed, &self.addr);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Decodes a response frame: its header (checked to be all of it up to the body) and the body.
fn decode_response<M: Decodable>(
    mut frame: Bytes,
    version: i16,
    header_version: i16,
) -> Result<M, String> {
    ResponseHeader::decode(&mut frame, header_version).map_err(|e| e.to_string())?;
    M::decode(&mut frame, version).map_err(|e| e.to_string())
}

async fn write_frames(
    mut socket: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Bytes>,
    in_flight: Arc<Mutex<InFlight>>,
    closed: Arc<AtomicBool>,
    addr: String,
) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = socket.write_all(&frame).await {
            tracing::debug!(%addr, error = %e, "inter-broker connection failed on write");
            break;
        }
    }
    fail_all(&in_flight, &closed, &addr);
}

async fn read_frames(
    mut socket: OwnedReadHalf,
    max_frame: usize,
    in_flight: Arc<Mutex<InFlight>>,
    closed: Arc<AtomicBool>,
    addr: String,
) {
    let reason = loop {
        let mut size = [0u8; 4];
        if let Err(e) = socket.read_exact(&mut size).await {
            break format!("read: {e}");
        }
        let size = i32::from_be_bytes(size);
        // A response starts with its 4-byte correlation id.
        let Ok(size) = usize::try_from(size) else {
            break format!("negative frame size {size}");
        };
        if !(4..=max_frame).contains(&size) {
            break format!("frame of {size} bytes outside 4..={max_frame}");
        }
        let mut frame = vec![0u8; size];
        if let Err(e) = socket.read_exact(&mut frame).await {
            break format!("read: {e}");
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiter = in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiters
            .remove(&correlation_id);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(Ok(Bytes::from(frame)));
            }
            // Requests are forgotten only when the connection fails, so this is a confused peer.
            None => break format!("response for unknown correlation id {correlation_id}"),
        }
    };
    tracing::debug!(%addr, %reason, "inter-broker connection closed");
    fail_all(&in_flight, &closed, &addr);
}
