//! LogManager: one data directory, the partition logs in it, their checkpoints, and the flusher thread.
//!
//! Start-up reads `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
//! `replication-offset-checkpoint` (high watermarks) and the clean-shutdown
//! marker `.kafka_cleanshutdown`, then deletes the marker so that a crash from then on is seen as unclean at
//! the next start. As Kafka's, the marker holds the broker epoch of the run that wrote it
//! (`{"version":0,"brokerEpoch":N}`): the next registration names it as its previous epoch, so the
//! controller can tell a clean restart from a crash (KIP-966). Partitions load lazily through `get_or_create`, recovering when the last stop was unclean.
//!
//! The flusher is a plain thread (fsync must not block async workers). Appenders hand it requests through a
//! bounded channel; it does group commit: take every pending request, fsync each distinct partition once
//! (several partitions in parallel), then advance their recovery points (and high watermarks of durable
//! logs). The same thread applies `flush.ms` on a timer and rewrites the recovery point checkpoint
//! periodically so that an unclean restart scans little.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::log::checkpoint::{
    HIGH_WATERMARK_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
    read_offset_checkpoint, sync_dir, write_offset_checkpoint,
};
use crate::log::cleaner::{LogCleaner, cleaner_loop};
use crate::log::error::LogError;
use crate::log::partition_log::{LoadParams, PartitionLog};
use crate::log::retention::{BackgroundSignal, retention_loop};
use crate::log::{CleanerConfig, LogConfig, TopicPartition, lock};

/// Kafka's clean-shutdown marker file name.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
/// Suffix of partition directories being deleted.
pub const DELETE_DIR_SUFFIX: &str = "-delete";
/// Most flush requests one group commit takes from the channel; the rest wait for the next commit.
const MAX_COMMIT_PARTITIONS: usize = 4096;
/// How many partitions one group commit fsyncs at once. Concurrent fsyncs of different files share the
/// filesystem's journal commits, so a commit of up to this many partitions takes about one fsync's time:
/// `benches/durable.rs` (16 partitions) measured twice the commits/s and records/s with 16 as with 4.
const FLUSH_PARALLELISM: usize = 16;
/// How often the flusher rewrites the recovery point checkpoint (Kafka's
/// `log.flush.offset.checkpoint.interval.ms` default).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Longest sleep of the flusher between timer checks.
const MAX_TICK: Duration = Duration::from_secs(1);
/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// How often `get` retries a partition that could not be opened for lack of disk space.
const SPACE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Group commits (flusher rounds that flushed requested partitions) in this process, every LogManager counted.
static GROUP_COMMITS_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Partition flushes done by those group commits.
static GROUP_COMMIT_FLUSHES_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Group commits since the process started (a counter, for metrics and benchmarks): each one flushes every
/// partition whose flush was requested while the previous one ran.
pub fn group_commits_total() -> u64 {
    GROUP_COMMITS_TOTAL.load(Ordering::Relaxed)
}

/// Partitions flushed by group commits since the process started (a counter; a partition costs an fdatasync
/// unless an earlier flush covered its data). Divided by [`group_commits_total`]: partitions per commit.
pub fn group_commit_flushes_total() -> u64 {
    GROUP_COMMIT_FLUSHES_TOTAL.load(Ordering::Relaxed)
}

/// Messages to the flusher thread.
#[derive(Debug)]
pub(crate) enum FlusherMsg {
    Flush(Weak<PartitionLog>),
    Stop,
}

/// State shared with the flusher thread.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    logs: Mutex<HashMap<TopicPartition, Arc<PartitionLog>>>,
    /// Checkpoint contents: what was read at start, updated from loaded logs on every write. Keeps entries
    /// of partitions not loaded in this run (but see `forget_unrecovered`).
    checkpoints: Mutex<Checkpoints>,
    /// Where flushes are timed (the broker's metrics), once set.
    flushes: std::sync::OnceLock<metrics::Histogram>,
}

#[derive(Debug, Default)]
struct Checkpoints {
    recovery_points: BTreeMap<TopicPartition, i64>,
    log_start_offsets: BTreeMap<TopicPartition, i64>,
    high_watermarks: BTreeMap<TopicPartition, i64>,
}

impl Shared {
    fn logs_snapshot(&self) -> Vec<Arc<PartitionLog>> {
        lock(&self.logs).values().cloned().collect()
    }

    /// After an unclean start, partitions not loaded in this run were never recovered: their recovery points
    /// predate the crash and may sit below a torn or corrupt tail. Dropping them makes the next start
    /// recover those partitions fully even though it finds the clean-shutdown marker. Log start offsets stay.
    fn forget_unrecovered(&self) {
        let logs = lock(&self.logs);
        let mut cp = lock(&self.checkpoints);
        let before = cp.recovery_points.len();
        cp.recovery_points.retain(|tp, _| logs.contains_key(tp));
        let dropped = before - cp.recovery_points.len();
        if dropped > 0 {
            tracing::info!(
                partitions = dropped,
                "partitions not recovered in this run will recover fully at the next start"
            );
        }
    }

    /// Writes the checkpoints from the loaded logs merged over what was on disk.
    fn write_checkpoints(&self) -> Result<(), LogError> {
        let logs = self.logs_snapshot();
        let mut cp = lock(&self.checkpoints);
        for log in logs {
            cp.recovery_points
                .insert(log.topic_partition().clone(), log.recovery_point());
            cp.log_start_offsets
                .insert(log.topic_partition().clone(), log.log_start_offset());
            cp.high_watermarks
                .insert(log.topic_partition().clone(), log.high_watermark());
        }
        write_offset_checkpoint(
            &self.dir.join(HIGH_WATERMARK_CHECKPOINT),
            &cp.high_watermarks,
        )?;
        write_offset_checkpoint(
            &self.dir.join(RECOVERY_POINT_CHECKPOINT),
            &cp.recovery_points,
        )?;
        write_offset_checkpoint(
            &self.dir.join(LOG_START_OFFSET_CHECKPOINT),
            &cp.log_start_offsets,
        )?;
        Ok(())
    }
}

