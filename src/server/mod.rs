//! The network edge: accepting connections, framing requests, and writing responses in request order.
//!
//! The listener and connections know nothing of the Kafka protocol beyond the 4-byte size prefix; they hand
//! each frame to a [`RequestHandler`] (the dispatcher) and write back whatever [`Reply`] it returns.

pub mod connection;
pub mod dispatch;
pub mod fetch_frame;
pub mod frame;
pub mod listener;
pub mod request_metrics;
pub mod scrape;
pub mod session;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub use frame::Frame;
pub use session::Session;

/// The edge's limits are configuration; re-exported where the edge has always named them.
pub use crate::config::ServerLimits;

/// What the dispatcher decided for one request frame.
pub enum Reply {
    /// A complete response frame, INCLUDING its 4-byte big-endian size prefix.
    Now(Frame),
    /// Computed later (long-poll fetch, acks=-1 produce). The connection spawns it as a task so it makes
    /// progress concurrently; None from the future = no response.
    Later(Pin<Box<dyn Future<Output = Option<Frame>> + Send>>),
    /// No response is due (produce with acks=0).
    None,
    /// Protocol violation: write the responses already due for earlier requests, log ONE warning with the
    /// reason, and close the connection.
    Close(String),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Now(b) => f.debug_tuple("Now").field(&b.len()).finish(),
            Reply::Later(_) => f.write_str("Later(..)"),
            Reply::None => f.write_str("None"),
            Reply::Close(reason) => f.debug_tuple("Close").field(reason).finish(),
        }
    }
}

/// The dispatcher, as seen from a connection.
pub trait RequestHandler: Send + Sync + 'static {
    /// Called on the connection's reader task, strictly in arrival order, with one frame (without its size
    /// prefix). Synchronous work (validation, appends) happens here, so requests on one connection take effect
    /// in order; waiting happens in the returned future. The handler may record what the request teaches
    /// about the client (client id, software) in the connection's session.
    fn handle(&self, frame: Bytes, session: &mut Session) -> Reply;

    /// The client id a request frame names, if any. The connection records the first one into its span, so
    /// every later log line of the connection says which client it serves.
    fn client_id<'a>(&self, _frame: &'a [u8]) -> Option<&'a str> {
        None
    }
}

