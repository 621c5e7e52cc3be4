//! Gauges computed at scrape time, written as Prometheus text after the registry's event metrics: partition
//! offsets and sizes from the LogManager, replication health, follower lag and ISR changes from the
//! ReplicaManager and its replica fetcher, producers, open transactions and the last stable offset from the
//! leader partitions, transactional ids by state from the transaction coordinator, groups and lag from the
//! group coordinator and its offset store, connections from the listener, and the process from
//! `/proc/self`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::listener::ConnectionCounts;
use crate::api::Apis;
use crate::metrics::{Scrape, names};

/// Renders one broker's `/metrics` page.
pub struct Scraper {
    apis: Arc<Apis>,
    connections: Arc<ConnectionCounts>,
}

/// Per-partition values by (topic, partition), the partition None when summed per topic.
type PartitionRows<const N: usize> = BTreeMap<(String, Option<i32>), [f64; N]>;

/// Follower lag by (topic, partition or None, replica): records and seconds, each None when unknown.
type FollowerRows = BTreeMap<(String, Option<i32>, i32), (Option<f64>, Option<f64>)>;

/// Follower lags as rows: per partition, or without the partition label summed per topic and follower
/// (records) and the worst of them (seconds).
fn follower_rows(lags: Vec<crate::replica::FollowerLag>, partition_level: bool) -> FollowerRows {
    let mut rows = FollowerRows::new();
    for lag in lags {
        let key = (
            lag.tp.topic,
            partition_level.then_some(lag.tp.partition),
            lag.replica,
        );
        let row = rows.entry(key).or_default();
        if let Some(records) = lag.records {
            row.0 = Some(row.0.unwrap_or(0.0) + records as f64);
        }
        if let Some(seconds) = lag.seconds {
            row.1 = Some(row.1.map_or(seconds, |s: f64| s.max(seconds)));
        }
    }
    rows
}

/// Adds one partition's values to its row: its own with the partition label, its topic's without.
fn add_row<const N: usize>(
    rows: &mut PartitionRows<N>,
    tp: &crate::log::TopicPartition,
    partition_level: bool,
    values: [f64; N],
) {
    let key = (tp.topic.clone(), partition_level.then_some(tp.partition));
    let row = rows.entry(key).or_insert([0.0; N]);
    for (sum, v) in row.iter_mut().zip(values) {
        *sum += v;
    }
}

/// One gauge family per (name, help), the i-th taking the i-th value of every row.
fn partition_gauges<const N: usize>(
    page: &mut Page<'_>,
    rows: &PartitionRows<N>,
    families: [(&str, &str); N],
) {
    for (i, (name, help)) in families.into_iter().enumerate() {
        page.family(name, "gauge", help);
        for ((topic, partition), values) in rows {
            let partition = partition.map(|p| p.to_string());
            let mut labels = vec![("topic", topic.as_str())];
            if let Some(p) = &partition {
                labels.push(("partition", p));
            }
            page.sample(name, &labels, values[i]);
        }
    }
}

impl Scraper {
    pub fn new(apis: Arc<Apis>, connections: Arc<ConnectionCounts>) -> Scraper {
        Scraper { apis, connections }
    }
}

impl Scrape for Scraper {
    /// Folds histogram samples into buckets (see [`crate::metrics::Metrics::run_upkeep`]).
    fn upkeep(&self) {
        self.apis.metrics.run_upkeep();
    }

