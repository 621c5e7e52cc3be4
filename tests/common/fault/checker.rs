//! The checker of the fault test: pure functions over a history (see [`super::history`]), O(events).
//! Each finding is one of Jepsen's Kafka anomaly names, so a report reads like theirs:
//! - `lost`: an acknowledged send whose value is not in the final log (Jepsen's `unseen` after the
//!   drain; a `lost-write` when a later offset of its partition was read or survives);
//! - `duplicate`: one value at two offsets;
//! - `inconsistent-offsets`: two values at one offset (from acks, reads and the final log together);
//! - `truncated-read`: a record a reader saw that the final log does not hold at that offset;
//! - `nonmonotonic-poll`: an assign-mode reader whose offsets went backwards (or repeated) on a partition.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::history::Event;

/// How many examples of each anomaly a report prints.
const EXAMPLES: usize = 8;

/// A finding, with enough context to look it up in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    Lost {
        partition: i32,
        offset: i64,
        value: String,
        /// A later offset of the partition is in the final log (Jepsen's `lost-write`), not merely
        /// missing at the tail.
        later_offset_survives: bool,
    },
    Duplicate {
        value: String,
        at: Vec<(i32, i64)>,
    },
    InconsistentOffsets {
        partition: i32,
        offset: i64,
        values: Vec<String>,
    },
    TruncatedRead {
        reader: String,
        partition: i32,
        offset: i64,
        value: String,
        final_value: Option<String>,
    },
    NonmonotonicPoll {
        reader: String,
        partition: i32,
        previous: i64,
        offset: i64,
    },
}

impl Anomaly {
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::Lost { .. } => "lost",
            Anomaly::Duplicate { .. } => "duplicate",
            Anomaly::InconsistentOffsets { .. } => "inconsistent-offsets",
            Anomaly::TruncatedRead { .. } => "truncated-read",
            Anomaly::NonmonotonicPoll { .. } => "nonmonotonic-poll",
        }
    }
}

/// What the checker found, with the workload's counts.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub acked: usize,
    pub failed: usize,
    pub reads: usize,
    pub drained: usize,
    pub anomalies: Vec<Anomaly>,
    /// Why sends failed, by the client's error text (availability, not safety: printed, never judged).
    pub failures: BTreeMap<String, usize>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.anomalies.iter().filter(|a| a.kind() == kind).count()
    }

    /// Acknowledged sends missing from the final log.
    pub fn lost(&self) -> usize {
        self.count("lost")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} acked {} failed/indeterminate {} read {} drained {}",
            self.sent, self.acked, self.failed, self.reads, self.drained
        )?;
        let mut reasons: Vec<(&String, &usize)> = self.failures.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        for (reason, count) in reasons.into_iter().take(5) {
            writeln!(f, "  failed {count}x: {reason}")?;
        }
        let mut by_kind: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
        for a in &self.anomalies {
            by_kind.entry(a.kind()).or_default().push(a);
        }
        if by_kind.is_empty() {
            return writeln!(f, "valid: no anomalies");
        }
        for (kind, list) in by_kind {
            writeln!(f, "{kind}: {}", list.len())?;
            for a in list.iter().take(EXAMPLES) {
                writeln!(f, "  {a:?}")?;
            }
        }
        Ok(())
    }
}

