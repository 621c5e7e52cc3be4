//! The machine's own limits, measured in the same run as the workloads so every ratio compares figures
//! taken under the same load: sequential write into the page cache, one loopback TCP stream, one
//! writer's fsync rate (1 KiB write + fdatasync), and the round trip of 1 KiB between two threads over
//! loopback TCP at workload 4's pace (the floor under its end-to-end latency: thread wake-ups and
//! scheduling on a busy machine).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Medians of the samples taken.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sustained for as long as a produce phase: the ratio's denominator.
    pub page_cache_write_mb_s: f64,
    /// The first `--limit-bytes` of the same writes: what an empty page cache takes in a burst, before
    /// dirty-page writeback and fresh memory slow it down (several times the sustained figure on a VM).
    pub page_cache_burst_mb_s: f64,
    pub burst_bytes: u64,
    pub loopback_mb_s: f64,
    pub fsync_per_s: f64,
    /// Paced 1 KiB loopback round trip, p50 and p99 in ms.
    pub rtt_p50_ms: f64,
    pub rtt_p99_ms: f64,
}

pub const MB: f64 = 1_000_000.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Measures all three limits in `dir` (a directory on the disk the broker writes to).
pub fn measure(
    dir: &Path,
    bytes: u64,
    write_time: Duration,
    samples: usize,
    fsync_time: Duration,
    rtt_rate: u64,
    rtt_time: Duration,
) -> anyhow::Result<Limits> {
    let samples = samples.max(1);
    let mut write = Vec::with_capacity(samples);
    let mut burst = Vec::with_capacity(samples);
    let mut tcp = Vec::with_capacity(samples);
    let (rtt_p50_ms, rtt_p99_ms) = paced_round_trip(rtt_rate, rtt_time)?;
    for i in 0..samples {
        let (sustained, first) =
            page_cache_write(&dir.join(format!("limit-write-{i}")), bytes, write_time)?;
        write.push(sustained);
        burst.push(first);
        tcp.push(loopback(bytes)?);
    }
    Ok(Limits {
        page_cache_write_mb_s: median(write),
        page_cache_burst_mb_s: median(burst),
        burst_bytes: bytes,
        loopback_mb_s: median(tcp),
        fsync_per_s: fsync_rate(&dir.join("limit-fsync"), fsync_time)?,
        rtt_p50_ms,
        rtt_p99_ms,
    })
}

/// 1 KiB messages sent at `rate` per second for `time` to an echo thread over loopback TCP (no Nagle);
/// each round trip is timed from the moment it was due, as workload 4 times records.
fn paced_round_trip(rate: u64, time: Duration) -> anyhow::Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 1024];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .context("histogram bounds")?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let n = ((time.as_secs_f64() * rate as f64).ceil() as u64).max(100);
    let mut buf = [0x33_u8; 1024];
    let start = Instant::now();
    for i in 0..n {
        let due = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        h.saturating_record((due.elapsed().as_micros() as u64).max(1));
    }
    s.shutdown(std::net::Shutdown::Write)?;
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok((ms(0.5), ms(0.99)))
}

/// MB/s of 1 MiB `write`s into a new file, no sync: what the OS accepts into its page cache, sustained for
/// `time` (a produce phase writes for that long) and over the first `bytes` alone.
fn page_cache_write(path: &Path, bytes: u64, time: Duration) -> anyhow::Result<(f64, f64)> {
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let started = Instant::now();
    let mut written = 0u64;
    let mut burst = None;
    while written < bytes || started.elapsed() < time {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        if burst.is_none() && written >= bytes {
            burst = Some(written as f64 / MB / started.elapsed().as_secs_f64());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    let sustained = written as f64 / MB / secs;
    Ok((sustained, burst.unwrap_or(sustained)))
}

/// MB/s of one TCP stream over 127.0.0.1, 256 KiB writes and reads, the reader on its own thread.
fn loopback(bytes: u64) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    let chunk = vec![0xa5_u8; 256 << 10];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader thread panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        received == sent,
        "loopback lost bytes: {received} of {sent}"
    );
    Ok(received as f64 / MB / secs)
}

/// Appends of 1 KiB, each followed by fdatasync, for `time` (at least 20 syncs): syncs per second.
fn fsync_rate(path: &Path, time: Duration) -> anyhow::Result<f64> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    let record = [0x42_u8; 1024];
    let started = Instant::now();
    let mut ops = 0u64;
    while ops < 20 || started.elapsed() < time {
        file.write_all(&record)?;
        // `sync_data` is fdatasync(2) on Linux.
        file.sync_data().context("fdatasync")?;
        ops += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(ops as f64 / secs)
}