    /// The metrics page: event metrics, then the state read now. Blocking (reads `/proc`): call it off the
    /// async workers.
    fn render(&self) -> String {
        let metrics = &self.apis.metrics;
        let mut out = metrics.render_registry();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let mut page = Page { out: &mut out };
        page.single(
            names::BUILD_INFO,
            "gauge",
            "Always 1; the version label tells which brook answers.",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        self.logs(&mut page);
        self.transactions(&mut page);
        self.replication(&mut page);
        self.groups(&mut page);
        self.connections(&mut page);
        process(&mut page);
        out
    }
}

impl Scraper {
    fn logs(&self, page: &mut Page<'_>) {
        let apis = &self.apis;
        let partition_level = apis.metrics.partition_level();
        // (topic, partition or None when summed per topic) -> [end, start, hw, size, segments]
        let mut rows: PartitionRows<5> = BTreeMap::new();
        let mut open = 0u64;
        for log in apis.logs.logs() {
            open += 1;
            let tp = log.topic_partition();
            let values = [
                log.log_end_offset() as f64,
                log.log_start_offset() as f64,
                log.high_watermark() as f64,
                log.size_bytes() as f64,
                log.segment_count() as f64,
            ];
            add_row(&mut rows, tp, partition_level, values);
        }
        let families = [
            (
                names::LOG_END_OFFSET,
                "The next offset to be written (summed over partitions without the partition label).",
            ),
            (
                names::LOG_START_OFFSET,
                "The first offset still in the log.",
            ),
            (
                names::LOG_HIGH_WATERMARK,
                "The offset below which consumers may read.",
            ),
            (names::LOG_SIZE, "Bytes of the partition's segment files."),
            (names::LOG_SEGMENTS, "Segments in the partition's log."),
        ];
        partition_gauges(page, &rows, families);
        page.single(
            names::LOG_PARTITIONS,
            "gauge",
            "Partition logs open on this broker.",
            &[],
            open as f64,
        );
        page.single(
            names::LOG_GROUP_COMMITS,
            "counter",
            "Flusher group commits in this process (every broker in it counted).",
            &[],
            crate::log::manager::group_commits_total() as f64,
        );
        page.single(
            names::LOG_GROUP_COMMIT_FLUSHES,
            "counter",
            "Partition flushes done by group commits in this process.",
            &[],
            crate::log::manager::group_commit_flushes_total() as f64,
        );
    }

    /// Producer state and transactions: per partition this broker leads, and the coordinator's ids.
    fn transactions(&self, page: &mut Page<'_>) {
        let apis = &self.apis;
        let partition_level = apis.metrics.partition_level();
        // (topic, partition or None) -> [producers, ongoing, lso, lso lag]
        let mut rows: PartitionRows<4> = BTreeMap::new();
        for partition in apis.replicas.partitions() {
            let tp = partition.topic_partition();
            let producers = partition.log().active_producers();
            let ongoing = producers
                .iter()
                .filter(|p| p.current_txn_start_offset >= 0)
                .count();
            // The high watermark first: the LSO is read after it, so it never exceeds it here.
            let hw = partition.high_watermark();
            let lso = partition.last_stable_offset();
            let values = [
                producers.len() as f64,
                ongoing as f64,
                lso as f64,
                (hw - lso).max(0) as f64,
            ];
            add_row(&mut rows, tp, partition_level, values);
        }
        let families = [
            (
                names::LOG_PRODUCERS,
                "Producer ids whose state the partition keeps (summed over partitions without the partition label).",
            ),
            (
                names::LOG_ONGOING_TRANSACTIONS,
                "Transactions open in the partition (written, no marker yet).",
            ),
            (
                names::LOG_LAST_STABLE_OFFSET,
                "The offset below which read_committed consumers may read.",
            ),
            (
                names::LOG_LAST_STABLE_OFFSET_LAG,
                "High watermark minus last stable offset: records read_committed consumers cannot see yet.",
            ),
        ];
        partition_gauges(page, &rows, families);
        page.family(
            names::TXN_TRANSACTIONAL_IDS,
            "gauge",
            "Transactional ids this broker coordinates, by state.",
        );
        for (state, count) in apis.txn.state_counts() {
            page.sample(
                names::TXN_TRANSACTIONAL_IDS,
                &[("state", state.name())],
                count as f64,
            );
        }
    }