/// Checks `history`; the final log is its `Drain` events.
pub fn check(history: &[Event]) -> Report {
    let mut report = Report::default();
    // (partition, offset) -> values, and value -> (partition, offset)s, over acks, reads and the drain.
    let mut at: BTreeMap<(i32, i64), BTreeSet<&str>> = BTreeMap::new();
    let mut places: HashMap<&str, BTreeSet<(i32, i64)>> = HashMap::new();
    let mut final_log: HashMap<i32, BTreeMap<i64, &str>> = HashMap::new();
    let mut final_values: HashMap<&str, (i32, i64)> = HashMap::new();
    let mut acks: Vec<(i32, i64, &str)> = Vec::new();
    let mut reads: Vec<(&str, i32, i64, &str)> = Vec::new();
    for event in history {
        let observed = match event {
            Event::Send { .. } => {
                report.sent += 1;
                None
            }
            Event::Fail { error, .. } => {
                report.failed += 1;
                *report.failures.entry(error.clone()).or_default() += 1;
                None
            }
            Event::Ack {
                partition,
                offset,
                value,
                ..
            } => {
                report.acked += 1;
                acks.push((*partition, *offset, value));
                // An idempotent producer may learn of a retried batch's success without its offset
                // (librdkafka's implicit acknowledgement: -1001): acknowledged, at no known place.
                (*offset >= 0).then_some((*partition, *offset, value.as_str()))
            }
            Event::Read {
                reader,
                partition,
                offset,
                value,
                ..
            } => {
                report.reads += 1;
                reads.push((reader, *partition, *offset, value));
                Some((*partition, *offset, value.as_str()))
            }
            Event::Drain {
                partition,
                offset,
                value,
            } => {
                report.drained += 1;
                final_log
                    .entry(*partition)
                    .or_default()
                    .insert(*offset, value);
                final_values.insert(value, (*partition, *offset));
                Some((*partition, *offset, value.as_str()))
            }
            Event::Nemesis { .. } | Event::HighWatermark { .. } => None,
        };
        if let Some((partition, offset, value)) = observed {
            at.entry((partition, offset)).or_default().insert(value);
            places.entry(value).or_default().insert((partition, offset));
        }
    }

    for ((partition, offset), values) in &at {
        if values.len() > 1 {
            report.anomalies.push(Anomaly::InconsistentOffsets {
                partition: *partition,
                offset: *offset,
                values: values.iter().map(|v| v.to_string()).collect(),
            });
        }
    }
    let mut duplicates: Vec<(&str, &BTreeSet<(i32, i64)>)> = places
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(v, p)| (*v, p))
        .collect();
    duplicates.sort();
    for (value, p) in duplicates {
        report.anomalies.push(Anomaly::Duplicate {
            value: value.to_string(),
            at: p.iter().copied().collect(),
        });
    }

    for (partition, offset, value) in acks {
        if !final_values.contains_key(value) {
            let later_offset_survives = final_log
                .get(&partition)
                .is_some_and(|log| log.range(offset + 1..).next().is_some());
            report.anomalies.push(Anomaly::Lost {
                partition,
                offset,
                value: value.to_string(),
                later_offset_survives,
            });
        }
    }

    let mut last_read: HashMap<(&str, i32), i64> = HashMap::new();
    for (reader, partition, offset, value) in reads {
        let final_value = final_log
            .get(&partition)
            .and_then(|log| log.get(&offset))
            .copied();
        if final_value != Some(value) {
            report.anomalies.push(Anomaly::TruncatedRead {
                reader: reader.to_string(),
                partition,
                offset,
                value: value.to_string(),
                final_value: final_value.map(str::to_string),
            });
        }
        if reader.starts_with("assign") {
            if let Some(&previous) = last_read.get(&(reader, partition))
                && offset <= previous
            {
                report.anomalies.push(Anomaly::NonmonotonicPoll {
                    reader: reader.to_string(),
                    partition,
                    previous,
                    offset,
                });
            }
            last_read.insert((reader, partition), offset);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(partition: i32, offset: i64, value: &str) -> Event {
        Event::Ack {
            t: 0,
            partition,
            offset,
            value: value.into(),
        }
    }
    fn read(reader: &str, partition: i32, offset: i64, value: &str) -> Event {
        Event::Read {
            t: 0,
            reader: reader.into(),
            partition,
            offset,
            value: value.into(),
        }
    }
    fn drain(partition: i32, offset: i64, value: &str) -> Event {
        Event::Drain {
            partition,
            offset,
            value: value.into(),
        }
    }

    /// Three acked sends, read in order, all in the final log.
    fn clean() -> Vec<Event> {
        vec![
            ack(0, 0, "a"),
            ack(0, 1, "b"),
            ack(1, 0, "c"),
            read("assign-1", 0, 0, "a"),
            read("assign-1", 0, 1, "b"),
            read("assign-1", 1, 0, "c"),
            drain(0, 0, "a"),
            drain(0, 1, "b"),
            drain(1, 0, "c"),
        ]
    }

    #[test]
    fn checker_passes_a_clean_history() {
        let report = check(&clean());
        assert!(report.is_valid(), "{report}");
        assert_eq!((report.acked, report.reads, report.drained), (3, 3, 3));
    }

    #[test]
    fn checker_reports_a_lost_acknowledged_write() {
        let mut h = clean();
        // The leader acknowledged "d" at 2 and died; the new leader took other writes at 2 and 3.
        h.push(ack(0, 2, "d"));
        h.push(Event::Fail {
            t: 0,
            partition: 0,
            value: "x".into(),
            error: "timed out".into(),
        });
        h.push(drain(0, 2, "e"));
        h.push(drain(0, 3, "f"));
        let report = check(&h);
        assert_eq!(report.lost(), 1, "{report}");
        assert!(report.anomalies.contains(&Anomaly::Lost {
            partition: 0,
            offset: 2,
            value: "d".into(),
            later_offset_survives: true,
        }));
        // The ack and the final log disagree about offset 2 too.
        assert_eq!(report.count("inconsistent-offsets"), 1, "{report}");
        // An indeterminate send missing from the log is no anomaly.
        assert_eq!(report.failed, 1);
    }

    #[test]
    fn checker_reports_a_lost_tail_without_later_offsets() {
        let mut h = clean();
        h.push(ack(1, 1, "z"));
        let report = check(&h);
        assert_eq!(
            report.anomalies,
            vec![Anomaly::Lost {
                partition: 1,
                offset: 1,
                value: "z".into(),
                later_offset_survives: false
            }]
        );
    }

    #[test]
    fn checker_reports_duplicates_and_inconsistent_offsets() {
        let mut h = clean();
        // "b" appended again at 2 (a retry the idempotent producer should have fenced).
        h.push(drain(0, 2, "b"));
        // A reader saw "q" at offset 0 of partition 1, where the final log has "c".
        h.push(read("group-1", 1, 0, "q"));
        let report = check(&h);
        assert_eq!(report.count("duplicate"), 1, "{report}");
        assert_eq!(report.count("inconsistent-offsets"), 1, "{report}");
        assert_eq!(report.count("truncated-read"), 1, "{report}");
        assert_eq!(report.lost(), 0);
    }

    #[test]
    fn an_acknowledgement_without_an_offset_is_no_second_place() {
        let mut h = clean();
        // librdkafka acknowledges a retried batch of an idempotent producer implicitly, offset -1001.
        h.push(ack(0, -1001, "b"));
        let report = check(&h);
        assert!(report.anomalies.is_empty(), "{report}");
        // ... but such a value must still be in the final log.
        h.push(ack(0, -1001, "never-written"));
        assert_eq!(check(&h).lost(), 1);
    }

    #[test]
    fn checker_reports_a_read_that_was_later_truncated() {
        let mut h = clean();
        // Read from an old leader above what survived.
        h.push(read("assign-1", 1, 1, "y"));
        let report = check(&h);
        assert_eq!(
            report.anomalies,
            vec![Anomaly::TruncatedRead {
                reader: "assign-1".into(),
                partition: 1,
                offset: 1,
                value: "y".into(),
                final_value: None
            }]
        );
    }

    #[test]
    fn checker_reports_offsets_going_backwards_for_an_assign_reader_only() {
        let mut h = clean();
        h.push(read("assign-1", 0, 0, "a"));
        h.push(read("group-1", 0, 1, "b"));
        h.push(read("group-1", 0, 0, "a"));
        let report = check(&h);
        assert_eq!(
            report.anomalies,
            vec![Anomaly::NonmonotonicPoll {
                reader: "assign-1".into(),
                partition: 0,
                previous: 1,
                offset: 0
            }]
        );
    }

    #[test]
    fn history_round_trips_through_jsonl() {
        let dir = tempfile::tempdir().expect("temp dir");
        let history = super::super::history::History::create(&dir.path().join("h.jsonl"));
        for e in clean() {
            history.record(&e);
        }
        history.flush();
        assert_eq!(super::super::history::read_history(history.path()), clean());
    }
}
