//! One client connection: size-prefixed frames in, responses out in request order.
//!
//! Two tasks per connection. The reader reads frames and calls [`RequestHandler::handle`] in arrival order,
//! so requests take effect in order; it queues each reply in a bounded FIFO. The writer takes replies from
//! the FIFO in order, awaiting a `Later` before anything queued behind it, and writes ready responses in
//! batches. When the FIFO is full the reader stops reading, so a client that never reads its responses is
//! held back by TCP instead of making the broker buffer without bound.
//!
//! The FIFO bounds replies by count; a byte budget (`queued_max_reply_bytes`, a semaphore of bytes) bounds
//! them by size, since one Fetch reply can be tens of MiB. A computed reply holds its share of the budget
//! until the writer has written it: the reader takes the share of a `Now` reply before reading on (so an
//! exhausted budget stops reading), and a `Later` task takes it once its future produced the bytes (so a
//! parked long poll holds nothing). Deadlock freedom: the writer never waits for budget. When it reaches a
//! `Later` it tells the task that it is the oldest reply, and a task so told stops waiting for budget (the
//! budget may be held by younger replies that cannot be written before it). So the reply being written may
//! be unaccounted: memory per connection stays under the budget plus one reply.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{Instrument, debug, error, warn};

use super::frame::Chunk;
use super::{Frame, Reply, RequestHandler, ServerLimits, Session};
use crate::log::read_buffer::FileSlice;

/// Shutdown signal shared by a listener and its connections: `None` while serving, `Some(deadline)` once a
/// graceful shutdown started (responses still due are written until the deadline, then dropped).
pub(crate) type ShutdownSignal = watch::Receiver<Option<Instant>>;

/// Most chunks (response frames, or parts of one: see [`Frame`]) written with one vectored write, and most
/// bytes gathered before writing.
const MAX_BATCH_RESPONSES: usize = 64;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// A file chunk on a connection that cannot take `sendfile` (not plain TCP) is read and written in pieces
/// of this size.
const FILE_COPY_PIECE_BYTES: usize = 256 * 1024;
/// When the socket is full, this much of a file chunk is read and written the ordinary way, which waits
/// until the socket takes bytes again; `sendfile` carries on with the rest.
const FILE_WAIT_PIECE_BYTES: usize = 8 * 1024;
/// Most bytes one `sendfile` call is asked for (Linux moves at most about 2 GiB per call anyway).
const MAX_SENDFILE_BYTES: usize = 1 << 30;

/// After closing on a violation or at shutdown, how long to keep reading (and discarding) what the client
/// still sends, so that closing with unread input does not reset the connection and destroy the responses
/// just written. Bounded in time and bytes.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 1 << 20;

/// The per-connection settings derived from [`ServerLimits`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionSettings {
    max_frame_bytes: usize,
    idle: Duration,
    queue_depth: usize,
    /// Bytes of computed, unwritten replies (semaphore permits; `acquire_many` counts in u32).
    reply_budget: u32,
}

impl From<&ServerLimits> for ConnectionSettings {
    fn from(limits: &ServerLimits) -> Self {
        ConnectionSettings {
            max_frame_bytes: limits.socket_request_max_bytes,
            idle: Duration::from_millis(limits.connections_max_idle_ms),
            // mpsc channels need a capacity of at least one.
            queue_depth: limits.queued_max_requests.max(1),
            reply_budget: limits
                .queued_max_reply_bytes
                .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize))
                as u32,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("negative request size {0}")]
    NegativeSize(i32),
    #[error("request size {size} exceeds socket.request.max.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("connection closed in the middle of a request")]
    Truncated,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Result of one read from the socket.
enum Step {
    /// A whole frame (without its size prefix).
    Frame(Bytes),
    /// Some bytes arrived; the frame is not complete yet.
    Progress,
    /// The client closed the connection between frames.
    Eof,
}

/// Bytes read ahead per socket read. Small requests are sliced out of this buffer (zero-copy, one read for
/// several pipelined requests); a frame larger than this gets its own buffer of exactly its checked size.
/// While the FIFO is full no read happens, so read-ahead never exceeds this per connection. The buffer is
/// allocated when the socket becomes readable and released when a read finds nothing more pending, so a
/// connection waiting between requests holds none.
const READ_AHEAD: usize = 16 * 1024;

/// Incremental frame decoder. Each [`FrameReader::step`] does at most one socket read and keeps its state in
/// `self`, so it is cancel-safe: the reader can race it against timers without losing bytes.
struct FrameReader {
    /// Bytes read but not yet returned as frames (at most one partial small frame plus what followed it).
    read_ahead: BytesMut,
    /// A large frame being read: its buffer, allocated with exactly the checked size.
    large: Option<(BytesMut, usize)>,
    max_frame_bytes: usize,
}

impl FrameReader {
    fn new(max_frame_bytes: usize) -> Self {
        FrameReader {
            read_ahead: BytesMut::new(),
            large: None,
            max_frame_bytes,
        }
    }