    /// Replication: health counts and ISR changes of this broker, the lag of the followers of partitions it
    /// leads, and the replica fetchers' traffic and lag (absent without fetchers: a single node).
    fn replication(&self, page: &mut Page<'_>) {
        let replicas = &self.apis.replicas;
        let health = replicas.health();
        for (name, help, value) in [
            (
                names::REPLICA_LEADER_PARTITIONS,
                "Partitions this broker leads.",
                health.leader,
            ),
            (
                names::REPLICA_UNDER_REPLICATED,
                "Led partitions whose ISR is smaller than their replica set.",
                health.under_replicated,
            ),
            (
                names::REPLICA_UNDER_MIN_ISR,
                "Led partitions whose ISR is below the effective min ISR (acks=all refused).",
                health.under_min_isr,
            ),
            (
                names::REPLICA_OFFLINE,
                "Partitions assigned here whose log could not be opened or has failed.",
                health.offline,
            ),
        ] {
            page.single(name, "gauge", help, &[], value as f64);
        }
        let changes = replicas.isr_change_counts();
        for (name, help, value) in [
            (
                names::REPLICA_ISR_SHRINKS,
                "ISR shrinks proposed to the controller by this broker as a leader.",
                changes.shrinks,
            ),
            (
                names::REPLICA_ISR_EXPANDS,
                "ISR expansions proposed to the controller by this broker as a leader.",
                changes.expands,
            ),
            (
                names::REPLICA_ISR_CHANGE_FAILURES,
                "ISR changes the controller refused or did not answer.",
                changes.failures,
            ),
        ] {
            page.single(name, "counter", help, &[], value as f64);
        }

        // Without the partition label: records summed per topic and follower, seconds the worst.
        let partition_level = self.apis.metrics.partition_level();
        let lags = follower_rows(replicas.follower_lags(), partition_level);
        for (name, help, pick) in [
            (
                names::REPLICA_FOLLOWER_LAG_RECORDS,
                "Leader log end minus the follower's, for partitions this broker leads.",
                0,
            ),
            (
                names::REPLICA_FOLLOWER_LAG_SECONDS,
                "Seconds since the follower last held all the leader had, for partitions this broker leads.",
                1,
            ),
        ] {
            page.family(name, "gauge", help);
            for ((topic, partition, replica), values) in &lags {
                let Some(value) = (if pick == 0 { values.0 } else { values.1 }) else {
                    continue;
                };
                let partition = partition.map(|p| p.to_string());
                let replica = replica.to_string();
                let mut labels = vec![("topic", topic.as_str())];
                if let Some(p) = &partition {
                    labels.push(("partition", p));
                }
                labels.push(("replica", &replica));
                page.sample(name, &labels, value);
            }
        }

        let Some(fetcher) = replicas.fetcher_stats() else {
            return;
        };
        page.single(
            names::REPLICA_FETCHER_BYTES,
            "counter",
            "Record batch bytes the replica fetchers fetched from leaders.",
            &[],
            fetcher.bytes_fetched as f64,
        );
        page.single(
            names::REPLICA_FETCHER_RECORDS,
            "counter",
            "Records the replica fetchers fetched from leaders.",
            &[],
            fetcher.records_fetched as f64,
        );
        let mut rows: PartitionRows<1> = BTreeMap::new();
        for (tp, lag) in &fetcher.partition_lag {
            add_row(&mut rows, tp, partition_level, [*lag as f64]);
        }
        partition_gauges(
            page,
            &rows,
            [(
                names::REPLICA_FETCHER_LAG,
                "How far this broker's replica of a followed partition is behind its leader.",
            )],
        );
    }

    fn groups(&self, page: &mut Page<'_>) {
        let apis = &self.apis;
        let groups = apis.groups.member_counts();
        page.family(
            names::GROUP_STATE,
            "gauge",
            "1 for the consumer group's current state.",
        );
        for (group, _) in &groups {
            page.sample(
                names::GROUP_STATE,
                &[("group", &group.group_id), ("state", group.state.name())],
                1.0,
            );
        }
        page.family(
            names::GROUP_MEMBERS,
            "gauge",
            "Members of the consumer group.",
        );
        for (group, members) in &groups {
            page.sample(
                names::GROUP_MEMBERS,
                &[("group", &group.group_id)],
                *members as f64,
            );
        }

        let partition_level = apis.metrics.partition_level();
        // (group, topic, partition or None) -> (committed, lag)
        let mut rows: BTreeMap<(String, String, Option<i32>), (f64, f64)> = BTreeMap::new();
        let store = apis.groups.store();
        for group in store.groups_with_offsets() {
            for (tp, committed) in store.fetch_all(&group) {
                let Some(log) = apis.logs.get(&tp) else {
                    continue;
                };
                let lag = (log.high_watermark() - committed.offset).max(0);
                let key = (
                    group.clone(),
                    tp.topic.clone(),
                    partition_level.then_some(tp.partition),
                );
                let row = rows.entry(key).or_default();
                row.0 += committed.offset as f64;
                row.1 += lag as f64;
            }
        }
        for (name, help, pick) in [
            (
                names::GROUP_COMMITTED_OFFSET,
                "The group's committed offset.",
                0,
            ),
            (
                names::GROUP_LAG,
                "High watermark minus the group's committed offset.",
                1,
            ),
        ] {
            page.family(name, "gauge", help);
            for ((group, topic, partition), (committed, lag)) in &rows {
                let partition = partition.map(|p| p.to_string());
                let mut labels = vec![("group", group.as_str()), ("topic", topic.as_str())];
                if let Some(p) = &partition {
                    labels.push(("partition", p));
                }
                page.sample(name, &labels, if pick == 0 { *committed } else { *lag });
            }
        }
    }

