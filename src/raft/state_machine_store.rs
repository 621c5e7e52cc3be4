//! The application's [`StateMachine`] behind openraft's `RaftStateMachine`, with its durable snapshot.
//!
//! The state machine lives in memory only; its snapshot file (`snapshot`) is what survives. At start
//! openraft installs that snapshot, then re-applies the log up to the saved committed index, so the
//! application always starts from an empty state machine and sees `restore` then `apply` calls.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use tokio::sync::watch;

use super::StateMachine;
use super::stored_file;
use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot";

struct Inner {
    machine: Box<dyn StateMachine>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The last snapshot built or installed, as in its file.
    current: Option<(SnapshotMeta, Vec<u8>)>,
    applied: watch::Sender<u64>,
}

/// The state machine handed to openraft (and, cloned, its snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
    dir: PathBuf,
    /// The last log id of the snapshot in the file. openraft builds snapshots in a task of their own, so a
    /// build may finish after a newer snapshot from the leader was installed: the file must never go back
    /// (the log is purged behind the newer one).
    in_file: Arc<Mutex<Option<LogId>>>,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("state machine lock poisoned by an earlier panic")
}

fn index_of(log_id: &Option<LogId>) -> u64 {
    log_id.as_ref().map_or(0, |l| l.index)
}

impl StateMachineStore {
    /// Reads the snapshot file of `dir` (openraft installs it into `machine` at start).
    pub fn open(
        dir: &Path,
        machine: Box<dyn StateMachine>,
        applied: watch::Sender<u64>,
    ) -> io::Result<StateMachineStore> {
        let current: Option<(SnapshotMeta, Vec<u8>)> = stored_file::read(dir, SNAPSHOT_FILE)?;
        let in_file = current.as_ref().and_then(|(meta, _)| meta.last_log_id);
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(Inner {
                machine,
                last_applied: None,
                membership: StoredMembership::default(),
                current,
                applied,
            })),
            dir: dir.to_path_buf(),
            in_file: Arc::new(Mutex::new(in_file)),
        })
    }

    /// The index of the current snapshot, if any.
    pub fn snapshot_index(&self) -> Option<u64> {
        let inner = self.inner.lock().ok()?;
        inner
            .current
            .as_ref()
            .and_then(|(meta, _)| meta.last_log_id.as_ref().map(|l| l.index))
    }

    /// Writes the snapshot file unless it already holds a newer snapshot; true when written.
    async fn write_snapshot(
        &self,
        meta: SnapshotMeta,
        data: Vec<u8>,
    ) -> io::Result<(SnapshotMeta, Vec<u8>, bool)> {
        let dir = self.dir.clone();
        let in_file = self.in_file.clone();
        tokio::task::spawn_blocking(move || {
            let mut in_file = in_file.lock().map_err(poisoned)?;
            if in_file.is_some() && meta.last_log_id < *in_file {
                return Ok((meta, data, false));
            }
            let stored = (meta, data);
            stored_file::write(&dir, SNAPSHOT_FILE, &stored)?;
            *in_file = stored.0.last_log_id;
            Ok((stored.0, stored.1, true))
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = {
            let inner = self.inner.lock().map_err(poisoned)?;
            let meta = SnapshotMeta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            (meta, inner.machine.snapshot())
        };
        let (meta, data, written) = self.write_snapshot(meta, data).await?;
        if written {
            self.inner.lock().map_err(poisoned)?.current = Some((meta.clone(), data.clone()));
        }
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.inner.lock().map_err(poisoned)?;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut inner = self.inner.lock().map_err(poisoned)?;
                let index = entry.log_id.index;
                let response = match &entry.payload {
                    EntryPayload::Normal(command) => inner.machine.apply(index, &command.0),
                    EntryPayload::Membership(membership) => {
                        inner.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        Vec::new()
                    }
                    EntryPayload::Blank => Vec::new(),
                };
                inner.last_applied = Some(entry.log_id);
                inner.applied.send_replace(index);
                response
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let index = index_of(&meta.last_log_id);
        let already_stored = {
            let mut inner = self.inner.lock().map_err(poisoned)?;
            inner.machine.restore(index, &snapshot).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("snapshot at {index}: {e}"),
                )
            })?;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.applied.send_replace(index);
            inner
                .current
                .as_ref()
                .is_some_and(|(current, _)| current == meta)
        };
        // At start openraft installs the snapshot it just read from the file: nothing to write then.
        if !already_stored {
            let (meta, data, written) = self.write_snapshot(meta.clone(), snapshot).await?;
            if written {
                self.inner.lock().map_err(poisoned)?.current = Some((meta, data));
            }
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let inner = self.inner.lock().map_err(poisoned)?;
        Ok(inner.current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: data.clone(),
        }))
    }
}
