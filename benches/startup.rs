//! Startup cost of an embedded broker: `Broker::start` + `local_addr` + `shutdown` on an empty
//! data directory, against binding and closing a plain tokio `TcpListener` in the same run (the
//! floor any server pays). Run with `cargo bench --bench startup`; BROOK_BENCH_ITERS overrides
//! the iteration count (default 200).

use std::time::{Duration, Instant};

use brook::{Broker, Config};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    println!(
        "{name:<28} n={:<4} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        samples.len(),
        ms(p50),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().expect("at least one sample"))
    );
    p50
}

/// Times (start until the address is known, clean shutdown) of one broker on a fresh directory.
async fn broker_cycle(dir: &std::path::Path) -> (Duration, Duration) {
    let mut config = Config::new();
    config
        .set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    config
        .set("log.dirs", dir.to_str().expect("UTF-8 temp path"))
        .expect("log.dirs");
    let started = Instant::now();
    let broker = Broker::start(config).await.expect("broker starts");
    std::hint::black_box(broker.local_addr());
    let start = started.elapsed();
    let stopping = Instant::now();
    broker.shutdown().await.expect("clean shutdown");
    (start, stopping.elapsed())
}

async fn listener_cycle() -> Duration {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    std::hint::black_box(listener.local_addr().expect("local addr"));
    drop(listener);
    started.elapsed()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful. Either way run.
    let iters: usize = std::env::var("BROOK_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        // Warm-up: first-touch costs (page faults, lazy statics) are not startup cost.
        let warm = tempfile::tempdir().expect("temp dir");
        broker_cycle(&warm.path().join("data")).await;
        listener_cycle().await;

        let mut start_samples = Vec::with_capacity(iters);
        let mut shutdown_samples = Vec::with_capacity(iters);
        let mut listener_samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            // Each broker gets an empty directory, created outside the timed section.
            let tmp = tempfile::tempdir().expect("temp dir");
            let (start, shutdown) = broker_cycle(&tmp.path().join("data")).await;
            start_samples.push(start);
            shutdown_samples.push(shutdown);
            listener_samples.push(listener_cycle().await);
        }
        println!("startup: {iters} iterations, empty data dir, 127.0.0.1:0");
        let broker_p50 = report("Broker::start (empty dir)", start_samples);
        report("Broker::shutdown (clean)", shutdown_samples);
        let listener_p50 = report("baseline TcpListener bind", listener_samples);
        println!(
            "ratio (p50 start / p50 bind): {:.1}x",
            broker_p50.as_secs_f64() / listener_p50.as_secs_f64().max(1e-9)
        );
    });
}
