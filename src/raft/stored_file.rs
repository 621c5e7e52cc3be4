//! Small state files (vote, committed index, snapshot) replaced atomically and checked on read: a write goes
//! to `NAME.tmp`, is fsynced, renamed over `NAME`, and the directory fsynced, so a crash leaves the old or
//! the new file whole. Layout: CRC32C of the body (u32, big-endian), body length (u32), body (postcard).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MAX_FRAME_BYTES;

const HEADER: usize = 8;

/// Writes `value` to `dir/name` atomically and durably.
pub fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let body = postcard::to_stdvec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::other(format!(
            "{name}: {} bytes is over the limit of {MAX_FRAME_BYTES}",
            body.len()
        )));
    }
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads `dir/name`: None when absent; an `InvalidData` error naming the file when it is damaged.
pub fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    if bytes.len() < HEADER {
        return Err(invalid("shorter than its header"));
    }
    let crc = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let body = &bytes[HEADER..];
    if body.len() != len {
        return Err(invalid("length does not match its header"));
    }
    if crc32c::crc32c(body) != crc {
        return Err(invalid("checksum mismatch"));
    }
    postcard::from_bytes(body)
        .map(Some)
        .map_err(|e| invalid(&e.to_string()))
}

/// Makes renames and creations in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new().read(true).open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_file_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read::<u64>(dir.path(), "vote").unwrap(), None);
        write(dir.path(), "vote", &(7u64, "x".to_string())).unwrap();
        let back: Option<(u64, String)> = read(dir.path(), "vote").unwrap();
        assert_eq!(back, Some((7, "x".to_string())));
        let mut bytes = fs::read(dir.path().join("vote")).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(dir.path().join("vote"), &bytes).unwrap();
        let err = read::<(u64, String)>(dir.path(), "vote").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
