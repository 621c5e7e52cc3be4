//! The durable Raft log, vote and committed index (openraft's `RaftLogStorage`).
//!
//! `raft.log` is a sequence of records: body length (u32, big-endian), CRC32C of the body (u32), body
//! (postcard of a [`LogRecord`]). Appends go to its end and are fsynced before openraft hears of them;
//! truncation cuts the file; a purge rewrites the kept tail behind a `Purged` record (the log after a
//! snapshot is short) and renames it over. At load the first record that is short, oversized or fails its
//! checksum ends the log: that is a write torn by a crash, and the file is cut there. A record that passes
//! its checksum but does not decode, or breaks the index sequence, is damage a crash cannot cause: `open`
//! refuses it.
//!
//! Entries are also held in memory (the metadata log stays short: snapshots purge it), so replication reads
//! never touch the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use super::MAX_FRAME_BYTES;
use super::stored_file;
use super::types::{Entry, LogId, TypeConfig, Vote};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const RECORD_HEADER: usize = 8;

#[derive(Serialize, Deserialize)]
enum LogRecord {
    Entry(Entry),
    /// Everything up to this id is in a snapshot; the entries that follow start after it.
    Purged(LogId),
}

/// What readers share with the writer.
#[derive(Default)]
struct Shared {
    entries: RwLock<BTreeMap<u64, Entry>>,
    purged: RwLock<Option<LogId>>,
    vote: RwLock<Option<Vote>>,
}

/// The open `raft.log`: only the writer (openraft's log I/O, serialized) touches it.
struct LogFile {
    dir: PathBuf,
    file: File,
    /// Index -> byte position of its record, to truncate.
    positions: BTreeMap<u64, u64>,
    end: u64,
}

/// The log storage handed to openraft.
pub struct LogStore {
    shared: Arc<Shared>,
    file: Arc<Mutex<LogFile>>,
    dir: PathBuf,
    committed: Option<LogId>,
}

/// A reader of the log for replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

/// Why a lock could be poisoned: a panic while holding it, which only a bug causes.
fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("metadata log lock poisoned by an earlier panic")
}

