//! The built `brook` binary as a separate process: a command free of the test's own BROOK_ settings,
//! the address it announces once it listens, and a guard that kills it however the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::mpsc;

use super::DEADLINE;

/// The `brook` binary; the test's own environment must not configure the broker.
pub fn brook_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    for (name, _) in std::env::vars() {
        if name.starts_with("BROOK_") {
            command.env_remove(name);
        }
    }
    // Tests bind ephemeral ports only (the default metrics port is 9464); `--override` still wins.
    command.env("BROOK_METRICS_LISTENER", "127.0.0.1:0");
    command
}

/// The address from the "listening on" line of `child`'s stderr (spawned with `Stdio::piped()` and
/// `RUST_LOG=info`). Stderr keeps being drained on a thread so the broker never blocks writing it.
/// Kills the child and panics if no address is announced within [`DEADLINE`].
pub fn announced_addr(child: &mut Child) -> SocketAddr {
    let stderr = child
        .stderr
        .take()
        .expect("brook spawned with piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.to_string());
            }
        }
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(addr) => addr
            .parse()
            .unwrap_or_else(|e| panic!("brook announced {addr:?}, not a socket address: {e}")),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brook did not announce its address within {DEADLINE:?}");
        }
    }
}

/// Kills the child process however the test ends (a paused or failed brook would otherwise outlive
/// the test).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