/// The metadata quorum's log directory (Kafka's name), which may share the data directory: not a partition
/// of this log manager.
pub const METADATA_LOG_TOPIC: &str = "__cluster_metadata";

/// Owner of a data directory's partition logs.
#[derive(Debug)]
pub struct LogManager {
    shared: Arc<Shared>,
    default_config: LogConfig,
    had_clean_shutdown: bool,
    /// The broker epoch the clean-shutdown marker held (-1: no marker, or one without an epoch).
    previous_broker_epoch: i64,
    /// The broker epoch to write into the marker at a clean shutdown (-1 until a cluster member registers).
    broker_epoch: AtomicI64,
    /// Bounded by construction, not by capacity: each partition has at most one flush request queued (see
    /// `PartitionLog::request_flush`), so it never holds more than one message per open partition plus a
    /// Stop. Unlike a fixed capacity, sending never blocks the appender (an async worker thread).
    flush_tx: Sender<FlusherMsg>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// True once shut down or abandoned: no more partitions are opened.
    stopped: Mutex<bool>,
    /// Partitions that could not be created or loaded because the disk was full, with their config and the
    /// earliest next try: `get` retries them, so they come online once space is freed, without a restart.
    awaiting_space: Mutex<HashMap<TopicPartition, (LogConfig, Instant)>>,
    /// Retention and cleaner threads, once started (see `start_background`).
    background: Mutex<Option<Background>>,
    /// Partitions whose load failed in this run, with the reason: not retried (a damaged log is not
    /// re-read, nor its error logged, on every lookup) until the partition is deleted or brook restarts.
    offline: Mutex<HashMap<TopicPartition, String>>,
    clock: Clock,
}

/// The retention thread and the log cleaner thread, with what stops and wakes them.
#[derive(Debug)]
struct Background {
    signal: Arc<BackgroundSignal>,
    cleaner: Option<Arc<LogCleaner>>,
    threads: Vec<JoinHandle<()>>,
}

/// Kafka's legal topic names: 1..=249 of `[A-Za-z0-9._-]`, not "." or "..". Also keeps paths inside the
/// data directory.
fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_NAME_LEN
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Parses a partition directory name `<topic>-<partition>`.
fn parse_partition_dir(name: &str) -> Option<TopicPartition> {
    if name.ends_with(DELETE_DIR_SUFFIX) {
        return None;
    }
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    (partition >= 0 && valid_topic_name(topic) && partition.to_string() == name[topic.len() + 1..])
        .then(|| TopicPartition::new(topic, partition))
}

/// The broker epoch in a clean-shutdown marker; -1 for an empty marker (older brooks wrote it empty) or one
/// that does not parse (the marker still says the logs need no recovery).
fn read_clean_shutdown_epoch(path: &Path) -> i64 {
    #[derive(serde::Deserialize)]
    struct Marker {
        #[serde(rename = "brokerEpoch")]
        broker_epoch: i64,
    }
    // The marker is tiny; a larger one is not ours and is read no further.
    let mut body = Vec::new();
    let read = fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut body));
    match read {
        Ok(_) => serde_json::from_slice::<Marker>(&body).map_or(-1, |m| m.broker_epoch),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable clean shutdown marker");
            -1
        }
    }
}

fn read_checkpoint_or_warn(path: &Path) -> BTreeMap<TopicPartition, i64> {
    match read_offset_checkpoint(path) {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable checkpoint; affected partitions recover fully");
            BTreeMap::new()
        }
    }
}

impl LogManager {
    /// Opens the data directory (creating it), reads the checkpoints and the clean-shutdown marker, deletes
    /// the marker, removes leftovers of interrupted partition deletions and starts the flusher thread.
    pub fn open(dir: &Path, default_config: LogConfig) -> Result<Arc<LogManager>, LogError> {
        Self::open_with_clock(dir, default_config, Clock::system())
    }

