//! The fault test's history: what every client did and saw, one JSON object a line, in the test's temp
//! directory (kept and printed on failure). The checker reads it back; nothing else is its input besides
//! the final logs (the drain, also recorded here) and the replicas' files.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One thing a client or the nemesis did. Values are unique per run (`p<partition>-<n>`), so a value
/// names one send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A send was handed to the producer.
    Send {
        t: u64,
        partition: i32,
        value: String,
    },
    /// The broker acknowledged the send at `offset` (acks as configured).
    Ack {
        t: u64,
        partition: i32,
        offset: i64,
        value: String,
    },
    /// The producer gave up on the send: indeterminate (the write may still be in the log).
    Fail {
        t: u64,
        partition: i32,
        value: String,
        error: String,
    },
    /// A reader saw `value` at `offset`. `reader` names one consumer incarnation; assign-mode readers
    /// (`assign-*`) must see offsets only increase per partition.
    Read {
        t: u64,
        reader: String,
        partition: i32,
        offset: i64,
        value: String,
    },
    /// A fault began or ended.
    Nemesis { t: u64, cycle: u32, op: String },
    /// The final log after healing, read from the start by a fresh consumer: one record.
    Drain {
        partition: i32,
        offset: i64,
        value: String,
    },
    /// The final high watermark of a partition (where the drain stopped).
    HighWatermark { partition: i32, offset: i64 },
}

/// An append-only JSONL history shared by the client threads.
pub struct History {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    start: Instant,
}

impl History {
    pub fn create(path: &Path) -> History {
        let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        History {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(file)),
            start: Instant::now(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Milliseconds since the history began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn record(&self, event: &Event) {
        let line = serde_json::to_string(event).expect("an event serialises");
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(out, "{line}").expect("write the history");
    }

    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.flush().expect("flush the history");
    }
}

/// Reads a JSONL history back.
pub fn read_history(path: &Path) -> Vec<Event> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(file)
        .lines()
        .map(|line| {
            let line = line.expect("read the history");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("history line {line:?}: {e}"))
        })
        .collect()
}