    fn connections(&self, page: &mut Page<'_>) {
        let c = &self.connections;
        let accepted = c.accepted.load(Ordering::Acquire);
        let closed = c.closed.load(Ordering::Acquire);
        page.single(
            names::CONNECTIONS_OPEN,
            "gauge",
            "Client connections open now.",
            &[],
            accepted.saturating_sub(closed) as f64,
        );
        page.single(
            names::CONNECTIONS_ACCEPTED,
            "counter",
            "Client connections accepted.",
            &[],
            accepted as f64,
        );
        page.single(
            names::CONNECTIONS_CLOSED,
            "counter",
            "Client connections closed after being accepted.",
            &[],
            closed as f64,
        );
        page.single(
            names::CONNECTIONS_REJECTED,
            "counter",
            "Connections closed at once because max.connections.per.ip was reached.",
            &[],
            c.rejected.load(Ordering::Relaxed) as f64,
        );
        page.single(
            names::FETCH_PARKED,
            "gauge",
            "Fetch requests parked in a long poll now.",
            &[],
            self.apis.parked_fetches.load(Ordering::Relaxed) as f64,
        );
    }
}

/// The process's memory, CPU and file descriptors, from `/proc/self` (absent where there is no procfs).
fn process(page: &mut Page<'_>) {
    if let Some(stat) = proc_stat() {
        page.single(
            names::PROCESS_RESIDENT_MEMORY,
            "gauge",
            "Resident set size of the brook process.",
            &[],
            stat.resident_bytes,
        );
        page.single(
            names::PROCESS_CPU,
            "counter",
            "User and system CPU time of the brook process.",
            &[],
            stat.cpu_seconds,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries.
        let open = fds.count().saturating_sub(1);
        page.single(
            names::PROCESS_OPEN_FDS,
            "gauge",
            "File descriptors open in the brook process.",
            &[],
            open as f64,
        );
    }
    if let Some(max) = max_fds() {
        page.single(
            names::PROCESS_MAX_FDS,
            "gauge",
            "Soft limit on the process's open file descriptors.",
            &[],
            max,
        );
    }
}

struct ProcStat {
    resident_bytes: f64,
    cpu_seconds: f64,
}

/// utime, stime (clock ticks) and rss (pages) from `/proc/self/stat`.
fn proc_stat() -> Option<ProcStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let (utime, stime, rss) = (field(14)?, field(15)?, field(24)?);
    let (ticks, page_size) = system_units()?;
    Some(ProcStat {
        resident_bytes: rss * page_size,
        cpu_seconds: (utime + stime) / ticks,
    })
}

/// Clock ticks per second and the page size.
fn system_units() -> Option<(f64, f64)> {
    // SAFETY: sysconf only reads system constants; it has no memory-safety preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (ticks > 0 && page > 0).then_some((ticks as f64, page as f64))
}

/// The soft "Max open files" limit from `/proc/self/limits` (None when unlimited or unreadable).
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Prometheus text exposition format (version 0.0.4) written into a String.
struct Page<'a> {
    out: &'a mut String,
}

impl Page<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_label_value(self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.family(name, kind, help);
        self.sample(name, labels, value);
    }
}

/// Label values may hold anything a client sent (group ids): escape `\`, `"` and newlines.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_lag_is_summed_per_topic_without_the_partition_label() {
        use crate::log::TopicPartition;
        use crate::replica::FollowerLag;
        let lag = |partition, replica, records, seconds| FollowerLag {
            tp: TopicPartition::new("t", partition),
            replica,
            records,
            seconds,
        };
        let lags = vec![
            lag(0, 2, Some(5), Some(1.0)),
            lag(1, 2, Some(7), Some(3.0)),
            lag(1, 3, None, None),
        ];
        let per_partition = follower_rows(lags.clone(), true);
        assert_eq!(per_partition.len(), 3);
        assert_eq!(
            per_partition[&("t".to_string(), Some(1), 3)],
            (None, None),
            "unknown stays unknown"
        );
        let per_topic = follower_rows(lags, false);
        assert_eq!(
            per_topic[&("t".to_string(), None, 2)],
            (Some(12.0), Some(3.0))
        );
        assert_eq!(per_topic[&("t".to_string(), None, 3)], (None, None));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        Page { out: &mut out }.sample("m", &[("group", "a\"b\\c\nd")], 2.0);
        assert_eq!(out, "m{group=\"a\\\"b\\\\c\\nd\"} 2\n");
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let stat = proc_stat().expect("/proc/self/stat is readable on Linux");
        assert!(stat.resident_bytes > 0.0);
        assert!(stat.cpu_seconds >= 0.0);
        assert!(max_fds().is_some_and(|m| m > 0.0));
    }
}