    /// `open`, with the clock its logs stamp and compare times with (a manual one in tests).
    pub fn open_with_clock(
        dir: &Path,
        default_config: LogConfig,
        clock: Clock,
    ) -> Result<Arc<LogManager>, LogError> {
        fs::create_dir_all(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let had_clean_shutdown = marker.exists();
        let previous_broker_epoch = if had_clean_shutdown {
            read_clean_shutdown_epoch(&marker)
        } else {
            -1
        };
        let checkpoints = Checkpoints {
            recovery_points: read_checkpoint_or_warn(&dir.join(RECOVERY_POINT_CHECKPOINT)),
            log_start_offsets: read_checkpoint_or_warn(&dir.join(LOG_START_OFFSET_CHECKPOINT)),
            high_watermarks: read_checkpoint_or_warn(&dir.join(HIGH_WATERMARK_CHECKPOINT)),
        };
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(DELETE_DIR_SUFFIX)
                && entry.file_type()?.is_dir()
                && let Err(e) = fs::remove_dir_all(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove deleted partition");
            }
        }
        if had_clean_shutdown {
            fs::remove_file(&marker)?;
        }
        sync_dir(dir)?;
        if !had_clean_shutdown {
            tracing::info!(dir = %dir.display(), "no clean shutdown marker: partitions recover from their recovery points");
        }

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            logs: Mutex::new(HashMap::new()),
            checkpoints: Mutex::new(checkpoints),
            flushes: Default::default(),
        });
        let (flush_tx, flush_rx) = channel();
        let thread_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("brook-log-flusher".into())
            .spawn(move || flusher_loop(thread_shared, flush_rx))?;
        Ok(Arc::new(LogManager {
            shared,
            default_config,
            had_clean_shutdown,
            previous_broker_epoch,
            broker_epoch: AtomicI64::new(-1),
            flush_tx,
            flusher: Mutex::new(Some(flusher)),
            stopped: Mutex::new(false),
            awaiting_space: Mutex::new(HashMap::new()),
            background: Mutex::new(None),
            offline: Mutex::new(HashMap::new()),
            clock,
        }))
    }

    /// The wall clock of this data directory's logs, retention and cleaner.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }
    /// Whether the previous run left the clean-shutdown marker.
    pub fn had_clean_shutdown(&self) -> bool {
        self.had_clean_shutdown
    }

    /// The broker epoch the previous run wrote at its clean shutdown; -1 when it did not stop cleanly (or
    /// was not a registered cluster member). Sent as BrokerRegistration's `previous_broker_epoch`.
    pub fn previous_broker_epoch(&self) -> i64 {
        self.previous_broker_epoch
    }

    /// The broker epoch this run holds, to be written at a clean shutdown.
    pub fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Loads (with recovery when needed) or creates `<dir>/<topic>-<partition>/`. A partition that cannot be
    /// loaded is reported as `Offline`; the others are unaffected.
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, LogError> {
        self.open_log(tp, config, false)
    }

    /// `get_or_create`; with `retry` only while the partition still awaits space (checked under the map
    /// lock, which `delete` also holds, so a retry never brings back a deleted partition).
    fn open_log(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        retry: bool,
    ) -> Result<Arc<PartitionLog>, LogError> {
        if !valid_topic_name(&tp.topic) || tp.partition < 0 {
            return Err(LogError::Offline(format!(
                "{tp}: not a valid topic partition name"
            )));
        }
        // Loading holds the map lock so that one partition is never loaded twice.
        let mut logs = lock(&self.shared.logs);
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        if retry && !lock(&self.awaiting_space).contains_key(tp) {
            return Err(LogError::Offline(format!("{tp}: deleted")));
        }
        if *lock(&self.stopped) {
            return Err(LogError::Offline(format!("{tp}: log manager is shut down")));
        }
        let dir = self.shared.dir.join(tp.to_string());
        let existed = dir.exists();
        let (recovery_point, log_start_offset, high_watermark) = {
            let cp = lock(&self.shared.checkpoints);
            (
                cp.recovery_points.get(tp).copied(),
                cp.log_start_offsets.get(tp).copied(),
                cp.high_watermarks.get(tp).copied(),
            )
        };
        if let Some(why) = lock(&self.offline).get(tp) {
            return Err(LogError::Offline(why.clone()));
        }
        let started = Instant::now();
        let loaded = PartitionLog::load(LoadParams {
            dir,
            tp: tp.clone(),
            config: config.clone(),
            had_clean_shutdown: self.had_clean_shutdown,
            recovery_point,
            log_start_offset,
            flusher: Some(self.flush_tx.clone()),
            clock: self.clock.clone(),
        })
        .and_then(|log| {
            if !existed {
                sync_dir(&self.shared.dir)?;
            }
            Ok(log)
        });
        let log = match loaded {
            Ok(log) => log,
            Err(e) => {
                let disk_full = e.is_disk_full();
                let why = match e {
                    LogError::Offline(why) => why,
                    other => format!("{tp}: {other}"),
                };
                if disk_full {
                    // Nothing is damaged: `get` tries again once space may have been freed.
                    if !retry {
                        tracing::error!(partition = %tp, error = %why,
                            "partition could not be opened: disk full; it comes online once space is freed");
                    }
                    lock(&self.awaiting_space)
                        .insert(tp.clone(), (config, Instant::now() + SPACE_RETRY_INTERVAL));
                } else {
                    // The one report of this partition's failure: later lookups get the same error silently.
                    tracing::error!(partition = %tp, error = %why,
                        "partition could not be loaded; it stays offline (KAFKA_STORAGE_ERROR) until brook restarts");
                    lock(&self.offline).insert(tp.clone(), why.clone());
                }
                return Err(LogError::Offline(why));
            }
        };
        // A log starts with everything it holds below its high watermark; the checkpoint says how much of
        // it was committed when last written (a replica's partition raises it again by its own rule: the
        // leader's over the in-sync replicas, a follower's from its leader; a lone replica's at once).
        if let Some(high_watermark) = high_watermark {
            log.lower_high_watermark(high_watermark.max(log.log_start_offset()));
        }
        tracing::debug!(partition = %tp, existed, log_end_offset = log.log_end_offset(),
            scanned_batches = log.recovery_batches_scanned(), elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded partition log");
        logs.insert(tp.clone(), log.clone());
        lock(&self.awaiting_space).remove(tp);
        Ok(log)
    }

    /// The partition's log if it is open. A partition that could not be opened for lack of disk space is
    /// tried again here, at most once per SPACE_RETRY_INTERVAL.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<PartitionLog>> {
        if let Some(log) = lock(&self.shared.logs).get(tp).cloned() {
            return Some(log);
        }
        let config = {
            let mut waiting = lock(&self.awaiting_space);
            let (config, next_try) = waiting.get_mut(tp)?;
            let now = Instant::now();
            if now < *next_try {
                return None;
            }
            *next_try = now + SPACE_RETRY_INTERVAL;
            config.clone()
        };
        tracing::info!(partition = %tp, "retrying a partition that found the disk full");
        self.open_log(tp, config, true).ok()
    }

    /// Partitions whose directories are on disk (loaded or not), sorted; not the metadata quorum's
    /// `__cluster_metadata-0`.
    pub fn partitions_on_disk(&self) -> Result<Vec<TopicPartition>, LogError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.shared.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(tp) = entry.file_name().to_str().and_then(parse_partition_dir)
                && tp.topic != METADATA_LOG_TOPIC
            {
                out.push(tp);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the partition's log, loaded or not: close it (waking parked readers), forget its
    /// checkpoint entries, rename `<topic>-<p>` to `<topic>-<p>.<uuid>-delete` (atomic: a crash leaves no
    /// half-deleted partition under its real name), then delete that. Ok when nothing was there, so it also
    /// clears a stale directory left by an earlier incarnation before the partition is created again.
    pub fn delete(&self, tp: &TopicPartition) -> Result<(), LogError> {
        if !valid_topic_name(&tp.topic) || tp.partition < 0 {
            return Err(LogError::Offline(format!(
                "{tp}: not a valid topic partition name"
            )));
        }
        let dir = self.shared.dir.join(tp.to_string());
        let doomed = {
            // Held until the rename: a concurrent get_or_create waits, then creates the partition afresh
            // instead of loading the old files.
            let mut logs = lock(&self.shared.logs);
            if let Some(log) = logs.remove(tp) {
                log.mark_closed();
            }
            lock(&self.awaiting_space).remove(tp);
            lock(&self.offline).remove(tp);
            if let Some(cleaner) = lock(&self.background)
                .as_ref()
                .and_then(|b| b.cleaner.clone())
            {
                cleaner.forget(tp);
            }
            {
                let mut cp = lock(&self.shared.checkpoints);
                cp.recovery_points.remove(tp);
                cp.log_start_offsets.remove(tp);
                cp.high_watermarks.remove(tp);
            }
            // Not `exists()`: it follows symlinks, and a dangling one must go too.
            match fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let doomed = self.shared.dir.join(format!(
                "{tp}.{}{DELETE_DIR_SUFFIX}",
                uuid::Uuid::new_v4().simple()
            ));
            fs::rename(&dir, &doomed)?;
            doomed
        };
        sync_dir(&self.shared.dir)?;
        if fs::symlink_metadata(&doomed)?.is_dir() {
            fs::remove_dir_all(&doomed)?;
        } else {
            fs::remove_file(&doomed)?;
        }
        Ok(())
    }

    /// Truncates the partition's log at `offset` (see [`PartitionLog::truncate_to`]) and lowers the
    /// cleaner's checkpoint with it. Returns the new log end offset.
    pub fn truncate_to(&self, tp: &TopicPartition, offset: i64) -> Result<i64, LogError> {
        let log = self.loaded(tp)?;
        let end = log.truncate_to(offset)?;
        self.after_truncation(tp, end)?;
        Ok(end)
    }

    /// Empties the partition's log and starts it at `offset` (see
    /// [`PartitionLog::truncate_fully_and_start_at`]), lowering the cleaner's checkpoint with it.
    pub fn truncate_fully_and_start_at(
        &self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<(), LogError> {
        let log = self.loaded(tp)?;
        log.truncate_fully_and_start_at(offset)?;
        self.after_truncation(tp, offset)
    }

    /// The checkpoints must not name offsets the log no longer has: the cleaner's is lowered, and the
    /// recovery points and log start offsets are rewritten at once (as Kafka does after a truncation).
    fn after_truncation(&self, tp: &TopicPartition, end: i64) -> Result<(), LogError> {
        if let Some(cleaner) = self.cleaner() {
            cleaner.maybe_truncate_checkpoint(tp, end);
        }
        self.checkpoint()
    }

    fn loaded(&self, tp: &TopicPartition) -> Result<Arc<PartitionLog>, LogError> {
        self.get(tp)
            .ok_or_else(|| LogError::Offline(format!("{tp}: no loaded log")))
    }

    /// The log cleaner, once started with `log.cleaner.enable`.
    pub fn cleaner(&self) -> Option<Arc<LogCleaner>> {
        lock(&self.background)
            .as_ref()
            .and_then(|b| b.cleaner.clone())
    }

    /// Times every flush that writes something (the recovery point moves) into `histogram` from now on.
    /// Set once; later calls are ignored.
    pub fn observe_flushes(&self, histogram: metrics::Histogram) {
        let _ = self.shared.flushes.set(histogram);
    }

    /// Starts the retention thread and, with `log.cleaner.enable`, the log cleaner thread. Both hold only a
    /// weak reference to the manager; `shutdown`, `abandon` and drop stop them. Idempotent.
    pub fn start_background(self: &Arc<Self>, config: CleanerConfig) -> Result<(), LogError> {
        let mut bg = lock(&self.background);
        if bg.is_some() || *lock(&self.stopped) {
            return Ok(());
        }
        let signal = Arc::new(BackgroundSignal::default());
        let mut threads = Vec::new();
        let interval = Duration::from_millis(config.retention_check_interval_ms.max(1));
        let expiry = Duration::from_millis(config.producer_id_expiration_check_interval_ms.max(1));
        let (weak, sig) = (Arc::downgrade(self), signal.clone());
        threads.push(
            std::thread::Builder::new()
                .name("brook-log-retention".into())
                .spawn(move || retention_loop(weak, sig, interval, expiry))?,
        );
        let cleaner = config.enable.then(|| {
            Arc::new(LogCleaner::new(
                self.dir(),
                config.clone(),
                self.clock.clone(),
            ))
        });
        if let Some(cleaner) = &cleaner {
            let (weak, sig, c) = (Arc::downgrade(self), signal.clone(), cleaner.clone());
            let spawned = std::thread::Builder::new()
                .name("brook-log-cleaner".into())
                .spawn(move || cleaner_loop(weak, c, sig));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    signal.stop();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e.into());
                }
            }
        }
        *bg = Some(Background {
            signal,
            cleaner,
            threads,
        });
        Ok(())
    }

    /// Asks the retention thread for a pass now (after DeleteRecords moved a log start offset).
    pub fn wake_retention(&self) {
        if let Some(bg) = lock(&self.background).as_ref() {
            bg.signal.wake_retention();
        }
    }

    fn stop_background(&self) {
        let bg = lock(&self.background).take();
        if let Some(bg) = bg {
            bg.signal.stop();
            for t in bg.threads {
                // The last reference to the manager may be dropped by one of these threads itself.
                if t.thread().id() == std::thread::current().id() {
                    continue;
                }
                if t.join().is_err() {
                    tracing::error!("a log background thread panicked");
                }
            }
        }
    }

    /// Every loaded partition log.
    pub fn logs(&self) -> Vec<Arc<PartitionLog>> {
        self.shared.logs_snapshot()
    }

    /// Rewrites both checkpoints now (the flusher also does it every minute).
    pub fn checkpoint(&self) -> Result<(), LogError> {
        self.shared.write_checkpoints()
    }

    fn stop_flusher(&self) {
        let handle = lock(&self.flusher).take();
        if let Some(handle) = handle {
            // Fails only if the thread is already gone; joining then returns at once.
            let _ = self.flush_tx.send(FlusherMsg::Stop);
            if handle.join().is_err() {
                tracing::error!("log flusher thread panicked");
            }
        }
    }

    /// Clean shutdown: stop the flusher, flush and close every log (indexes trimmed), write both checkpoints,
    /// then write the clean-shutdown marker (fsync file and directory). If any step fails, or any partition's
    /// write or fsync failed during the run, the marker is not written, so the next start recovers. After an
    /// unclean start the recovery points of partitions not loaded in this run are dropped first (see
    /// `Shared::forget_unrecovered`). Idempotent.
    pub fn shutdown(&self) -> Result<(), LogError> {
        {
            let mut stopped = lock(&self.stopped);
            if *stopped {
                return Ok(());
            }
            *stopped = true;
        }
        self.stop_background();
        self.stop_flusher();
        let mut first_error = None;
        for log in self.shared.logs_snapshot() {
            if let Err(e) = log.close() {
                tracing::error!(partition = %log.topic_partition(), error = %e, "flush at shutdown failed");
                first_error.get_or_insert(e);
            }
        }
        if !self.had_clean_shutdown {
            self.shared.forget_unrecovered();
        }
        self.shared.write_checkpoints()?;
        if let Some(e) = first_error {
            return Err(e);
        }
        let mut marker = fs::File::create(self.shared.dir.join(CLEAN_SHUTDOWN_FILE))?;
        let contents = format!(
            "{{\"version\":0,\"brokerEpoch\":{}}}",
            self.broker_epoch.load(Ordering::Relaxed)
        );
        std::io::Write::write_all(&mut marker, contents.as_bytes())?;
        marker.sync_all()?;
        sync_dir(&self.shared.dir)?;
        tracing::info!(dir = %self.shared.dir.display(), "log manager shut down cleanly");
        Ok(())
    }

    /// Crash simulation for tests: stop the background thread and refuse further appends, without flushing
    /// or writing checkpoints or the marker. Files are left as a `kill -9` would leave them.
    pub fn abandon(&self) {
        {
            let mut stopped = lock(&self.stopped);
            if *stopped {
                return;
            }
            *stopped = true;
        }
        self.stop_background();
        self.stop_flusher();
        for log in self.shared.logs_snapshot() {
            log.mark_closed();
        }
    }
}