/// A scripted [`RequestHandler`] and a raw-socket client for the server's unit tests.
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use bytes::{Buf, BufMut, BytesMut};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Size of the responses to [`Op::Big`] requests.
    pub const BIG_RESPONSE_BYTES: usize = 4 << 20;
    /// Every wait in these tests gives up after this long.
    pub const DEADLINE: Duration = Duration::from_secs(10);

    /// What the scripted handler does with a request. Frame body: op byte, u32 tag, u32 param.
    #[derive(Debug, Clone, Copy)]
    #[repr(u8)]
    pub enum Op {
        /// Reply::Now echoing the tag.
        Now = b'N',
        /// Reply::Later echoing the tag after `param` milliseconds.
        Later = b'L',
        /// Reply::None.
        NoReply = b'Z',
        /// Reply::Close.
        Close = b'C',
        /// The handler panics.
        Panic = b'P',
        /// A Later whose future panics.
        LaterPanic = b'Q',
        /// Reply::Now with a BIG_RESPONSE_BYTES response (shared buffer).
        Big = b'B',
        /// A Later that answers its tag once `param` rendezvous Laters have started, or tag + 1000 if
        /// they have not all started within DEADLINE (i.e. they were not running concurrently).
        Rendezvous = b'R',
        /// A Later that answers once the test calls [`Script::open_gate`]: with a BIG_RESPONSE_BYTES
        /// response when `param` is 1, else echoing the tag.
        Gated = b'G',
        /// Reply::Now echoing the tag followed by [`FILE_RESPONSE_BYTES`] of [`file_byte`]s sent from a file;
        /// with `param` 1 the file chunk claims more bytes than the file holds.
        File = b'F',
    }

    /// Bytes of the file part of an [`Op::File`] response.
    pub const FILE_RESPONSE_BYTES: usize = 3 << 20;

    /// The byte at `i` of the file an [`Op::File`] response is sent from.
    pub fn file_byte(i: usize) -> u8 {
        (i as u8).wrapping_mul(7).wrapping_add((i >> 9) as u8)
    }

    /// The scripted handler; counts calls.
    pub struct Script {
        pub calls: AtomicUsize,
        /// The listener name of the session of every request, in arrival order.
        listeners: std::sync::Mutex<Vec<String>>,
        big: Bytes,
        arrived: Arc<(AtomicUsize, tokio::sync::Notify)>,
        gate: tokio::sync::watch::Sender<bool>,
        file: Arc<std::fs::File>,
    }

    impl Script {
        pub fn new() -> Arc<Script> {
            let mut big = BytesMut::with_capacity(BIG_RESPONSE_BYTES);
            big.put_u32((BIG_RESPONSE_BYTES - 4) as u32);
            big.put_u32(u32::MAX);
            big.resize(BIG_RESPONSE_BYTES, 0xab);
            let mut file = tempfile::tempfile().expect("temp file");
            let content: Vec<u8> = (0..FILE_RESPONSE_BYTES).map(file_byte).collect();
            std::io::Write::write_all(&mut file, &content).expect("write the temp file");
            Arc::new(Script {
                calls: AtomicUsize::new(0),
                listeners: Default::default(),
                big: big.freeze(),
                arrived: Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new())),
                gate: tokio::sync::watch::Sender::new(false),
                file: Arc::new(file),
            })
        }

        pub fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        /// The listener name of each request's session, in arrival order.
        pub fn listeners_seen(&self) -> Vec<String> {
            self.listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        }

        /// Lets every [`Op::Gated`] reply, pending or future, answer.
        pub fn open_gate(&self) {
            self.gate.send_replace(true);
        }
    }

    /// A response frame (with size prefix) carrying `tag`.
    fn response(tag: u32) -> Bytes {
        let mut out = BytesMut::with_capacity(8);
        out.put_u32(4);
        out.put_u32(tag);
        out.freeze()
    }

    impl RequestHandler for Script {
        fn handle(&self, mut frame: Bytes, session: &mut Session) -> Reply {
            self.listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session.listener.to_string());
            self.calls.fetch_add(1, Ordering::SeqCst);
            if frame.first() == Some(&b'S') {
                // Any length: answer with the frame's length as the tag.
                return Reply::Now(response(frame.len() as u32).into());
            }
            if frame.len() != 9 {
                return Reply::Close(format!("bad test frame of {} bytes", frame.len()));
            }
            let op = frame.get_u8();
            let tag = frame.get_u32();
            let param = frame.get_u32();
            match op {
                b'N' => Reply::Now(response(tag).into()),
                b'L' => Reply::Later(Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(param.into())).await;
                    Some(response(tag).into())
                })),
                b'Z' => Reply::None,
                b'C' => Reply::Close("scripted close".into()),
                b'P' => panic!("scripted handler panic"),
                b'Q' => Reply::Later(Box::pin(async move {
                    if param < u32::MAX {
                        panic!("scripted deferred panic");
                    }
                    None
                })),
                b'B' => Reply::Now(self.big.clone().into()),
                b'F' => {
                    let len = FILE_RESPONSE_BYTES + if param == 1 { 1 } else { 0 };
                    let mut head = BytesMut::with_capacity(8);
                    head.put_u32((4 + len) as u32);
                    head.put_u32(tag);
                    let slice =
                        crate::log::read_buffer::FileSlice::new(self.file.clone(), 0, len, 0);
                    Reply::Now(Frame::from_parts(vec![
                        frame::Chunk::Bytes(head.freeze()),
                        frame::Chunk::File(slice),
                    ]))
                }
                b'G' => {
                    let mut gate = self.gate.subscribe();
                    let big = self.big.clone();
                    Reply::Later(Box::pin(async move {
                        // An Err means the script is gone: answer anyway.
                        let _ = gate.wait_for(|open| *open).await;
                        Some(if param == 1 { big } else { response(tag) }.into())
                    }))
                }
                b'R' => {
                    let arrived = self.arrived.clone();
                    Reply::Later(Box::pin(async move {
                        let (count, notify) = &*arrived;
                        count.fetch_add(1, Ordering::SeqCst);
                        notify.notify_waiters();
                        let all_started = tokio::time::timeout(DEADLINE, async {
                            while count.load(Ordering::SeqCst) < param as usize {
                                let notified = notify.notified();
                                if count.load(Ordering::SeqCst) >= param as usize {
                                    break;
                                }
                                notified.await;
                            }
                        })
                        .await
                        .is_ok();
                        Some(response(if all_started { tag } else { tag + 1000 }).into())
                    }))
                }
                _ => Reply::Close(format!("unknown op {op}")),
            }
        }
    }

    /// Limits for tests: Kafka's defaults except where a test says otherwise.
    pub fn limits() -> ServerLimits {
        ServerLimits::default()
    }

    /// Starts a listener on an ephemeral loopback port.
    pub async fn start(limits: ServerLimits, script: &Arc<Script>) -> listener::Listener {
        let handler: Arc<dyn RequestHandler> = script.clone();
        listener::Listener::start(
            "127.0.0.1:0".parse().expect("literal address"),
            limits,
            handler,
        )
        .await
        .expect("bind an ephemeral loopback port")
    }

    pub fn frame(op: Op, tag: u32, param: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.put_u32(9);
        out.put_u8(op as u8);
        out.put_u32(tag);
        out.put_u32(param);
        out
    }

    pub async fn send(stream: &mut TcpStream, op: Op, tag: u32, param: u32) {
        stream
            .write_all(&frame(op, tag, param))
            .await
            .expect("send a request");
    }

    /// Reads one response and returns its tag; None when the server closed the connection.
    pub async fn recv(stream: &mut TcpStream) -> Option<u32> {
        let read = async {
            let size = stream.read_u32().await.ok()? as usize;
            let tag = stream.read_u32().await.ok()?;
            let mut rest = vec![0u8; size.checked_sub(4)?];
            stream.read_exact(&mut rest).await.ok()?;
            Some(tag)
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("a response or a close before the deadline")
    }

    /// True once the server has closed the connection (EOF or reset), within the deadline.
    pub async fn closed(stream: &mut TcpStream) -> bool {
        let mut scratch = [0u8; 4096];
        let wait = async {
            loop {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.unwrap_or(false)
    }

    /// Polls `condition` every few milliseconds until it holds; false if the deadline passes first.
    pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while tokio::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        condition()
    }

    /// Polls `value` until it has not changed for a while (the system has settled) and returns it; gives
    /// up waiting at the deadline and returns the latest value.
    pub async fn settled(mut value: impl FnMut() -> usize) -> usize {
        const QUIET: Duration = Duration::from_millis(300);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut last = value();
        let mut since = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = value();
            if now != last {
                last = now;
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= QUIET {
                break;
            }
        }
        last
    }

    /// A client whose receive buffer is small, so responses it does not read back up into the broker.
    pub async fn connect_small_window(listener: &listener::Listener) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("small receive buffer");
        socket
            .connect(listener.local_addr())
            .await
            .expect("connect to the test listener")
    }

    pub async fn connect(listener: &listener::Listener) -> TcpStream {
        TcpStream::connect(listener.local_addr())
            .await
            .expect("connect to the test listener")
    }
}
