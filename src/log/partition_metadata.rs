//! `partition.metadata`: the topic id a partition directory belongs to (Kafka's `PartitionMetadataFile`,
//! KIP-516), so that a directory left by a deleted topic is never taken for the new topic of the same name:
//! a cluster member replays topic creations from the metadata log at every start and must tell its own
//! data from a stale directory.
//!
//! Format, as Kafka writes it: two lines, `version: 0` and `topic_id: <id>`, the id in Kafka's text form
//! (URL-safe base64 of the 16 bytes, no padding). Written atomically (temp file, fsync, rename).

use std::io::Write;
use std::path::Path;

use uuid::Uuid;

pub const FILE_NAME: &str = "partition.metadata";

/// Kafka's text form of a topic id.
pub fn encode_topic_id(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The topic id of [`encode_topic_id`]'s text, or None for anything else.
pub fn decode_topic_id(text: &str) -> Option<Uuid> {
    let text = text.trim();
    if text.len() != 22 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut bytes = Vec::with_capacity(18);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        for i in 0..produced {
            bytes.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Uuid::from_slice(&bytes).ok()
}

/// The topic id recorded in `dir`, None when there is no readable file.
pub fn read(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(FILE_NAME)).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    decode_topic_id(lines.next()?.trim().strip_prefix("topic_id:")?)
}

/// Records that `dir` belongs to topic `id`.
pub fn write(dir: &Path, id: Uuid) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    write!(file, "version: 0\ntopic_id: {}\n", encode_topic_id(id))?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_use_kafkas_text_form_and_round_trip() {
        // Kafka prints Uuid(0x0102..., ...) as URL-safe base64 without padding.
        let id = Uuid::from_bytes([0xfb, 0xff, 0xbf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        let text = encode_topic_id(id);
        assert_eq!(text.len(), 22);
        assert!(text.starts_with("-_-_"), "{text}");
        assert_eq!(decode_topic_id(&text), Some(id));
        for _ in 0..100 {
            let id = Uuid::new_v4();
            assert_eq!(decode_topic_id(&encode_topic_id(id)), Some(id));
        }
        assert_eq!(decode_topic_id("not an id"), None);
        assert_eq!(decode_topic_id("!!!!!!!!!!!!!!!!!!!!!!"), None);
    }

    #[test]
    fn the_file_round_trips_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let id = Uuid::new_v4();
        write(dir.path(), id).unwrap();
        assert_eq!(read(dir.path()), Some(id));
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with("version: 0\ntopic_id: "), "{text}");
        std::fs::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