fn invalid(path: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

fn encode(record: &LogRecord) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(record).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::other(format!(
            "log record of {} bytes is over the limit of {MAX_FRAME_BYTES}",
            body.len()
        )));
    }
    let mut bytes = Vec::with_capacity(RECORD_HEADER + body.len());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Reads exactly `buf.len()` bytes; false when the file ends first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl LogStore {
    /// Opens (creating) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let vote: Option<Vote> = stored_file::read(dir, VOTE_FILE)?;
        // `save_committed` stores the `Option<LogId>` itself: read back that type (read as a bare LogId,
        // postcard took the Some tag for the term and shifted every field, so a restarted node claimed a
        // committed log id that was never in its log).
        let committed: Option<LogId> =
            stored_file::read::<Option<LogId>>(dir, COMMITTED_FILE)?.flatten();
        let path = dir.join(LOG_FILE);
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let mut purged: Option<LogId> = None;
        let mut end = 0u64;
        if path.exists() {
            let file_len = fs::metadata(&path)?.len();
            let mut reader = BufReader::new(File::open(&path)?);
            loop {
                let mut header = [0u8; RECORD_HEADER];
                if !read_full(&mut reader, &mut header)? {
                    break;
                }
                let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
                let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                if len > MAX_FRAME_BYTES {
                    break;
                }
                let mut body = vec![0u8; len];
                if !read_full(&mut reader, &mut body)? || crc32c::crc32c(&body) != crc {
                    break;
                }
                let record: LogRecord = postcard::from_bytes(&body).map_err(|e| {
                    invalid(&path, format!("record at byte {end} does not decode: {e}"))
                })?;
                match record {
                    LogRecord::Entry(entry) => {
                        let index = entry.log_id.index;
                        let expected = entries
                            .keys()
                            .next_back()
                            .map(|last| last + 1)
                            .or(purged.as_ref().map(|p: &LogId| p.index + 1));
                        if expected.is_some_and(|expected| expected != index) {
                            return Err(invalid(
                                &path,
                                format!(
                                    "entry {index} at byte {end} breaks the sequence (expected {expected:?})"
                                ),
                            ));
                        }
                        positions.insert(index, end);
                        entries.insert(index, entry);
                    }
                    LogRecord::Purged(log_id) => {
                        entries.retain(|index, _| *index > log_id.index);
                        positions.retain(|index, _| *index > log_id.index);
                        purged = Some(log_id);
                    }
                }
                end += (RECORD_HEADER + len) as u64;
            }
            if end < file_len {
                tracing::warn!(
                    path = %path.display(),
                    kept = end,
                    dropped = file_len - end,
                    "cutting a torn tail off the metadata log"
                );
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(end)?;
                file.sync_all()?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        stored_file::sync_dir(dir)?;
        Ok(LogStore {
            shared: Arc::new(Shared {
                entries: RwLock::new(entries),
                purged: RwLock::new(purged),
                vote: RwLock::new(vote),
            }),
            file: Arc::new(Mutex::new(LogFile {
                dir: dir.to_path_buf(),
                file,
                positions,
                end,
            })),
            dir: dir.to_path_buf(),
            committed,
        })
    }

    /// Runs a file operation off the async workers (fsync blocks).
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut LogFile) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().map_err(poisoned)?;
            op(&mut file)
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl LogFile {
    fn append(&mut self, records: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(records.iter().map(|(_, b)| b.len()).sum());
        let mut position = self.end;
        for (index, record) in &records {
            self.positions.insert(*index, position);
            position += record.len() as u64;
            bytes.extend_from_slice(record);
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Whatever reached the file past `end` is not acknowledged: cut it so the next append lands
            // where the positions say.
            for (index, _) in &records {
                self.positions.remove(index);
            }
            let _ = self.file.set_len(self.end);
            return Err(e);
        }
        self.end = position;
        Ok(())
    }

    fn truncate_from(&mut self, first: u64) -> io::Result<()> {
        let Some((_, &position)) = self.positions.range(first..).next() else {
            return Ok(());
        };
        self.file.set_len(position)?;
        self.file.sync_all()?;
        self.positions.retain(|index, _| *index < first);
        self.end = position;
        Ok(())
    }

    /// Rewrites the log as `Purged(upto)` followed by the kept entries (already encoded).
    fn rewrite(&mut self, purged: Vec<u8>, kept: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut positions = BTreeMap::new();
        let mut bytes = purged;
        for (index, record) in kept {
            positions.insert(index, bytes.len() as u64);
            bytes.extend_from_slice(&record);
        }
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        stored_file::sync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.positions = positions;
        self.end = bytes.len() as u64;
        Ok(())
    }
}

fn range_entries(shared: &Shared, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry>> {
    let entries = shared.entries.read().map_err(poisoned)?;
    // An inverted or empty range reads nothing (BTreeMap::range would panic on start > end).
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    if start >= end {
        return Ok(Vec::new());
    }
    Ok(entries.range(start..end).map(|(_, e)| e.clone()).collect())
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        range_entries(&self.shared, range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(*self.shared.vote.read().map_err(poisoned)?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        range_entries(&self.shared, range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(*self.shared.vote.read().map_err(poisoned)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged = *self.shared.purged.read().map_err(poisoned)?;
        let last = {
            let entries = self.shared.entries.read().map_err(poisoned)?;
            entries.values().next_back().map(|e| e.log_id)
        };
        Ok(LogState {
            last_log_id: last.or(purged),
            last_purged_log_id: purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let dir = self.dir.clone();
        let stored = *vote;
        self.blocking(move |_| stored_file::write(&dir, VOTE_FILE, &stored))
            .await?;
        *self.shared.vote.write().map_err(poisoned)? = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        if committed == self.committed {
            return Ok(());
        }
        let dir = self.dir.clone();
        let stored = committed;
        self.blocking(move |_| stored_file::write(&dir, COMMITTED_FILE, &stored))
            .await?;
        self.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            records.push((
                entry.log_id.index,
                encode(&LogRecord::Entry(entry.clone()))?,
            ));
        }
        let result = self.blocking(move |file| file.append(records)).await;
        match result {
            Ok(()) => {
                {
                    let mut memory = self.shared.entries.write().map_err(poisoned)?;
                    for entry in entries {
                        memory.insert(entry.log_id.index, entry);
                    }
                }
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first = last_log_id.map_or(0, |l| l.index + 1);
        self.blocking(move |file| file.truncate_from(first)).await?;
        self.shared
            .entries
            .write()
            .map_err(poisoned)?
            .retain(|index, _| *index < first);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index;
        let purged_record = encode(&LogRecord::Purged(log_id))?;
        let kept = {
            let entries = self.shared.entries.read().map_err(poisoned)?;
            let mut kept = Vec::new();
            for (index, entry) in entries.range(upto.saturating_add(1)..) {
                kept.push((*index, encode(&LogRecord::Entry(entry.clone()))?));
            }
            kept
        };
        self.blocking(move |file| file.rewrite(purged_record, kept))
            .await?;
        self.shared
            .entries
            .write()
            .map_err(poisoned)?
            .retain(|index, _| *index > upto);
        *self.shared.purged.write().map_err(poisoned)? = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::raft::types::Command;

    fn entry(term: u64, index: u64) -> Entry {
        let leader =
            openraft::impls::leader_id_adv::LeaderId::<u64, u64>::new(term, 1).to_committed();
        Entry::new_normal(
            LogId::new(leader, index),
            Command(format!("c{index}").into_bytes()),
        )
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.append(entries, IOFlushed::noop()).await.unwrap();
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        let entries = store.try_get_log_entries(0..u64::MAX).await.unwrap();
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn recovery_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, (1..=4).map(|i| entry(1, i)).collect()).await;
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let whole = fs::metadata(&path).unwrap().len();
        // The last record loses its final byte, as if the crash came mid-write.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole - 1).unwrap();
        drop(file);

        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3]);
        let cut = fs::metadata(&path).unwrap().len();
        assert!(cut < whole - 1, "the partial record is gone from the file");
        // Appends continue right after the kept entries, and survive another open.
        append(&mut store, vec![entry(2, 4), entry(2, 5)]).await;
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4, 5]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            state.last_log_id.map(|l| (l.leader_id.term, l.index)),
            Some((2, 5))
        );
    }

    #[tokio::test]
    async fn recovery_cuts_at_a_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, (1..=3).map(|i| entry(1, i)).collect()).await;
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        fs::write(&path, bytes).unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_checked_record_out_of_sequence_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, vec![entry(1, 1), entry(1, 2)]).await;
        drop(store);
        // A well-formed record that skips index 3: no crash writes that.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        file.write_all(&encode(&LogRecord::Entry(entry(1, 4))).unwrap())
            .unwrap();
        drop(file);
        let err = LogStore::open(dir.path()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("breaks the sequence"), "{err}");
    }

    #[tokio::test]
    async fn the_committed_log_id_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, (1..=11).map(|i| entry(2, i)).collect()).await;
        let committed = Some(LogId::new(
            openraft::impls::leader_id_adv::LeaderId::<u64, u64>::new(2, 3).to_committed(),
            11,
        ));
        store.save_committed(committed).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), committed);
        store.save_committed(None).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
    }

    #[tokio::test]
    async fn purge_and_truncate_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, (1..=10).map(|i| entry(1, i)).collect()).await;
        store.purge(entry(1, 4).log_id).await.unwrap();
        store
            .truncate_after(Some(entry(1, 8).log_id))
            .await
            .unwrap();
        append(&mut store, vec![entry(3, 9)]).await;
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, vec![5, 6, 7, 8, 9]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
        store.purge(entry(3, 9).log_id).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert!(indexes(&mut store).await.is_empty());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            state.last_log_id.map(|l| l.index),
            Some(9),
            "an empty log ends at its purge point"
        );
    }
}
