//! `GET /metrics` over plain HTTP/1.x on `metrics.listener`: a deliberately small server. One request per
//! connection (the response says `Connection: close`), a bounded request head, a deadline for the whole
//! exchange, a cap on concurrent scrapes, 404 for other paths and 405 for other methods.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What renders a broker's `/metrics` page. Implemented above this module (by the server, which can see
/// the partitions, groups and connections), so the metrics layer depends on nothing it reports on.
pub trait Scrape: Send + Sync + 'static {
    /// Folds recorded histogram samples into their buckets.
    fn upkeep(&self);
    /// The whole page. Blocking (may read `/proc`): called off the async workers.
    fn render(&self) -> String;
}

/// The largest request head read (request line and headers); Prometheus sends about 300 bytes.
const MAX_REQUEST_HEAD: usize = 8192;
/// A client gets this long to send its request and read the response, then it is closed.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// Scrapes served at once; connections beyond it are closed at once.
const MAX_CONCURRENT: usize = 16;
/// How often recorded histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The running metrics endpoint of one broker.
#[derive(Debug)]
pub struct MetricsEndpoint {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Serves `scraper` on a socket the caller bound. Must be called within a tokio runtime.
    pub fn start(socket: std::net::TcpListener, scraper: impl Scrape) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let socket = TcpListener::from_std(socket)?;
        let local_addr = socket.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(socket, Arc::new(scraper), stopped));
        Ok(MetricsEndpoint {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and drops scrapes in progress.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            tracing::error!("metrics endpoint panicked");
        }
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(socket: TcpListener, scraper: Arc<dyn Scrape>, mut stopped: watch::Receiver<bool>) {
    // Dropping the set (on stop) aborts scrapes in progress.
    let mut clients = JoinSet::new();
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            _ = upkeep.tick() => {
                let scraper = scraper.clone();
                // Takes the registry's locks briefly; off the async workers like a scrape.
                let _ = tokio::task::spawn_blocking(move || scraper.upkeep()).await;
            }
            accepted = socket.accept() => match accepted {
                Ok((stream, _)) if clients.len() < MAX_CONCURRENT => {
                    let scraper = scraper.clone();
                    clients.spawn(async move {
                        let _ = tokio::time::timeout(EXCHANGE_DEADLINE, exchange(stream, scraper)).await;
                    });
                }
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "too many metrics scrapes at once; closing");
                    drop(stream);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// One request, one response, close.
async fn exchange(mut stream: TcpStream, scraper: Arc<dyn Scrape>) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
    };
    let mut request_line = head.split("\r\n").next().unwrap_or("").split(' ');
    let (method, target) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or(""),
    );
    let path = target.split('?').next().unwrap_or("");
    let with_body = method != "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let page = tokio::task::spawn_blocking(move || scraper.render())
                .await
                .map_err(std::io::Error::other)?;
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                page.as_bytes(),
                with_body,
            )
            .await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found; try /metrics\n",
                with_body,
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"method not allowed\n",
                true,
            )
            .await
        }
    }
}

/// Reads up to the blank line that ends the request head. None when the head is too large or not text.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
