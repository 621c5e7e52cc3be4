//! The accept loop: connection limits, one task per connection, graceful shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info_span, warn};

use super::connection::{self, ConnectionSettings, ShutdownSignal};
use super::{RequestHandler, ServerLimits, Session};
use crate::api::context::SecurityProtocol;

/// Rejected connections and accept errors are logged at most once per this interval, with a count.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after a failed accept (typically out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Extra time given to connections after the grace deadline (to close and linger) before they are aborted.
const CLOSE_MARGIN: Duration = Duration::from_secs(2);

/// A bound listening socket and its accept task.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<Option<Instant>>,
    accept_task: Option<JoinHandle<()>>,
}

/// Which listener of the broker this is: every session it opens carries its name and protocol.
#[derive(Debug, Clone)]
pub struct ListenerIdentity {
    /// As in `listeners` (`PLAINTEXT`, `INTERNAL`, ...).
    pub name: Arc<str>,
    pub security_protocol: SecurityProtocol,
}

impl Default for ListenerIdentity {
    /// The single listener a broker had before named listeners: `PLAINTEXT`.
    fn default() -> Self {
        ListenerIdentity {
            name: Arc::from(SecurityProtocol::Plaintext.name()),
            security_protocol: SecurityProtocol::Plaintext,
        }
    }
}

/// State shared by the accept loop, its connections and the [`Listener`] handle.
struct Shared {
    identity: ListenerIdentity,
    limits: ServerLimits,
    handler: Arc<dyn RequestHandler>,
    open: AtomicUsize,
    /// Open connections per client address; entries are removed when they reach zero.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    counts: Arc<ConnectionCounts>,
}

/// Connections since the listener started, for the metrics (open = accepted - closed).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    /// Admitted under the connection limits.
    pub accepted: AtomicU64,
    /// Accepted, then closed (for any reason).
    pub closed: AtomicU64,
    /// Closed at once because `max.connections.per.ip` was reached.
    pub rejected: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limits", &self.limits)
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Counts a new connection in, or returns None when a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        // The accept loop is the only caller, so the check and the increment cannot race other admissions.
        // The loop does not accept at max.connections, so the first check only guards that invariant.
        let mut per_ip = self
            .per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.open.load(Ordering::Acquire) >= self.limits.max_connections {
            return None;
        }
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.limits.max_connections_per_ip {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        self.counts.accepted.fetch_add(1, Ordering::AcqRel);
        Some(ConnectionGuard {
            shared: self.clone(),
            ip,
        })
    }
}

/// Counts one open connection; dropping it (when the connection task ends) counts it out.
struct ConnectionGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut per_ip = self
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        self.shared.counts.closed.fetch_add(1, Ordering::AcqRel);
    }
}

/// Logs a repeated event at most once per [`LOG_INTERVAL`], with how many happened meanwhile.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last: None,
            suppressed: 0,
        }
    }

    /// Returns Some(count of events since the last log) when this event should be logged.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        self.suppressed += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Listener {
    /// Binds (port 0 = ephemeral) and returns at once; accepting starts in a spawned task.
    pub async fn start(
        addr: SocketAddr,
        limits: ServerLimits,
        handler: Arc<dyn RequestHandler>,
    ) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(addr).await?;
        Listener::serve(
            socket,
            ListenerIdentity::default(),
            limits,
            handler,
            Arc::default(),
        )
    }

    /// Starts accepting on a socket the caller bound already (to learn the port before building the
    /// handler). Must be called within a tokio runtime.
    pub fn from_std(
        socket: std::net::TcpListener,
        limits: ServerLimits,
        handler: Arc<dyn RequestHandler>,
    ) -> std::io::Result<Listener> {
        Listener::from_std_named(
            socket,
            ListenerIdentity::default(),
            limits,
            handler,
            Arc::default(),
        )
    }

    /// [`Listener::from_std`] for one of a broker's named listeners. `counts` may be shared by all of
    /// them, so the broker's connection metrics add up every listener. The limits apply per listener.
    pub fn from_std_named(
        socket: std::net::TcpListener,
        identity: ListenerIdentity,
        limits: ServerLimits,
        handler: Arc<dyn RequestHandler>,
        counts: Arc<ConnectionCounts>,
    ) -> std::io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let socket = TcpListener::from_std(socket)?;
        Listener::serve(socket, identity, limits, handler, counts)
    }

    fn serve(
        socket: TcpListener,
        identity: ListenerIdentity,
        limits: ServerLimits,
        handler: Arc<dyn RequestHandler>,
        counts: Arc<ConnectionCounts>,
    ) -> std::io::Result<Listener> {
        let local_addr = socket.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(None);
        let span = info_span!("listener", name = %identity.name, addr = %local_addr);
        let shared = Arc::new(Shared {
            identity,
            limits,
            handler,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            counts,
        });
        let accept_task =
            tokio::spawn(accept_loop(socket, shared.clone(), shutdown_rx).instrument(span));
        Ok(Listener {
            local_addr,
            shared,
            shutdown,
            accept_task: Some(accept_task),
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections currently open (a gauge).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Connections accepted, closed and rejected so far (shared: it keeps counting).
    pub fn connection_counts(&self) -> Arc<ConnectionCounts> {
        self.shared.counts.clone()
    }

    /// Graceful stop: stop accepting, let every connection stop reading new requests, finish and write the
    /// responses of requests already read (bounded by `grace`; after it, drop them), close. Returns when done.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.send_replace(Some(Instant::now() + grace));
        if let Some(task) = self.accept_task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            error!("accept loop panicked");
        }
    }
}