    async fn step<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Result<Step, FrameError> {
        if let Some((body, len)) = &mut self.large {
            let remaining = *len - body.len();
            // `take` keeps the read inside this frame; `read_buf` places bytes only when it completes.
            let n = (&mut *rd).take(remaining as u64).read_buf(body).await?;
            if n == 0 {
                return Err(FrameError::Truncated);
            }
            if body.len() < *len {
                return Ok(Step::Progress);
            }
            let (body, _) = self
                .large
                .take()
                .expect("invariant: large is Some in this branch");
            return Ok(Step::Frame(body.freeze()));
        }
        if let Some(step) = self.parse()? {
            return Ok(step);
        }
        let n = self.fill(rd).await?;
        if n == 0 {
            return if self.read_ahead.is_empty() {
                Ok(Step::Eof)
            } else {
                Err(FrameError::Truncated)
            };
        }
        Ok(self.parse()?.unwrap_or(Step::Progress))
    }

    /// One read into the read-ahead buffer; 0 at end of stream. Between requests the wait holds no buffer:
    /// it reads into a few bytes on the stack, then takes whatever else already arrived without waiting.
    async fn fill<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> io::Result<usize> {
        if self.read_ahead.is_empty() {
            if self.read_ahead.capacity() > 0 {
                // Keep the buffer while requests keep coming.
                self.reserve_read_ahead();
                if let Some(n) = try_read_buf(rd, &mut self.read_ahead) {
                    return n;
                }
                // Nothing pending: release the buffer (frames sliced from it keep their part alive).
                self.read_ahead = BytesMut::new();
            }
            let mut first = [0u8; 8];
            let n = rd.read(&mut first).await?;
            if n > 0 {
                self.read_ahead.reserve(READ_AHEAD);
                self.read_ahead.extend_from_slice(&first[..n]);
                // An error or end of stream here shows at the next read.
                let _ = try_read_buf(rd, &mut self.read_ahead);
            }
            return Ok(n);
        }
        self.reserve_read_ahead();
        // A partial frame: keep it and wait for the rest.
        rd.read_buf(&mut self.read_ahead).await
    }

    fn reserve_read_ahead(&mut self) {
        if self.read_ahead.capacity() - self.read_ahead.len() < READ_AHEAD / 4 {
            // Reuses the buffer when earlier frames are gone, else starts a new one.
            self.read_ahead.reserve(READ_AHEAD);
        }
    }

    /// Takes a complete frame from the read-ahead buffer, or moves a large frame to its own buffer.
    fn parse(&mut self) -> Result<Option<Step>, FrameError> {
        let Some(header) = self.read_ahead.first_chunk::<4>() else {
            return Ok(None);
        };
        let size = i32::from_be_bytes(*header);
        let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        let available = self.read_ahead.len() - 4;
        if size <= available {
            self.read_ahead.advance(4);
            return Ok(Some(Step::Frame(self.read_ahead.split_to(size).freeze())));
        }
        if size > READ_AHEAD {
            // The size is checked: allocate the whole body once and read the rest straight into it.
            self.read_ahead.advance(4);
            let mut body = BytesMut::with_capacity(size);
            body.extend_from_slice(&self.read_ahead);
            self.read_ahead.clear();
            self.large = Some((body, size));
            return Ok(Some(Step::Progress));
        }
        Ok(None)
    }
}

/// Reads what is available into `buf` without waiting: None when nothing is (the read would block), which
/// is a socket's `try_read` for any stream. `buf` must have spare capacity, or the read reports 0 bytes.
fn try_read_buf<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> Option<io::Result<usize>> {
    // `read_buf` is cancel-safe: a poll that returns Pending has read nothing.
    rd.read_buf(buf).now_or_never()
}

/// A queued reply, in request order.
enum Queued {
    /// Boxed to keep `Queued` small: the FIFO's storage is allocated in blocks of slots when the connection
    /// opens, so every idle connection pays for them.
    Ready(Box<Response>),
    Later(LaterReply),
}

/// A computed response frame with the share of the reply budget it holds until written.
struct Response {
    frame: Frame,
    /// None only when the reply was let through without budget (see [`LaterReply::reached_head`]).
    budget: Option<OwnedSemaphorePermit>,
}

/// The byte budget of one connection's computed, unwritten replies.
#[derive(Clone)]
struct ReplyBudget {
    permits: Arc<Semaphore>,
    total: u32,
}