impl Drop for LogManager {
    /// Dropping without `shutdown` is treated like a crash: the thread stops, nothing is flushed.
    fn drop(&mut self) {
        self.stop_background();
        self.stop_flusher();
    }
}

/// The flusher thread: group commit of queued flush requests, `flush.ms`, periodic checkpoints.
fn flusher_loop(shared: Arc<Shared>, rx: Receiver<FlusherMsg>) {
    let mut last_checkpoint = Instant::now();
    let mut next_timer = Instant::now();
    loop {
        let tick = shared
            .logs_snapshot()
            .iter()
            .filter_map(|l| l.config().flush_interval_ms)
            .min()
            .map_or(MAX_TICK, |ms| {
                Duration::from_millis(ms.max(1)).min(MAX_TICK)
            });
        let mut pending: Vec<Arc<PartitionLog>> = Vec::new();
        let mut stop = false;
        let mut take = |msg: FlusherMsg, pending: &mut Vec<Arc<PartitionLog>>| match msg {
            FlusherMsg::Flush(log) => pending.extend(log.upgrade()),
            FlusherMsg::Stop => stop = true,
        };
        let wait = next_timer
            .saturating_duration_since(Instant::now())
            .min(tick);
        match rx.recv_timeout(wait) {
            Ok(msg) => take(msg, &mut pending),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Drain what is queued now (up to a bound) so one round commits all of it.
        for _ in 0..MAX_COMMIT_PARTITIONS {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut pending),
                Err(_) => break,
            }
        }
        if stop {
            return;
        }
        pending.sort_by_key(|l| Arc::as_ptr(l) as usize);
        pending.dedup_by_key(|l| Arc::as_ptr(l) as usize);
        for log in &pending {
            log.take_flush_request();
        }
        group_commit(&pending, shared.flushes.get());
        if !pending.is_empty() {
            GROUP_COMMITS_TOTAL.fetch_add(1, Ordering::Relaxed);
            GROUP_COMMIT_FLUSHES_TOTAL.fetch_add(pending.len() as u64, Ordering::Relaxed);
        }

        let now = Instant::now();
        if now >= next_timer {
            for log in shared.logs_snapshot() {
                if let Err(e) = timed(&log, shared.flushes.get(), |l| l.flush_if_due(now)) {
                    tracing::error!(partition = %log.topic_partition(), error = %e, "timed flush failed");
                }
            }
            next_timer = now + tick;
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
            if let Err(e) = shared.write_checkpoints() {
                tracing::warn!(error = %e, "could not write log checkpoints");
            }
            last_checkpoint = Instant::now();
        }
    }
}

