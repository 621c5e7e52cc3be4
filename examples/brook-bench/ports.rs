//! Free ports on 127.0.0.1 for brooks started by a benchmark or a test (shared by brook-bench and
//! tests/common, which compile this file as their own module).

use std::collections::BTreeSet;
use std::sync::Mutex;

/// How many ports the kernel may hand out before one this process was not given yet.
const TRIES: usize = 1000;

/// A port that was free a moment ago (bound and released: another process may take it before the broker
/// binds it), never one this process was given before: the kernel may hand a just-released port to the next
/// bind, and two listeners on one port fail the start.
pub fn free_port() -> std::io::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..TRIES {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no ephemeral port this process was not given already",
    ))
}