impl ReplyBudget {
    fn new(total: u32) -> Self {
        ReplyBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits for `len` bytes of budget (the whole budget for a reply larger than it, so it still goes
    /// through). None once the connection has closed the budget.
    async fn reserve(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = u32::try_from(len).unwrap_or(u32::MAX).min(self.total);
        self.permits.clone().acquire_many_owned(wanted).await.ok()
    }

    /// Wakes every waiter with None: the connection is closing.
    fn close(&self) {
        self.permits.close();
    }
}

/// A spawned `Later` reply in the FIFO.
struct LaterReply {
    task: AbortOnDrop,
    /// Tells the task it is the oldest unwritten reply, so it must not wait for budget.
    at_head: Option<oneshot::Sender<()>>,
}

impl LaterReply {
    /// Spawns `reply`: the task holds no budget while it waits, and reserves the size of its response once
    /// it has one, unless it is (or becomes) the oldest reply.
    fn spawn(
        reply: impl Future<Output = Option<Frame>> + Send + 'static,
        budget: ReplyBudget,
    ) -> Self {
        let (at_head, mut head_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let frame = reply.await?;
            let budget = tokio::select! {
                biased;
                // Sent or dropped: either way nothing older is left to free budget for us.
                _ = &mut head_rx => None,
                permit = budget.reserve(frame.len()) => permit,
            };
            Some(Response { frame, budget })
        });
        LaterReply {
            task: AbortOnDrop(task),
            at_head: Some(at_head),
        }
    }

    /// Called by the writer when this is the oldest unwritten reply.
    fn reached_head(&mut self) {
        if let Some(at_head) = self.at_head.take() {
            let _ = at_head.send(());
        }
    }
}

/// A spawned `Later` reply; aborted if the connection drops it unanswered, so long polls of a closed
/// connection stop waiting.
struct AbortOnDrop(JoinHandle<Option<Response>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum ReaderStop {
    /// The client closed or reset the connection: drop what is due, as Kafka does.
    Disconnected,
    /// No request and nothing in flight for connections.max.idle.ms.
    Idle,
    /// Protocol violation or handler panic (already logged): write what is due, then close.
    Violation,
    /// Listener shutdown: write what is due (until the grace deadline), then close.
    Shutdown,
    /// The writer ended (write error or stall); nothing more can be answered.
    WriterGone,
}

/// Any byte stream a connection runs over: a TCP socket today, a TLS session over one next.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Serves one connection until it closes. Returns once both of its tasks are done.
pub(crate) async fn serve<S: Transport>(
    stream: S,
    session: Session,
    handler: Arc<dyn RequestHandler>,
    settings: ConnectionSettings,
    shutdown: ShutdownSignal,
) {
    // A plain TCP socket can take file chunks with sendfile(2); the write half keeps it open while the
    // writer runs.
    let socket = (&stream as &dyn std::any::Any)
        .downcast_ref::<tokio::net::TcpStream>()
        .map(AsRawFd::as_raw_fd);
    let (rd, wr) = tokio::io::split(stream);
    // Bounded FIFO: when it is full, `send` waits, the reader stops reading and TCP pushes back.
    let (tx, rx) = mpsc::channel::<Queued>(settings.queue_depth);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let budget = ReplyBudget::new(settings.reply_budget);
    let writer = tokio::spawn(
        write_responses(
            wr,
            socket,
            rx,
            in_flight.clone(),
            budget.clone(),
            settings.idle,
            shutdown.clone(),
        )
        .instrument(tracing::Span::current()),
    );
    let mut reader = ConnectionReader {
        rd,
        frames: FrameReader::new(settings.max_frame_bytes),
        session,
        handler,
        idle: settings.idle,
        idle_deadline: Instant::now() + settings.idle,
        client_id_recorded: false,
        tx,
        in_flight,
        budget,
        writer,
        writer_done: false,
        shutdown,
    };
    let stop = reader.run().await;
    reader.finish(stop).await;
}

/// The reader side of a connection: reads frames, has the handler answer them in order, queues the replies.
struct ConnectionReader<S> {
    rd: ReadHalf<S>,
    frames: FrameReader,
    session: Session,
    handler: Arc<dyn RequestHandler>,
    idle: Duration,
    idle_deadline: Instant,
    client_id_recorded: bool,
    tx: mpsc::Sender<Queued>,
    in_flight: Arc<AtomicUsize>,
    budget: ReplyBudget,
    writer: JoinHandle<()>,
    writer_done: bool,
    shutdown: ShutdownSignal,
}

impl<S: Transport> ConnectionReader<S> {
    async fn run(&mut self) -> ReaderStop {
        loop {
            let frame = match self.next_frame().await {
                Ok(frame) => frame,
                Err(stop) => return stop,
            };
            let queued = match self.answer(frame).await {
                Ok(Some(queued)) => queued,
                Ok(None) => continue,
                Err(stop) => return stop,
            };
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            if self.tx.send(queued).await.is_err() {
                return ReaderStop::WriterGone;
            }
        }
    }

    /// The next whole frame, or why the connection stops reading.
    async fn next_frame(&mut self) -> Result<Bytes, ReaderStop> {
        loop {
            let step = tokio::select! {
                biased;
                _ = shutdown_started(&mut self.shutdown) => return Err(ReaderStop::Shutdown),
                _ = &mut self.writer => {
                    self.writer_done = true;
                    return Err(ReaderStop::WriterGone);
                }
                step = self.frames.step(&mut self.rd) => step,
                _ = sleep_until(self.idle_deadline) => {
                    if self.in_flight.load(Ordering::Acquire) > 0 {
                        // Still answering: the connection is not idle. Count again from now.
                        self.idle_deadline = Instant::now() + self.idle;
                        continue;
                    }
                    debug!(idle_ms = self.idle.as_millis() as u64, "closing idle connection");
                    return Err(ReaderStop::Idle);
                }
            };
            self.idle_deadline = Instant::now() + self.idle;
            if let Some(frame) = frame_or_stop(step)? {
                return Ok(frame);
            }
        }
    }

    /// Has the handler answer one frame: the reply to queue, None when none is due, or why to stop.
    async fn answer(&mut self, frame: Bytes) -> Result<Option<Queued>, ReaderStop> {
        if !self.client_id_recorded
            && let Some(client_id) = self.handler.client_id(&frame)
        {
            // Once: each record would repeat the field in text logs. The span is the listener's.
            tracing::Span::current().record("client_id", client_id);
            self.client_id_recorded = true;
        }
        let handler = &self.handler;
        let session = &mut self.session;
        let reply = match catch_unwind(AssertUnwindSafe(|| handler.handle(frame, session))) {
            Ok(reply) => reply,
            Err(payload) => {
                error!(
                    panic = panic_message(&*payload),
                    "request handler panicked; closing connection"
                );
                return Err(ReaderStop::Violation);
            }
        };
        match reply {
            Reply::Now(frame) => self.reserve(frame).await.map(Some),
            Reply::Later(fut) => Ok(Some(Queued::Later(LaterReply::spawn(
                fut,
                self.budget.clone(),
            )))),
            Reply::None => Ok(None),
            Reply::Close(reason) => {
                warn!(%reason, "closing connection: protocol violation");
                Err(ReaderStop::Violation)
            }
        }
    }

    /// Takes a ready reply's share of the budget before reading on: an exhausted budget stops reading, as a
    /// full FIFO does.
    async fn reserve(&mut self, frame: Frame) -> Result<Queued, ReaderStop> {
        let reserved = tokio::select! {
            biased;
            _ = &mut self.writer => {
                self.writer_done = true;
                return Err(ReaderStop::WriterGone);
            }
            reserved = self.budget.reserve(frame.len()) => reserved,
        };
        // None: the writer closed the budget on its way out.
        let permit = reserved.ok_or(ReaderStop::WriterGone)?;
        Ok(Queued::Ready(Box::new(Response {
            frame,
            budget: Some(permit),
        })))
    }

    /// Lets the writer finish (or stops it when nobody will read), then lingers after a close of ours.
    async fn finish(self, stop: ReaderStop) {
        let ConnectionReader {
            mut rd,
            tx,
            writer,
            writer_done,
            ..
        } = self;
        // Closing the FIFO tells the writer that no more replies come.
        drop(tx);
        if !writer_done {
            if stop == ReaderStop::Disconnected {
                // Nobody will read the answers; stop waiting for them.
                writer.abort();
            }
            // The writer is bounded: writes give up after a stall of `idle`, and at shutdown the grace
            // deadline.
            let _ = writer.await;
        }
        if matches!(stop, ReaderStop::Violation | ReaderStop::Shutdown) {
            linger(&mut rd).await;
        }
    }
}

/// What one read step means for the reader: a frame, nothing yet, or why to stop.
fn frame_or_stop(step: Result<Step, FrameError>) -> Result<Option<Bytes>, ReaderStop> {
    match step {
        Ok(Step::Frame(frame)) => Ok(Some(frame)),
        Ok(Step::Progress) => Ok(None),
        Ok(Step::Eof) => {
            debug!("client closed the connection");
            Err(ReaderStop::Disconnected)
        }
        Err(FrameError::Io(e)) => {
            debug!(error = %e, "connection read failed");
            Err(ReaderStop::Disconnected)
        }
        Err(FrameError::Truncated) => {
            debug!("client closed the connection in the middle of a request");
            Err(ReaderStop::Disconnected)
        }
        Err(e @ (FrameError::NegativeSize(_) | FrameError::TooLarge { .. })) => {
            warn!(error = %e, "closing connection: invalid request size");
            Err(ReaderStop::Violation)
        }
    }
}

/// Resolves once a graceful shutdown has started (or the listener is gone).
pub(crate) async fn shutdown_started(shutdown: &mut ShutdownSignal) {
    loop {
        if shutdown.borrow_and_update().is_some() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves at the shutdown grace deadline (never while serving normally).
async fn grace_expired(shutdown: &mut ShutdownSignal) {
    let deadline = loop {
        if let Some(deadline) = *shutdown.borrow_and_update() {
            break deadline;
        }
        if shutdown.changed().await.is_err() {
            break Instant::now();
        }
    };
    sleep_until(deadline).await;
}

/// Reads and discards client input for a bounded time after our side finished writing, until EOF.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let deadline = Instant::now() + LINGER;
    // On the heap: an array here would make every connection's future (and task) 8 KiB larger.
    let mut scratch = vec![0u8; 8192];
    let mut discarded = 0usize;
    while discarded < LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, rd.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

/// The writer task: takes replies in request order and writes them, batching those already available.
async fn write_responses(
    mut wr: WriteHalf<impl Transport>,
    socket: Option<RawFd>,
    mut rx: mpsc::Receiver<Queued>,
    in_flight: Arc<AtomicUsize>,
    budget: ReplyBudget,
    stall: Duration,
    mut shutdown: ShutdownSignal,
) {
    let mut batch = Batch::default();
    loop {
        // Take the next reply; wait only if nothing is pending to be written.
        let next = if batch.is_empty() {
            if rx.is_empty() {
                // About to wait, maybe for a long time: return what a burst of replies grew.
                batch.release_idle();
            }
            tokio::select! {
                biased;
                item = rx.recv() => item,
                _ = grace_expired(&mut shutdown) => {
                    debug!("shutdown grace expired; dropping unanswered requests");
                    break;
                }
            }
        } else {
            rx.try_recv().ok()
        };
        let Some(item) = next else {
            if batch.is_empty() {
                break; // The reader closed the FIFO and every reply is written.
            }
            if !flush(
                &mut wr,
                socket,
                &mut batch,
                &in_flight,
                stall,
                &mut shutdown,
            )
            .await
            {
                break;
            }
            continue;
        };
        match item {
            Queued::Ready(response) => batch.push(Some(*response)),
            Queued::Later(mut later) => {
                later.reached_head();
                if !later.task.0.is_finished()
                    && !batch.is_empty()
                    && !flush(
                        &mut wr,
                        socket,
                        &mut batch,
                        &in_flight,
                        stall,
                        &mut shutdown,
                    )
                    .await
                {
                    break;
                }
                let result = tokio::select! {
                    biased;
                    result = &mut later.task.0 => result,
                    _ = grace_expired(&mut shutdown) => {
                        debug!("shutdown grace expired; dropping unanswered requests");
                        break;
                    }
                };
                match result {
                    Ok(response) => batch.push(response),
                    Err(e) if e.is_panic() => {
                        let payload = e.into_panic();
                        error!(
                            panic = panic_message(&*payload),
                            "deferred reply panicked; closing connection"
                        );
                        break;
                    }
                    Err(_) => break, // Cancelled: the runtime is shutting down.
                }
            }
        }
        if batch.is_full()
            && !flush(
                &mut wr,
                socket,
                &mut batch,
                &in_flight,
                stall,
                &mut shutdown,
            )
            .await
        {
            break;
        }
    }
    // Dropping `rx` makes the reader's next `send` fail, aborts the `Later` tasks still queued and releases
    // their budget; closing the budget wakes a reader waiting for it.
    drop(rx);
    drop(batch);
    budget.close();
    let _ = timeout(stall, wr.shutdown()).await;
}

/// Responses gathered for one vectored write.
#[derive(Default)]
struct Batch {
    /// The chunks of the batch's frames, in order.
    frames: std::collections::VecDeque<Chunk>,
    bytes: usize,
    /// Replies in this batch, including `Later`s that produced no response.
    replies: usize,
    /// The budget of the replies in this batch, released once they are written.
    budget: Vec<OwnedSemaphorePermit>,
}

impl Batch {
    fn push(&mut self, response: Option<Response>) {
        self.replies += 1;
        let Some(Response { frame, budget }) = response else {
            return;
        };
        self.budget.extend(budget);
        self.bytes += frame.len();
        // A frame's chunks are never empty, so each one moves the write forward.
        self.frames.extend(frame.into_chunks());
    }
    fn is_empty(&self) -> bool {
        self.replies == 0
    }
    /// Frees the buffers grown for a large batch (up to a few KiB), so an idle connection holds none.
    fn release_idle(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 4 {
            self.frames = std::collections::VecDeque::new();
        }
        if self.budget.is_empty() && self.budget.capacity() > 4 {
            self.budget = Vec::new();
        }
    }
    fn is_full(&self) -> bool {
        self.frames.len() >= MAX_BATCH_RESPONSES || self.bytes >= MAX_BATCH_BYTES
    }
}

/// Writes the whole batch; false if the connection is unusable (error, stall, or shutdown grace expired).
async fn flush(
    wr: &mut (impl AsyncWrite + Unpin),
    socket: Option<RawFd>,
    batch: &mut Batch,
    in_flight: &AtomicUsize,
    stall: Duration,
    shutdown: &mut ShutdownSignal,
) -> bool {
    let result = tokio::select! {
        biased;
        result = write_all_chunks(wr, socket, &mut batch.frames, stall) => result,
        _ = grace_expired(shutdown) => Err(io::Error::new(io::ErrorKind::TimedOut, "shutdown grace expired")),
    };
    in_flight.fetch_sub(batch.replies, Ordering::AcqRel);
    batch.replies = 0;
    batch.bytes = 0;
    batch.budget.clear();
    match result {
        Ok(()) => true,
        Err(e) => {
            debug!(error = %e, "connection write failed");
            false
        }
    }
}

/// Writes every chunk: in-memory ones with vectored writes, file ones with [`write_file`]. A write that
/// makes no progress for `stall` fails: a client that stops reading cannot hold the connection (and its
/// queued replies) forever.
async fn write_all_chunks(
    wr: &mut (impl AsyncWrite + Unpin),
    socket: Option<RawFd>,
    chunks: &mut std::collections::VecDeque<Chunk>,
    stall: Duration,
) -> io::Result<()> {
    while let Some(front) = chunks.front_mut() {
        if let Chunk::File(slice) = front {
            write_file(wr, socket, slice, stall).await?;
            chunks.pop_front();
            continue;
        }
        let slices: Vec<IoSlice<'_>> = chunks
            .iter()
            .take(MAX_BATCH_RESPONSES)
            .map_while(|c| match c {
                Chunk::Bytes(b) => Some(IoSlice::new(b)),
                Chunk::File(_) => None,
            })
            .collect();
        let written = timeout(stall, wr.write_vectored(&slices))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "client stopped reading responses")
            })??;
        drop(slices);
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 {
            let front = chunks
                .front_mut()
                .expect("invariant: written bytes belong to queued chunks");
            if front.len() <= left {
                left -= front.len();
                chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

/// Writes a file chunk: on a plain TCP socket with sendfile(2), from the page cache into the socket without
/// a copy through user space. Elsewhere, or while the socket is full, a piece is read and written the
/// ordinary way (which waits, up to `stall`, until the socket takes bytes). A file that ends before the
/// chunk does (truncated since the fetch read it) fails the connection: the frame's length is promised.
async fn write_file(
    wr: &mut (impl AsyncWrite + Unpin),
    socket: Option<RawFd>,
    slice: &mut FileSlice,
    stall: Duration,
) -> io::Result<()> {
    while !slice.is_empty() {
        if let Some(socket) = socket {
            match sendfile(socket, slice) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "segment file ended inside a fetch response",
                    ));
                }
                Ok(sent) => {
                    slice.advance(sent);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let piece = if socket.is_some() {
            FILE_WAIT_PIECE_BYTES
        } else {
            FILE_COPY_PIECE_BYTES
        };
        let piece = slice.read_prefix(piece)?;
        let written = timeout(stall, wr.write(&piece)).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "client stopped reading responses")
        })??;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        slice.advance(written);
    }
    Ok(())
}

/// One sendfile(2) of the slice's next bytes into the (non-blocking) socket: the bytes sent.
fn sendfile(socket: RawFd, slice: &FileSlice) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(slice.position())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file position out of range"))?;
    let count = slice.len().min(MAX_SENDFILE_BYTES);
    // SAFETY: plain system call on two open descriptors: the socket is kept open by the connection's write
    // half, which the caller holds for the call; the file by the slice's shared handle. The kernel writes
    // only `offset`, a valid local.
    let sent = unsafe { libc::sendfile(socket, slice.file().as_raw_fd(), &mut offset, count) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// The message of a panic payload, for the log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServerLimits;
    use super::super::testkit::{self, Op, Script};
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn responses_in_request_order() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Later, 1, 300).await;
        testkit::send(&mut client, Op::Now, 2, 0).await;
        testkit::send(&mut client, Op::Later, 3, 10).await;
        testkit::send(&mut client, Op::Now, 4, 0).await;
        for expected in 1..=4 {
            assert_eq!(testkit::recv(&mut client).await, Some(expected));
        }
    }

    /// Reads one [`Op::File`] response and checks its file part byte by byte; returns its tag.
    async fn recv_file_response(stream: &mut tokio::net::TcpStream) -> u32 {
        use tokio::io::AsyncReadExt;
        let size = stream.read_u32().await.expect("size") as usize;
        assert_eq!(size, 4 + testkit::FILE_RESPONSE_BYTES);
        let tag = stream.read_u32().await.expect("tag");
        let mut body = vec![0u8; testkit::FILE_RESPONSE_BYTES];
        stream.read_exact(&mut body).await.expect("file part");
        let wrong = (0..body.len()).find(|&i| body[i] != testkit::file_byte(i));
        assert_eq!(wrong, None, "first wrong byte of the file part");
        tag
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_chunks_arrive_whole_and_in_order_through_a_full_socket() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        // A small receive window: the socket fills and sendfile meets EAGAIN again and again.
        let mut client = testkit::connect_small_window(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        testkit::send(&mut client, Op::File, 2, 0).await;
        testkit::send(&mut client, Op::Later, 3, 5).await;
        testkit::send(&mut client, Op::File, 4, 0).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        assert_eq!(recv_file_response(&mut client).await, 2);
        assert_eq!(testkit::recv(&mut client).await, Some(3));
        assert_eq!(recv_file_response(&mut client).await, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_shorter_than_its_chunk_closes_the_connection() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        testkit::send(&mut client, Op::File, 2, 1).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        // The promised frame cannot be completed: the client sees the connection end, never padding.
        assert!(testkit::closed(&mut client).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn later_replies_progress_concurrently() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        // Each reply waits until all three have started: run one after the other, the first would give up.
        for tag in 1..=3 {
            testkit::send(&mut client, Op::Rendezvous, tag, 3).await;
        }
        for expected in 1..=3 {
            assert_eq!(testkit::recv(&mut client).await, Some(expected));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_reply_sends_nothing_and_keeps_order() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::NoReply, 1, 0).await;
        testkit::send(&mut client, Op::LaterPanic, 2, u32::MAX).await; // a Later that yields None
        testkit::send(&mut client, Op::Now, 3, 0).await;
        assert_eq!(testkit::recv(&mut client).await, Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frame_split_into_single_bytes_is_reassembled() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        client.set_nodelay(true).expect("set_nodelay");
        for byte in testkit::frame(Op::Now, 9, 0) {
            client.write_all(&[byte]).await.expect("send one byte");
            client.flush().await.expect("flush");
        }
        assert_eq!(testkit::recv(&mut client).await, Some(9));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_and_small_frames_in_one_stream_arrive_whole() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        let mut bytes = Vec::new();
        for len in [100_000usize, 1, 20_000, 16 * 1024, 3] {
            bytes.extend((len as u32).to_be_bytes());
            bytes.push(b'S');
            bytes.resize(bytes.len() + len - 1, 0x5a);
        }
        bytes.extend(testkit::frame(Op::Now, 7, 0));
        for chunk in bytes.chunks(7_777) {
            client.write_all(chunk).await.expect("send");
        }
        for expected in [100_000, 1, 20_000, 16 * 1024, 3, 7] {
            assert_eq!(testkit::recv(&mut client).await, Some(expected));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_frame_closes_connection() {
        let script = Script::new();
        let limits = ServerLimits {
            socket_request_max_bytes: 1024,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut bystander = testkit::connect(&listener).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        client
            .write_all(&2000u32.to_be_bytes())
            .await
            .expect("send a size");
        assert_eq!(
            testkit::recv(&mut client).await,
            Some(1),
            "earlier response still written"
        );
        assert!(testkit::closed(&mut client).await);
        testkit::send(&mut bystander, Op::Now, 2, 0).await;
        assert_eq!(
            testkit::recv(&mut bystander).await,
            Some(2),
            "other connection unaffected"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frame_at_the_size_limit_is_accepted() {
        let script = Script::new();
        let limits = ServerLimits {
            socket_request_max_bytes: 9,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 5, 0).await; // exactly 9 bytes of body
        assert_eq!(testkit::recv(&mut client).await, Some(5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn negative_size_closes_connection() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        client
            .write_all(&(-1i32).to_be_bytes())
            .await
            .expect("send a size");
        assert!(testkit::closed(&mut client).await);
        assert_eq!(script.calls(), 0);
    }

    /// A client that pipelines requests and never reads: the broker stops reading once the FIFO is full.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipeline_depth_is_bounded() {
        const DEPTH: usize = 4;
        const REQUESTS: u32 = 40;
        let script = Script::new();
        let limits = ServerLimits {
            queued_max_requests: DEPTH,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("small receive buffer");
        let mut client = socket
            .connect(listener.local_addr())
            .await
            .expect("connect");
        let mut requests = Vec::new();
        for tag in 0..REQUESTS {
            requests.extend(testkit::frame(Op::Big, tag, 0));
        }
        client
            .write_all(&requests)
            .await
            .expect("pipeline all requests (they fit in TCP buffers)");

        // The writer blocks on the first 4 MiB response; the reader fills the FIFO and stops.
        assert!(testkit::eventually(|| script.calls() >= DEPTH).await);
        // Watch for a while that it stays stopped: the reader is blocked, not merely slow.
        let bound = DEPTH + 4;
        let watch_until = tokio::time::Instant::now() + Duration::from_millis(500);
        while tokio::time::Instant::now() < watch_until {
            assert!(
                script.calls() <= bound,
                "{} calls with depth {DEPTH}",
                script.calls()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(script.calls() < REQUESTS as usize);

        // Reading the responses releases the back-pressure; every request is answered.
        for _ in 0..REQUESTS {
            assert_eq!(testkit::recv(&mut client).await, Some(u32::MAX));
        }
        assert_eq!(script.calls(), REQUESTS as usize);
    }

    /// Limits with a reply budget of two [`Op::Big`] responses.
    fn two_big_replies_budget() -> ServerLimits {
        ServerLimits {
            queued_max_reply_bytes: 2 * testkit::BIG_RESPONSE_BYTES,
            ..testkit::limits()
        }
    }

    /// A client that pipelines big requests and never reads: the byte budget, not the (default, 500) count
    /// bound, stops the reader after a few replies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reply_bytes_are_bounded_per_connection() {
        const REQUESTS: u32 = 50;
        let script = Script::new();
        let listener = testkit::start(two_big_replies_budget(), &script).await;
        let mut client = testkit::connect_small_window(&listener).await;
        let mut requests = Vec::new();
        for tag in 0..REQUESTS {
            requests.extend(testkit::frame(Op::Big, tag, 0));
        }
        client
            .write_all(&requests)
            .await
            .expect("pipeline all requests (they fit in TCP buffers)");

        // Two replies fill the budget, a third waits for budget; the writer may also have moved about one
        // reply into the kernel's send buffer, freeing its share.
        let calls = testkit::settled(|| script.calls()).await;
        assert!(
            (3..=5).contains(&calls),
            "{calls} calls with a budget of two replies"
        );

        // Reading the responses frees the budget; every request is answered, in order.
        for _ in 0..REQUESTS {
            assert_eq!(testkit::recv(&mut client).await, Some(u32::MAX));
        }
        assert_eq!(script.calls(), REQUESTS as usize);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reply_larger_than_the_budget_is_delivered() {
        let script = Script::new();
        let limits = ServerLimits {
            queued_max_reply_bytes: 1024,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Big, 1, 0).await;
        testkit::send(&mut client, Op::Gated, 2, 1).await; // a big Later
        testkit::send(&mut client, Op::Big, 3, 0).await;
        testkit::send(&mut client, Op::Now, 4, 0).await;
        script.open_gate();
        for expected in [u32::MAX, u32::MAX, u32::MAX, 4] {
            assert_eq!(testkit::recv(&mut client).await, Some(expected));
        }
    }

    /// A parked Later holds no budget: the Big replies behind it take the whole budget (and wait for it,
    /// since they are written after the Later).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_later_holds_no_reply_budget() {
        let script = Script::new();
        let listener = testkit::start(two_big_replies_budget(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Gated, 1, 0).await;
        for tag in 2..=5 {
            testkit::send(&mut client, Op::Big, tag, 0).await;
        }
        // The Later, two Bigs holding the budget, and a third Big waiting for it.
        assert_eq!(testkit::settled(|| script.calls()).await, 4);
        script.open_gate();
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        for _ in 2..=5 {
            assert_eq!(testkit::recv(&mut client).await, Some(u32::MAX));
        }
    }

    /// A Later that answers while younger replies hold the whole budget cannot wait for them (they are
    /// written after it): as the oldest reply it goes through without budget.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oldest_later_never_waits_for_budget_held_by_younger_replies() {
        let script = Script::new();
        let listener = testkit::start(two_big_replies_budget(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Gated, 1, 1).await; // answers with a big response
        testkit::send(&mut client, Op::Gated, 2, 1).await; // ditto, and waits for budget
        for tag in 3..=5 {
            testkit::send(&mut client, Op::Big, tag, 0).await;
        }
        assert_eq!(testkit::settled(|| script.calls()).await, 5);
        script.open_gate();
        for _ in 1..=5 {
            assert_eq!(testkit::recv(&mut client).await, Some(u32::MAX));
        }
    }

    /// A connection stuck on a full budget still closes, and releases everything, when its client goes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_disconnect_with_full_budget_releases_the_connection() {
        let script = Script::new();
        let listener = testkit::start(two_big_replies_budget(), &script).await;
        let mut client = testkit::connect_small_window(&listener).await;
        for tag in 0..20 {
            testkit::send(&mut client, Op::Big, tag, 0).await;
        }
        let calls = testkit::settled(|| script.calls()).await;
        assert!(calls < 20, "{calls} calls");
        assert_eq!(listener.open_connections(), 1);
        drop(client);
        assert!(testkit::eventually(|| listener.open_connections() == 0).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connection_is_closed() {
        let script = Script::new();
        let limits = ServerLimits {
            connections_max_idle_ms: 200,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        let started = Instant::now();
        assert!(testkit::closed(&mut client).await);
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "closed after {:?}",
            started.elapsed()
        );
        assert!(testkit::eventually(|| listener.open_connections() == 0).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_timer_waits_for_replies_in_flight() {
        let script = Script::new();
        let limits = ServerLimits {
            connections_max_idle_ms: 200,
            ..testkit::limits()
        };
        let listener = testkit::start(limits, &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Later, 1, 700).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_writes_earlier_responses_then_closes() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Later, 1, 200).await;
        testkit::send(&mut client, Op::Now, 2, 0).await;
        testkit::send(&mut client, Op::Close, 3, 0).await;
        testkit::send(&mut client, Op::Now, 4, 0).await; // after the violation: never handled
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        assert_eq!(testkit::recv(&mut client).await, Some(2));
        assert_eq!(testkit::recv(&mut client).await, None);
        assert_eq!(script.calls(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handler_panic_closes_only_that_connection() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut bystander = testkit::connect(&listener).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Panic, 1, 0).await;
        assert!(testkit::closed(&mut client).await);
        testkit::send(&mut bystander, Op::Now, 2, 0).await;
        assert_eq!(testkit::recv(&mut bystander).await, Some(2));
        let mut newcomer = testkit::connect(&listener).await;
        testkit::send(&mut newcomer, Op::Now, 3, 0).await;
        assert_eq!(testkit::recv(&mut newcomer).await, Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_reply_panic_closes_only_that_connection() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut bystander = testkit::connect(&listener).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Now, 1, 0).await;
        testkit::send(&mut client, Op::LaterPanic, 2, 0).await;
        assert_eq!(testkit::recv(&mut client).await, Some(1));
        assert!(testkit::closed(&mut client).await);
        testkit::send(&mut bystander, Op::Now, 3, 0).await;
        assert_eq!(testkit::recv(&mut bystander).await, Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_disconnect_releases_the_connection() {
        let script = Script::new();
        let listener = testkit::start(testkit::limits(), &script).await;
        let mut client = testkit::connect(&listener).await;
        testkit::send(&mut client, Op::Later, 1, 60_000).await; // a long poll nobody will read
        assert!(testkit::eventually(|| script.calls() == 1).await);
        assert_eq!(listener.open_connections(), 1);
        drop(client);
        assert!(testkit::eventually(|| listener.open_connections() == 0).await);
    }

    /// A connection waiting between requests holds no read-ahead buffer (10,000 idle connections would
    /// otherwise pin 16 KiB each); a partial frame keeps its bytes until the rest arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_reader_holds_no_read_buffer() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut client = tokio::net::TcpStream::connect(server.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, _) = server.accept().await.expect("accept");
        let (mut rd, _wr) = stream.into_split();
        let mut reader = super::FrameReader::new(1 << 20);
        let wait = Duration::from_secs(10);

        client
            .write_all(&testkit::frame(Op::Now, 1, 0))
            .await
            .expect("send");
        let first = loop {
            match tokio::time::timeout(wait, reader.step(&mut rd)).await {
                Ok(Ok(super::Step::Frame(frame))) => break frame,
                Ok(Ok(super::Step::Progress)) => continue,
                _ => panic!("no frame"),
            }
        };
        assert_eq!(first.len(), 9);
        drop(first);
        // Nothing more arrives: the step waits, and is cancelled by the timeout (it is cancel-safe).
        assert!(
            tokio::time::timeout(Duration::from_millis(50), reader.step(&mut rd))
                .await
                .is_err()
        );
        assert_eq!(reader.read_ahead.capacity(), 0, "idle: no buffer held");

        // Half a frame stays buffered while the rest is awaited, and the frame comes out whole.
        let frame = testkit::frame(Op::Now, 2, 0);
        client.write_all(&frame[..6]).await.expect("send half");
        assert!(matches!(
            tokio::time::timeout(wait, reader.step(&mut rd)).await,
            Ok(Ok(super::Step::Progress))
        ));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), reader.step(&mut rd))
                .await
                .is_err()
        );
        assert_eq!(reader.read_ahead.len(), 6, "the partial frame is kept");
        client.write_all(&frame[6..]).await.expect("send the rest");
        match tokio::time::timeout(wait, reader.step(&mut rd)).await {
            Ok(Ok(super::Step::Frame(frame))) => assert_eq!(&frame[1..5], &2u32.to_be_bytes()),
            _ => panic!("the partial frame was not completed"),
        }
    }
}
