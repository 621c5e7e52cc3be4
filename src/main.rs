//! `brook [server.properties] [--override key=value]...`
//!
//! Configuration sources, later ones winning: the properties file, `BROOK_<KEY>` environment variables,
//! then `--override` arguments. A bad key or value exits with code 2 and one line that names it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use brook::config::LoggingFormat;
use brook::{Broker, Config};

const USAGE: &str = "usage: brook [server.properties] [--override key=value]... [--health-check]\n\
Configuration uses Kafka's property names; BROOK_<KEY> environment variables (e.g. BROOK_LOG_DIRS) and\n\
--override arguments win over the file. Logging: RUST_LOG (default info), logging.format=text|json.\n\
--health-check: exit 0 if a broker answers ApiVersions on the configured listener, 1 otherwise.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let health_check = args.iter().any(|a| a == "--health-check");
    args.retain(|a| a != "--health-check");
    let config = match config_from_args(args, std::env::vars()) {
        Ok(Some(config)) if health_check => return health_check_exit(&config),
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("brook: {message}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.logging_format);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("brook: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The container HEALTHCHECK: one ApiVersions v0 round trip to the configured listener, within 5 s.
fn health_check_exit(config: &Config) -> ExitCode {
    match health_check(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brook: health check failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn health_check(config: &Config) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
    use std::time::Duration;

    let mut addr = config
        .primary_listener()
        .context("no broker listener to check")?
        .bind
        .bind_addr()?;
    if addr.ip().is_unspecified() {
        // A listener on all interfaces is reachable on loopback.
        addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port());
    }
    let timeout = Duration::from_secs(5);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    const CORRELATION_ID: i32 = 0x6865_616c;
    let client_id = b"brook-health-check";
    let mut frame = Vec::with_capacity(32);
    frame.extend_from_slice(&(10 + client_id.len() as i32).to_be_bytes());
    frame.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    frame.extend_from_slice(&0i16.to_be_bytes()); // v0: header v1, response header v0
    frame.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    frame.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    frame.extend_from_slice(client_id);
    stream.write_all(&frame)?;
    let mut head = [0u8; 10];
    stream
        .read_exact(&mut head)
        .context("read the ApiVersions response")?;
    let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let error = i16::from_be_bytes([head[8], head[9]]);
    anyhow::ensure!(
        size >= 6 && correlation == CORRELATION_ID,
        "{addr} did not answer as a Kafka broker"
    );
    anyhow::ensure!(
        error == 0,
        "{addr} answered ApiVersions with error code {error}"
    );
    Ok(())
}

/// Log lines go to stderr, filtered by RUST_LOG (default `info`, as Kafka's log4j default).
fn init_logging(format: LoggingFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `docker logs` and files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LoggingFormat::Text => builder.init(),
        // Spans (connection, request) travel with each event so a shipper can group by them.
        LoggingFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// Builds the configuration from the command line and the environment; `None` when help was asked for.
fn config_from_args(
    args: Vec<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Option<Config>, String> {
    let mut file: Option<PathBuf> = None;
    let mut overrides = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--override" => {
                let pair = args.next().ok_or("--override needs key=value")?;
                overrides.push(pair);
            }
            other if other.starts_with("--override=") => {
                overrides.push(other["--override=".len()..].to_string())
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option '{other}'\n{USAGE}"));
            }
            other if file.is_none() => file = Some(PathBuf::from(other)),
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    let mut config = Config::new();
    if let Some(file) = file {
        config
            .load_properties_file(&file)
            .map_err(|e| e.to_string())?;
    }
    config.apply_env(env).map_err(|e| e.to_string())?;
    for pair in overrides {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--override '{pair}' is not key=value"))?;
        config.set(key.trim(), value).map_err(|e| e.to_string())?;
    }
    // Keys that do not fit together (a controller whose id is not a voter, ...) fail here, before
    // anything is opened.
    config.validate().map_err(|e| e.to_string())?;
    Ok(Some(config))
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("brook")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Listen for signals before announcing the address: a SIGTERM sent as soon as the broker says it
        // is listening must stop it cleanly, not kill it.
        let signals = wait_for_signal()?;
        let broker = Broker::start(config)
            .await
            .context("cannot start the broker")?;
        signals.await;
        tracing::info!("shutting down");
        broker.shutdown().await.context("unclean shutdown")?;
        Ok(())
    })
}

/// Registers the SIGTERM and SIGINT handlers now; the returned future completes at the first of them.
fn wait_for_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overrides_win_over_environment_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.properties");
        std::fs::write(&file, "num.partitions=2\nlog.dirs=/from/file\nnode.id=5\n").unwrap();
        let env = vec![("BROOK_NUM_PARTITIONS".to_string(), "3".to_string())];
        let config = config_from_args(
            args(&[file.to_str().unwrap(), "--override", "node.id=9"]),
            env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.node_id, 9);
        assert_eq!(config.log_dir, PathBuf::from("/from/file"));
    }

    #[test]
    fn a_cluster_node_is_configured_by_file_environment_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.properties");
        std::fs::write(
            &file,
            "process.roles=broker,controller\n\
             listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n\
             controller.listener.names=CONTROLLER\n",
        )
        .unwrap();
        let env = vec![(
            "BROOK_CONTROLLER_QUORUM_VOTERS".to_string(),
            "1@127.0.0.1:9093,2@127.0.0.1:9193".to_string(),
        )];
        let config = config_from_args(
            args(&[file.to_str().unwrap(), "--override", "node.id=2"]),
            env.clone(),
        )
        .unwrap()
        .unwrap();
        let cluster = config.cluster_mode().expect("process.roles is set");
        assert_eq!((cluster.node_id, cluster.voters.len()), (2, 2));

        // The same node with an id that is not a voter: one line naming the rule, before anything starts.
        let err = config_from_args(
            args(&[file.to_str().unwrap(), "--override", "node.id=3"]),
            env,
        )
        .unwrap_err();
        assert!(
            err.contains("the node id 3 must be included in the set of voters"),
            "{err}"
        );
    }

    #[test]
    fn bad_input_names_the_problem() {
        let err = config_from_args(args(&["--override", "nope.key=1"]), vec![]).unwrap_err();
        assert!(err.contains("nope.key"), "{err}");
        let err = config_from_args(args(&["--override", "num.partitions"]), vec![]).unwrap_err();
        assert!(err.contains("key=value"), "{err}");
        let err = config_from_args(args(&["/does/not/exist.properties"]), vec![]).unwrap_err();
        assert!(err.contains("/does/not/exist.properties"), "{err}");
    }
}
