//! The `brook` binary as a user runs it: configuration errors, startup, and a clean stop on SIGTERM.

mod common;

use common::process;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

fn brook() -> Command {
    process::brook_command()
}

#[test]
fn unknown_key_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = brook()
        .args(["--override", "log.retention.bogus=1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("log.retention.bogus"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is written on a config error"
    );
}

#[test]
fn bad_value_from_environment_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = brook()
        .env("BROOK_NUM_PARTITIONS", "none")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("num.partitions") && stderr.contains("none"),
        "{stderr}"
    );
}

#[test]
fn properties_file_then_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kafka-data");
    let properties = dir.path().join("server.properties");
    std::fs::write(
        &properties,
        format!(
            "# as kafka-server-start.sh takes it\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={}\nnode.id=3\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = brook()
        .arg(&properties)
        .args(["--override", "num.partitions=2"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // The bound address is announced on stderr once the broker listens.
    let addr = process::announced_addr(&mut child);
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect(addr).expect("brook accepts connections");

    let meta = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(meta.contains("node.id=3"), "{meta}");
    assert!(
        !data.join(".kafka_cleanshutdown").exists(),
        "no marker while running"
    );

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = wait_with_deadline(&mut child);
    assert!(status.success(), "exit status {status:?}");
    assert!(
        data.join(".kafka_cleanshutdown").exists(),
        "clean shutdown leaves the marker"
    );
}

fn wait_with_deadline(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("brook did not exit within {DEADLINE:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_logging_writes_one_object_per_line_with_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = json_brook(&dir.path().join("data"), "info");
    let rx = stderr_lines(&mut child);
    // Every line up to the announcement parses as JSON; the announcement carries its structured fields.
    let announcement = loop {
        let line = rx.recv_timeout(DEADLINE).expect("brook logs its start");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["level"].is_string(), "{line}");
        let message = value["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("listening on ") {
            break value;
        }
    };
    assert_eq!(announcement["level"], "INFO");
    assert_eq!(announcement["fields"]["node_id"], 1);
    assert!(announcement["fields"]["cluster_id"].is_string());
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(wait_with_deadline(&mut child).success());
}

#[test]
fn unknown_logging_format_exits_2() {
    let output = brook()
        .args(["--override", "logging.format=xml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("logging.format"));
}

#[test]
fn health_check_succeeds_only_against_a_live_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = brook()
        .args(["--override", "listeners=PLAINTEXT://127.0.0.1:0"])
        .env("BROOK_LOG_DIRS", dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = process::announced_addr(&mut child);
    let check = |listener: String| {
        brook()
            .args([
                "--health-check",
                "--override",
                &format!("listeners={listener}"),
            ])
            .output()
            .unwrap()
    };
    let up = check(format!("PLAINTEXT://{addr}"));
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(wait_with_deadline(&mut child).success());
    let down = check(format!("PLAINTEXT://{addr}"));
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("health check failed"));
}

/// brook logging JSON to stderr (piped) at `rust_log`, on an ephemeral port and `data`.
fn json_brook(data: &std::path::Path, rust_log: &str) -> std::process::Child {
    brook()
        .args([
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0",
            "--override",
            "logging.format=json",
        ])
        .env("BROOK_LOG_DIRS", data)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads stderr lines of `child` on a thread; returns the receiving end.
fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The next JSON log line that `matches`, within the deadline.
fn json_line(
    rx: &mpsc::Receiver<String>,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("the expected log line");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if matches(&value) {
            return value;
        }
    }
}

/// The span named `name` in a JSON line's span list (outermost first).
fn span<'a>(line: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} span in {line}"))
}

#[test]
fn json_log_lines_carry_connection_and_request_spans() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = json_brook(&dir.path().join("data"), "info,brook::request=debug");
    let rx = stderr_lines(&mut child);
    let announcement = json_line(&rx, |line| {
        line["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on "))
    });
    let addr: SocketAddr = announcement["fields"]["message"].as_str().unwrap()
        ["listening on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // ApiVersions v0 (request header v1) from client id "span-test", correlation id 7.
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let peer = client.local_addr().unwrap().to_string();
    let client_id = b"span-test";
    let mut frame = (10 + client_id.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 18, 0, 0, 0, 0, 0, 7]);
    frame.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    frame.extend_from_slice(client_id);
    client.write_all(&frame).unwrap();
    let mut size = [0u8; 4];
    client.read_exact(&mut size).unwrap();
    client
        .read_exact(&mut vec![0u8; i32::from_be_bytes(size) as usize])
        .unwrap();

    // The request's own line carries the request span inside the connection span.
    let request = json_line(&rx, |line| line["target"] == "brook::request");
    assert_eq!(request["level"], "DEBUG");
    assert_eq!(request["span"]["name"], "request", "{request}");
    assert_eq!(request["span"]["api"], "ApiVersions", "{request}");
    assert_eq!(request["span"]["version"], 0, "{request}");
    assert_eq!(request["span"]["correlation_id"], 7, "{request}");
    let connection = span(&request, "connection");
    assert_eq!(connection["peer"], peer, "{request}");
    assert_eq!(connection["client_id"], "span-test", "{request}");

    // A bad request on the same connection: one INFO-level warning, which says whose connection it was.
    client
        .write_all(&[0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 8])
        .unwrap();
    let warning = json_line(&rx, |line| line["level"] == "WARN");
    assert!(
        warning["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown api key")),
        "{warning}"
    );
    let connection = span(&warning, "connection");
    assert_eq!(connection["peer"], peer, "{warning}");
    assert_eq!(connection["client_id"], "span-test", "{warning}");

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(wait_with_deadline(&mut child).success());
}