impl Drop for Listener {
    /// Dropped without `shutdown`: stop at once (aborting the accept task aborts every connection task).
    fn drop(&mut self) {
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(socket: TcpListener, shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let settings = ConnectionSettings::from(&shared.limits);
    // Connection tasks are owned here, so shutdown can wait for them and dropping the set aborts them.
    let mut connections = JoinSet::new();
    let mut next_id: u64 = 1;
    let mut reached_capacity = Throttled::new();
    let mut was_at_capacity = false;
    let mut rejected_per_ip = Throttled::new();
    let mut accept_errors = Throttled::new();
    loop {
        // At max.connections, stop accepting (as Kafka does): new connections wait in the kernel's backlog
        // until a connection task ends and frees a slot (the join branch below wakes the loop).
        let at_capacity = shared.open.load(Ordering::Acquire) >= shared.limits.max_connections;
        if at_capacity
            && !was_at_capacity
            && let Some(count) = reached_capacity.hit()
        {
            warn!(
                max_connections = shared.limits.max_connections,
                times = count,
                "max.connections reached; new connections wait until one closes"
            );
        }
        was_at_capacity = at_capacity;
        tokio::select! {
            biased;
            _ = connection::shutdown_started(&mut shutdown) => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    error!("connection task panicked");
                }
            }
            accepted = socket.accept(), if !at_capacity => match accepted {
                Ok((stream, peer)) => {
                    let Some(guard) = shared.admit(peer.ip()) else {
                        shared.counts.rejected.fetch_add(1, Ordering::Relaxed);
                        if let Some(count) = rejected_per_ip.hit() {
                            warn!(
                                %peer,
                                rejected = count,
                                max_connections_per_ip = shared.limits.max_connections_per_ip,
                                "max.connections.per.ip reached; closing new connections"
                            );
                        }
                        drop(stream);
                        continue;
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(error = %e, "set_nodelay failed");
                    }
                    // The address the client reached; unknown only if the socket already failed.
                    let local = stream
                        .local_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                    let identity = &shared.identity;
                    let session = Session::new(next_id, identity.name.clone(), identity.security_protocol, peer, local);
                    next_id += 1;
                    let span = info_span!("connection", %peer, id = session.id, client_id = tracing::field::Empty);
                    let handler = shared.handler.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(
                        async move {
                            let _counted = guard;
                            debug!("connection accepted");
                            connection::serve(stream, session, handler, settings, shutdown).await;
                            debug!("connection closed");
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    if let Some(count) = accept_errors.hit() {
                        warn!(error = %e, errors = count, "accept failed");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    // Stop accepting: the port is released now, while connections finish.
    drop(socket);
    let grace_deadline = (*shutdown.borrow()).unwrap_or_else(Instant::now);
    let deadline = grace_deadline + CLOSE_MARGIN;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, connections.join_next()).await {}
    if !connections.is_empty() {
        debug!(
            remaining = connections.len(),
            "aborting connections after shutdown grace"
        );
        connections.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServerLimits;
    use super::super::testkit::{self, Op, Script};
    use std::time::Duration;

    /// At max.connections a new connection waits (it is not accepted, so nothing answers it) and is served
    /// as soon as another one closes, as in Kafka.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_connections_makes_new_connections_wait_for_a_free_slot() {
        let script = Script::new();
        let limits = ServerLimits {
            max_connections: 2,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut first = testkit::connect(&listener).await;
        let mut second = testkit::connect(&listener).await;
        for (tag, client) in [(1, &mut first), (2, &mut second)] {
            testkit::send(client, Op::Now, tag, 0).await;
            assert_eq!(testkit::recv(client).await, Some(tag));
        }
        assert_eq!(listener.open_connections(), 2);

        // The kernel completes the handshake (backlog), but the broker does not take the connection.
        let mut third = testkit::connect(&listener).await;
        testkit::send(&mut third, Op::Now, 3, 0).await;
        assert_eq!(
            testkit::settled(|| script.calls()).await,
            2,
            "a connection over max.connections is not served"
        );
        assert_eq!(listener.open_connections(), 2);

        drop(first);
        assert_eq!(
            testkit::recv(&mut third).await,
            Some(3),
            "the waiting connection is served once a slot frees"
        );
        assert_eq!(listener.open_connections(), 2);
        testkit::send(&mut second, Op::Now, 4, 0).await;
        assert_eq!(testkit::recv(&mut second).await, Some(4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_std_serves_a_socket_bound_by_the_caller() {
        let script = Script::new();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("local_addr");
        let listener = super::Listener::from_std(socket, testkit::limits(), script.clone())
            .expect("start on the bound socket");
        assert_eq!(listener.local_addr(), addr);
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
    }

    /// Each named listener's sessions carry its name and protocol, and the listeners of one broker count
    /// their connections together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_carry_their_listeners_name() {
        use crate::api::context::SecurityProtocol;
        use std::sync::Arc;

        let script = Script::new();
        let counts: Arc<super::ConnectionCounts> = Arc::default();
        let mut listeners = Vec::new();
        for name in ["PLAINTEXT", "INTERNAL"] {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let identity = super::ListenerIdentity {
                name: Arc::from(name),
                security_protocol: SecurityProtocol::Plaintext,
            };
            let listener = super::Listener::from_std_named(
                socket,
                identity,
                testkit::limits(),
                script.clone(),
                counts.clone(),
            )
            .expect("start on the bound socket");
            listeners.push(listener);
        }
        for (tag, listener) in [(1, &listeners[1]), (2, &listeners[0]), (3, &listeners[1])] {
            let mut client = testkit::connect(listener).await;
            testkit::send(&mut client, Op::Now, tag, 0).await;
            assert_eq!(testkit::recv(&mut client).await, Some(tag));
        }
        assert_eq!(
            script.listeners_seen(),
            ["INTERNAL", "PLAINTEXT", "INTERNAL"],
            "each request's session names the listener its connection came through"
        );
        assert_eq!(
            counts.accepted.load(std::sync::atomic::Ordering::Acquire),
            3,
            "one count for both listeners"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_connections_per_ip_enforced() {
        let script = Script::new();
        let limits = ServerLimits {
            max_connections_per_ip: 1,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut first = testkit::connect(&listener).await;
        testkit::send(&mut first, Op::Now, 1, 0).await;
        assert_eq!(testkit::recv(&mut first).await, Some(1));
        let mut second = testkit::connect(&listener).await;
        assert!(testkit::closed(&mut second).await);
        testkit::send(&mut first, Op::Now, 2, 0).await;
        assert_eq!(testkit::recv(&mut first).await, Some(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graceful_shutdown_finishes_in_flight_later_replies() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let addr = listener.local_addr();
        let mut client = testkit::connect(&listener).await;
        let mut idle_client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        testkit::send(&mut client, Op::Later, 2, 300).await;
        assert!(testkit::eventually(|| script.calls() == 2).await);

        let stopping = tokio::spawn(listener.shutdown(Duration::from_secs(10)));
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        assert_eq!(
            testkit::recv(&mut client).await,
            Some(2),
            "the in-flight Later is answered"
        );
        assert_eq!(
            testkit::recv(&mut client).await,
            None,
            "then the connection closes"
        );
        assert!(testkit::closed(&mut idle_client).await);
        tokio::time::timeout(testkit::DEADLINE, stopping)
            .await
            .expect("shutdown returns once connections are done")
            .expect("shutdown task");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_drops_replies_still_pending_after_grace() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Later, 1, 60_000).await;
        assert!(testkit::eventually(|| script.calls() == 1).await);
        let started = tokio::time::Instant::now();
        listener.shutdown(Duration::from_millis(200)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shutdown took {:?}",
            started.elapsed()
        );
        assert_eq!(testkit::recv(&mut client).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_listener_closes_connections() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        drop(listener);
        assert!(testkit::closed(&mut client).await);
    }
}