/// Runs a flush of `log`, recording its duration when it wrote something (its recovery point moved), as
/// Kafka's flush statistics count only flushes with data to write.
fn timed(
    log: &PartitionLog,
    flushes: Option<&metrics::Histogram>,
    flush: impl FnOnce(&PartitionLog) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let (before, started) = (log.recovery_point(), Instant::now());
    let result = flush(log);
    if let Some(histogram) = flushes
        && log.recovery_point() > before
    {
        histogram.record(started.elapsed().as_secs_f64());
    }
    result
}

/// Flushes each log once, up to FLUSH_PARALLELISM at a time so that independent fsyncs overlap.
fn group_commit(logs: &[Arc<PartitionLog>], flushes: Option<&metrics::Histogram>) {
    let flush_one = |log: &Arc<PartitionLog>| {
        if let Err(e) = timed(log, flushes, |l| l.flush()) {
            tracing::error!(partition = %log.topic_partition(), error = %e, "flush failed");
        }
    };
    if logs.len() <= 1 {
        logs.iter().for_each(flush_one);
        return;
    }
    let chunk = logs.len().div_ceil(FLUSH_PARALLELISM);
    std::thread::scope(|s| {
        for part in logs.chunks(chunk) {
            let spawned = std::thread::Builder::new()
                .name("brook-log-fsync".into())
                .spawn_scoped(s, move || part.iter().for_each(flush_one));
            if spawned.is_err() {
                // No thread to be had: do this share on the flusher itself.
                part.iter().for_each(flush_one);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::partition::leader_append;

    #[test]
    fn partition_dir_names_parse_on_the_last_dash() {
        assert_eq!(
            parse_partition_dir("orders-0"),
            Some(TopicPartition::new("orders", 0))
        );
        assert_eq!(
            parse_partition_dir("my-topic-12"),
            Some(TopicPartition::new("my-topic", 12))
        );
        assert_eq!(parse_partition_dir("t-0.3f2a-delete"), None);
        assert_eq!(
            parse_partition_dir("t--1"),
            Some(TopicPartition::new("t-", 1))
        );
        assert_eq!(parse_partition_dir("t-01"), None);
        assert_eq!(parse_partition_dir("noparts"), None);
        assert_eq!(parse_partition_dir("-3"), None);
        assert!(!valid_topic_name("../etc"));
        assert!(!valid_topic_name(".."));
        assert!(valid_topic_name("a.b_c-d"));
    }

    fn one_batch() -> bytes::BytesMut {
        bytes::BytesMut::from(&crate::log::record_batch::test_support::batch(2, 10, 0)[..])
    }

    /// A manager on `dir` with `tp` loaded and `batches` batches of 2 records appended.
    fn manager_with(
        dir: &Path,
        tp: &TopicPartition,
        batches: usize,
    ) -> (Arc<LogManager>, Arc<PartitionLog>) {
        let mgr = LogManager::open(dir, LogConfig::default()).unwrap();
        let log = mgr.get_or_create(tp, LogConfig::default()).unwrap();
        for _ in 0..batches {
            leader_append(&log, one_batch(), 0).unwrap();
        }
        (mgr, log)
    }

    #[test]
    fn the_clean_shutdown_marker_carries_the_broker_epoch_to_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(mgr.previous_broker_epoch(), -1, "a new directory");
        mgr.set_broker_epoch(42);
        mgr.shutdown().unwrap();

        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(mgr.previous_broker_epoch(), 42);
        // A crash: no marker, so no epoch either.
        mgr.abandon();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(mgr.previous_broker_epoch(), -1);
        mgr.shutdown().unwrap();

        // An older brook's marker is empty: clean, epoch unknown.
        fs::write(dir.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(mgr.had_clean_shutdown());
        assert_eq!(mgr.previous_broker_epoch(), -1);
        mgr.shutdown().unwrap();
    }

    #[test]
    fn checkpoints_are_written_at_shutdown_and_read_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(!mgr.had_clean_shutdown());
        for p in 0..3 {
            let log = mgr
                .get_or_create(&TopicPartition::new("c", p), LogConfig::default())
                .unwrap();
            for _ in 0..=p {
                leader_append(&log, one_batch(), 0).unwrap();
            }
        }
        mgr.shutdown().unwrap();
        let rp = read_offset_checkpoint(&dir.path().join(RECOVERY_POINT_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert_eq!(rp.get(&TopicPartition::new("c", 2)), Some(&6));
        let text = fs::read_to_string(dir.path().join(LOG_START_OFFSET_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n3\nc 0 0\nc 1 0\nc 2 0\n");
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert!(
            mgr.get_or_create(&TopicPartition::new("c", 9), LogConfig::default())
                .is_err()
        );
        drop(mgr);

        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(mgr.had_clean_shutdown());
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        // Partition 1 is not loaded in this run: its checkpoint entries must survive the next write.
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 2), LogConfig::default())
            .unwrap();
        assert_eq!(log.log_end_offset(), 6);
        mgr.checkpoint().unwrap();
        let rp = read_offset_checkpoint(&dir.path().join(RECOVERY_POINT_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert_eq!(rp.len(), 3);
    }

    #[test]
    fn delete_removes_the_partition_and_disk_listing_ignores_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("old-0.abc-delete")).unwrap();
        fs::write(dir.path().join("not-a-dir-0"), b"x").unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(
            !dir.path().join("old-0.abc-delete").exists(),
            "leftover deletions are finished at open"
        );
        let a = TopicPartition::new("my-topic", 0);
        let b = TopicPartition::new("my-topic", 1);
        let log = mgr.get_or_create(&a, LogConfig::default()).unwrap();
        leader_append(&log, one_batch(), 0).unwrap();
        mgr.get_or_create(&b, LogConfig::default()).unwrap();
        fs::create_dir_all(dir.path().join("gone-3.0123-delete")).unwrap();
        assert_eq!(
            mgr.partitions_on_disk().unwrap(),
            vec![a.clone(), b.clone()]
        );
        mgr.delete(&a).unwrap();
        assert!(mgr.get(&a).is_none());
        assert!(!dir.path().join("my-topic-0").exists());
        assert!(
            matches!(
                leader_append(&log, one_batch(), 0),
                Err(LogError::Offline(_))
            ),
            "deleted log takes no appends"
        );
        assert_eq!(mgr.partitions_on_disk().unwrap(), vec![b]);
        // A re-created partition starts empty.
        let again = mgr.get_or_create(&a, LogConfig::default()).unwrap();
        assert_eq!(again.log_end_offset(), 0);
        mgr.shutdown().unwrap();
    }

    #[test]
    fn partition_that_found_the_disk_full_comes_online_once_space_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let tp = TopicPartition::new("late", 0);
        crate::log::index::fail_next_index_allocation(libc::ENOSPC);
        let err = mgr.get_or_create(&tp, LogConfig::default()).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(
            mgr.get(&tp).is_none(),
            "offline until the retry interval passes"
        );
        // Space is back (the injected failure was one-shot): `get` opens it on a later call.
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = loop {
            if let Some(log) = mgr.get(&tp) {
                break log;
            }
            assert!(Instant::now() < deadline, "partition never came online");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(leader_append(&log, one_batch(), 0).unwrap().base_offset, 0);
        assert!(!lock(&mgr.awaiting_space).contains_key(&tp));

        // A deleted partition is not brought back by a retry.
        let gone = TopicPartition::new("gone", 0);
        crate::log::index::fail_next_index_allocation(libc::ENOSPC);
        assert!(mgr.get_or_create(&gone, LogConfig::default()).is_err());
        assert!(lock(&mgr.awaiting_space).contains_key(&gone));
        mgr.delete(&gone).unwrap();
        assert!(!lock(&mgr.awaiting_space).contains_key(&gone));
        assert!(matches!(
            mgr.open_log(&gone, LogConfig::default(), true),
            Err(LogError::Offline(_))
        ));
        assert!(!dir.path().join("gone-0").exists());
        mgr.shutdown().unwrap();
    }

    #[test]
    fn shutdown_after_a_failed_fsync_reports_it_and_writes_no_clean_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let healthy = mgr
            .get_or_create(&TopicPartition::new("ok", 0), LogConfig::default())
            .unwrap();
        leader_append(&healthy, one_batch(), 0).unwrap();
        let sick = mgr
            .get_or_create(&TopicPartition::new("sick", 0), LogConfig::default())
            .unwrap();
        leader_append(&sick, one_batch(), 0).unwrap();
        sick.inject_fsync_failure();
        assert!(sick.flush().is_err());

        assert!(
            mgr.shutdown().is_err(),
            "shutdown reports the failed partition"
        );
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert!(healthy.is_closed() && !healthy.is_failed());
        let rp = read_offset_checkpoint(&dir.path().join(RECOVERY_POINT_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert_eq!(rp.get(&TopicPartition::new("ok", 0)), Some(&2));
        assert_eq!(rp.get(&TopicPartition::new("sick", 0)), Some(&0));
        drop(mgr);
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(!mgr.had_clean_shutdown(), "the next start recovers");
    }

    #[test]
    fn a_reopened_log_counts_only_its_checkpointed_high_watermark_as_committed() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("hw", 0);
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let log = mgr.get_or_create(&tp, LogConfig::default()).unwrap();
        for _ in 0..3 {
            leader_append(&log, one_batch(), 0).unwrap();
        }
        assert_eq!(log.high_watermark(), 6);
        mgr.shutdown().unwrap();
        let written = read_offset_checkpoint(&dir.path().join(HIGH_WATERMARK_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert_eq!(written.get(&tp), Some(&6), "written at shutdown");

        // As if the replica had taken records its leader had not committed yet.
        write_offset_checkpoint(
            &dir.path().join(HIGH_WATERMARK_CHECKPOINT),
            &BTreeMap::from([(tp.clone(), 2)]),
        )
        .unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let log = mgr.get_or_create(&tp, LogConfig::default()).unwrap();
        assert_eq!((log.high_watermark(), log.log_end_offset()), (2, 6));
        mgr.shutdown().unwrap();
    }

    #[test]
    fn clean_marker_after_an_unclean_start_does_not_cover_partitions_left_unrecovered() {
        use crate::log::segment::{LOG_FILE_SUFFIX, segment_file_name};
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let tp = TopicPartition::new("b", 0);
        // Run 1: a checkpoint while the partition is empty, then rolled segments, then a crash.
        let mgr = LogManager::open(dir.path(), config.clone()).unwrap();
        let log = mgr.get_or_create(&tp, config.clone()).unwrap();
        mgr.checkpoint().unwrap();
        for i in 0..40 {
            let b = crate::log::record_batch::test_support::batch(1, 60, i);
            leader_append(&log, bytes::BytesMut::from(&b[..]), 0).unwrap();
        }
        assert!(log.segment_count() >= 3);
        mgr.abandon();
        drop((log, mgr));
        // The crash damaged a batch in a rolled (non-active) segment whose indexes look fine.
        let part = dir.path().join("b-0");
        let mut bases: Vec<i64> = fs::read_dir(&part)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(LOG_FILE_SUFFIX)
                    .map(|s| s.parse().unwrap())
            })
            .collect();
        bases.sort_unstable();
        let victim = bases[1];
        let path = part.join(segment_file_name(victim, LOG_FILE_SUFFIX));
        let mut bytes = fs::read(&path).unwrap();
        bytes[70] ^= 0xFF; // inside the first batch's record
        fs::write(&path, &bytes).unwrap();

        // Run 2: unclean start that never loads b-0, then a clean shutdown.
        let mgr = LogManager::open(dir.path(), config.clone()).unwrap();
        assert!(!mgr.had_clean_shutdown());
        mgr.get_or_create(&TopicPartition::new("a", 0), config.clone())
            .unwrap();
        mgr.shutdown().unwrap();
        drop(mgr);
        let rp = read_offset_checkpoint(&dir.path().join(RECOVERY_POINT_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert!(rp.contains_key(&TopicPartition::new("a", 0)));
        assert!(
            !rp.contains_key(&tp),
            "unrecovered partition's recovery point dropped"
        );

        // Run 3: clean start, yet b-0 is recovered and truncated at the damaged batch.
        let mgr = LogManager::open(dir.path(), config.clone()).unwrap();
        assert!(mgr.had_clean_shutdown());
        let log = mgr.get_or_create(&tp, config).unwrap();
        assert_eq!(log.log_end_offset(), victim);
        assert_eq!(log.segment_count(), 2);
    }

    #[tokio::test]
    async fn delete_wakes_parked_long_polls_and_marks_the_log_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let tp = TopicPartition::new("gone", 0);
        let log = mgr.get_or_create(&tp, LogConfig::default()).unwrap();
        leader_append(&log, one_batch(), 0).unwrap();
        let mut rx = log.subscribe_high_watermark();
        rx.borrow_and_update();
        let parked = tokio::spawn(async move { rx.changed().await });
        tokio::task::yield_now().await;
        mgr.delete(&tp).unwrap();
        tokio::time::timeout(Duration::from_secs(10), parked)
            .await
            .expect("the parked receiver wakes on delete")
            .unwrap()
            .expect("the log still exists for the holder of its Arc");
        assert!(log.is_closed());
    }

    #[test]
    fn delete_removes_a_partition_directory_that_was_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("stale", 0);
        let (mgr, log) = manager_with(dir.path(), &tp, 3);
        mgr.shutdown().unwrap();
        drop((log, mgr));

        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(mgr.partitions_on_disk().unwrap(), vec![tp.clone()]);
        mgr.delete(&tp).unwrap();
        assert!(!dir.path().join("stale-0").exists());
        assert!(mgr.partitions_on_disk().unwrap().is_empty());
        let fresh = mgr.get_or_create(&tp, LogConfig::default()).unwrap();
        assert_eq!(
            fresh.log_end_offset(),
            0,
            "the new incarnation starts empty"
        );
        mgr.shutdown().unwrap();
        let rp = read_offset_checkpoint(&dir.path().join(RECOVERY_POINT_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert_eq!(rp.get(&tp), Some(&0));
    }

    #[test]
    fn delete_of_a_partition_with_nothing_on_disk_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let tp = TopicPartition::new("never", 3);
        mgr.delete(&tp).unwrap();
        mgr.delete(&tp).unwrap();
        // A stray file under the partition's name is cleared too.
        fs::write(dir.path().join("never-3"), b"junk").unwrap();
        mgr.delete(&tp).unwrap();
        assert!(!dir.path().join("never-3").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(
            mgr.get_or_create(&tp, LogConfig::default())
                .unwrap()
                .log_end_offset(),
            0
        );
    }

    #[test]
    fn unloadable_partition_is_offline_and_others_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        fs::write(
            dir.path().join("bad-0"),
            b"a file where the directory should be",
        )
        .unwrap();
        let err = mgr
            .get_or_create(&TopicPartition::new("bad", 0), LogConfig::default())
            .unwrap_err();
        assert!(matches!(err, LogError::Offline(_)), "{err:?}");
        assert!(matches!(
            mgr.get_or_create(&TopicPartition::new("../x", 0), LogConfig::default()),
            Err(LogError::Offline(_))
        ));
        let ok = mgr
            .get_or_create(&TopicPartition::new("good", 0), LogConfig::default())
            .unwrap();
        leader_append(&ok, one_batch(), 0).unwrap();
        assert_eq!(ok.high_watermark(), 2);

        // Offline for the rest of the run, without a second load attempt (and a second error line), even
        // once the obstacle is gone; deleting the partition clears that.
        let bad = TopicPartition::new("bad", 0);
        fs::remove_file(dir.path().join("bad-0")).unwrap();
        assert!(matches!(
            mgr.get_or_create(&bad, LogConfig::default()),
            Err(LogError::Offline(why)) if why.contains("bad-0")
        ));
        assert!(!dir.path().join("bad-0").exists(), "no load was attempted");
        mgr.delete(&bad).unwrap();
        assert_eq!(
            mgr.get_or_create(&bad, LogConfig::default())
                .unwrap()
                .log_end_offset(),
            0
        );
    }

    #[test]
    fn rolling_a_segment_advances_the_recovery_point_without_a_flush_policy() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        assert!(!config.is_durable() && config.flush_interval_ms.is_none());
        let mgr = LogManager::open(dir.path(), config.clone()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("r", 0), config)
            .unwrap();
        for i in 0..40 {
            let b = crate::log::record_batch::test_support::batch(1, 60, i);
            leader_append(&log, bytes::BytesMut::from(&b[..]), 0).unwrap();
        }
        assert!(log.segment_count() >= 3);
        // append() asks the flusher thread to flush each rolled segment in the background: poll for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.recovery_point() < 20 {
            assert!(
                Instant::now() < deadline,
                "recovery point stuck at {} after rolls",
                log.recovery_point()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        mgr.shutdown().unwrap();
    }

    #[test]
    fn truncation_rewrites_the_recovery_point_and_log_start_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("t", 0);
        let (mgr, log) = manager_with(dir.path(), &tp, 4);
        log.flush().unwrap();
        mgr.checkpoint().unwrap();
        let checkpoint = |name: &str| {
            read_offset_checkpoint(&dir.path().join(name))
                .unwrap()
                .unwrap()
                .get(&tp)
                .copied()
        };
        assert_eq!(checkpoint(RECOVERY_POINT_CHECKPOINT), Some(8));
        assert_eq!(mgr.truncate_to(&tp, 4).unwrap(), 4);
        assert_eq!(checkpoint(RECOVERY_POINT_CHECKPOINT), Some(4));
        mgr.truncate_fully_and_start_at(&tp, 50).unwrap();
        assert_eq!(checkpoint(LOG_START_OFFSET_CHECKPOINT), Some(50));
        assert_eq!(checkpoint(RECOVERY_POINT_CHECKPOINT), Some(50));
        assert!(mgr.truncate_to(&TopicPartition::new("none", 0), 0).is_err());
    }
}
