//! Kafka's checkpoint files: a version line ("0"), a count line, then one entry per line.
//!
//! `recovery-point-offset-checkpoint` and `log-start-offset-checkpoint` (per data directory) hold
//! `<topic> <partition> <offset>`; `leader-epoch-checkpoint` (per partition) holds `<epoch> <start offset>`.
//! Writes go to a temporary file that is fsynced and renamed over the old one, so a crash leaves either the
//! old or the new file, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::log::TopicPartition;

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Kafka's `replication-offset-checkpoint`: each partition's high watermark, so that a restarted replica
/// does not take everything it has for committed.
pub const HIGH_WATERMARK_CHECKPOINT: &str = "replication-offset-checkpoint";

/// The only checkpoint format version Kafka has written.
const CHECKPOINT_VERSION: &str = "0";
/// Refuse to read larger files: they cannot be ours and would cost unbounded memory.
const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

fn invalid(path: &Path, msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {msg}", path.display()),
    )
}

/// Reads a checkpoint, parsing each entry line with `parse`. None when the file does not exist.
fn read_entries<T>(path: &Path, parse: impl Fn(&str) -> Option<T>) -> io::Result<Option<Vec<T>>> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_CHECKPOINT_BYTES {
        return Err(invalid(
            path,
            format!("{len} bytes is too large for a checkpoint"),
        ));
    }
    let text = fs::read_to_string(path)?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(CHECKPOINT_VERSION) {
        return Err(invalid(path, "unknown checkpoint version"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| invalid(path, "bad entry count"))?;
    // No allocation sized by the count line: it is only compared with what is really there.
    let mut entries = Vec::new();
    for line in lines.by_ref().take(count) {
        entries.push(parse(line).ok_or_else(|| invalid(path, format!("bad entry {line:?}")))?);
    }
    if entries.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return Err(invalid(path, format!("expected {count} entries")));
    }
    Ok(Some(entries))
}

/// Writes `lines` as a checkpoint through `<path>.tmp` + rename; `sync` fsyncs the file and the directory.
fn write_entries(path: &Path, lines: &[String], sync: bool) -> io::Result<()> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", lines.len());
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| invalid(path, "no file name"))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        // A full disk, typically: the old checkpoint is untouched; do not leave the partial copy behind.
        remove_leftover(&tmp);
        return Err(e);
    }
    if sync {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Removes a temporary file after a failed write; a missing file is fine, anything else is only logged (the
/// write's own error is what the caller reports).
fn remove_leftover(tmp: &Path) {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %tmp.display(), error = %e, "could not remove a partial checkpoint");
        }
        _ => {}
    }
}

/// fsyncs a directory so that file creations, renames and deletions in it survive a machine crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a `<topic> <partition> <offset>` checkpoint; None when the file does not exist.
pub fn read_offset_checkpoint(path: &Path) -> io::Result<Option<BTreeMap<TopicPartition, i64>>> {
    let entries = read_entries(path, |line| {
        let mut parts = line.split(' ');
        let (topic, partition, offset) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || topic.is_empty() {
            return None;
        }
        Some((
            TopicPartition::new(topic, partition.parse().ok()?),
            offset.parse::<i64>().ok()?,
        ))
    })?;
    Ok(entries.map(|v| v.into_iter().collect()))
}

/// Atomically writes a `<topic> <partition> <offset>` checkpoint (fsynced).
pub fn write_offset_checkpoint(
    path: &Path,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> io::Result<()> {
    let lines: Vec<String> = offsets
        .iter()
        .map(|(tp, off)| format!("{} {} {off}", tp.topic, tp.partition))
        .collect();
    write_entries(path, &lines, true)
}

/// Reads a partition's `<epoch> <start offset>` checkpoint; None when the file does not exist.
pub fn read_leader_epoch_checkpoint(path: &Path) -> io::Result<Option<Vec<(i32, i64)>>> {
    read_entries(path, |line| {
        let (epoch, offset) = line.split_once(' ')?;
        Some((epoch.parse().ok()?, offset.parse().ok()?))
    })
}

/// Atomically replaces a partition's leader epoch checkpoint; `sync` also fsyncs it (the append path passes
/// false and leaves the fsync to the flusher).
pub fn write_leader_epoch_checkpoint(
    path: &Path,
    entries: &[(i32, i64)],
    sync: bool,
) -> io::Result<()> {
    let lines: Vec<String> = entries.iter().map(|(e, o)| format!("{e} {o}")).collect();
    write_entries(path, &lines, sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trip_in_kafka_text_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        assert!(read_offset_checkpoint(&path).unwrap().is_none());
        let mut m = BTreeMap::new();
        m.insert(TopicPartition::new("orders", 0), 42);
        m.insert(TopicPartition::new("my-topic.v2", 11), 0);
        write_offset_checkpoint(&path, &m).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "0\n2\nmy-topic.v2 11 0\norders 0 42\n");
        assert_eq!(read_offset_checkpoint(&path).unwrap().unwrap(), m);
        assert!(
            !dir.path()
                .join(format!("{RECOVERY_POINT_CHECKPOINT}.tmp"))
                .exists()
        );
    }

    #[test]
    fn failed_checkpoint_write_keeps_the_old_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        let tmp = dir.path().join(format!("{RECOVERY_POINT_CHECKPOINT}.tmp"));
        let mut old = BTreeMap::new();
        old.insert(TopicPartition::new("t", 0), 7);
        write_offset_checkpoint(&path, &old).unwrap();
        // Writes through this name land in /dev/full, which fails every write with ENOSPC, as a full disk.
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let mut new = old.clone();
        new.insert(TopicPartition::new("t", 0), 9);
        let err = write_offset_checkpoint(&path, &new).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert_eq!(read_offset_checkpoint(&path).unwrap().unwrap(), old);
        assert!(fs::symlink_metadata(&tmp).is_err(), "temp file removed");
        write_offset_checkpoint(&path, &new).unwrap();
        assert_eq!(read_offset_checkpoint(&path).unwrap().unwrap(), new);
    }

    #[test]
    fn leader_epoch_checkpoint_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        write_leader_epoch_checkpoint(&path, &[(0, 0), (3, 120)], true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "0\n2\n0 0\n3 120\n");
        assert_eq!(
            read_leader_epoch_checkpoint(&path).unwrap().unwrap(),
            vec![(0, 0), (3, 120)]
        );
    }

    #[test]
    fn malformed_checkpoints_are_rejected_without_huge_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        for bad in [
            "1\n0\n",
            "0\nx\n",
            "0\n18446744073709551615\nt 0 1\n",
            "0\n2\nt 0 1\n",
            "0\n1\nt 0 1\nt 1 2\n",
            "0\n1\nt zero 1\n",
            "0\n1\nt 0 1 extra\n",
        ] {
            fs::write(&path, bad).unwrap();
            let err = read_offset_checkpoint(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
