//! `__consumer_offsets` records read back from disk: arbitrary bytes go through `walk_batches` (batch and
//! record framing) and the key and value decoders that the offset store applies at load time.
//!
//! The first input byte picks what the rest is: a log read (walked with its CRCs repaired, or as is), a key,
//! an OffsetCommitValue or a GroupMetadataValue. Invariants: no panic; walked records and their fields lie
//! inside the read; a decoded key or value encodes again (when the format can hold it) and decodes to the
//! same thing.
#![no_main]

use brook::group::records::{
    GroupRecordKey, decode_group_metadata_value, decode_key, decode_offset_commit_value,
    encode_group_metadata_key, encode_group_metadata_value, encode_offset_commit_key,
    encode_offset_commit_value, walk_batches,
};
use brook::log::record_batch::RecordBatchHeader;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const CRC_START: usize = 21;
const CRC_AT: usize = 17;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 | 1 => {
            let mut buf = rest.to_vec();
            if mode % 5 == 1 {
                fix_crcs(&mut buf);
            }
            walk(Bytes::from(buf));
        }
        2 => key(rest),
        3 => offset_commit_value(rest),
        _ => group_metadata_value(rest),
    }
});

fn walk(buf: Bytes) {
    let walked = walk_batches(&buf);
    for rec in &walked.records {
        for part in [&rec.key, &rec.value].into_iter().flatten() {
            assert!(
                part.len() <= buf.len(),
                "a record field lies inside the read"
            );
        }
        // What the offset store does with each record: key, then the value its key calls for.
        if let (Some(k), Some(v)) = (&rec.key, &rec.value) {
            match decode_key(k) {
                Ok(GroupRecordKey::OffsetCommit { .. }) => offset_commit_value(v),
                Ok(GroupRecordKey::GroupMetadata { .. }) => group_metadata_value(v),
                _ => {}
            }
        }
    }
    assert!(
        walked.records.len() <= buf.len(),
        "every record takes at least a byte"
    );
}

fn key(buf: &[u8]) {
    match decode_key(buf) {
        Ok(GroupRecordKey::OffsetCommit { group, tp }) => {
            if let Ok(again) = encode_offset_commit_key(&group, &tp) {
                assert_eq!(
                    decode_key(&again).ok(),
                    Some(GroupRecordKey::OffsetCommit { group, tp })
                );
            }
        }
        Ok(GroupRecordKey::GroupMetadata { group }) => {
            if let Ok(again) = encode_group_metadata_key(&group) {
                assert_eq!(
                    decode_key(&again).ok(),
                    Some(GroupRecordKey::GroupMetadata { group })
                );
            }
        }
        Ok(GroupRecordKey::Other { version }) => assert!(version > 2),
        Err(_) => {}
    }
}

fn offset_commit_value(buf: &[u8]) {
    if let Ok(om) = decode_offset_commit_value(buf)
        && let Ok(again) = encode_offset_commit_value(&om)
    {
        assert_eq!(decode_offset_commit_value(&again).ok(), Some(om));
    }
}

fn group_metadata_value(buf: &[u8]) {
    if let Ok(group) = decode_group_metadata_value(buf)
        && let Ok(again) = encode_group_metadata_value(&group)
    {
        assert_eq!(decode_group_metadata_value(&again).ok(), Some(group));
    }
}

/// Rewrites the CRC of every whole batch, so the fuzzer reaches record parsing.
fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while pos < buf.len() {
        let Ok(h) = RecordBatchHeader::parse(&buf[pos..]) else {
            return;
        };
        let Some(size) = h.total_size().filter(|s| pos + s <= buf.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&buf[pos + CRC_START..pos + size]);
        buf[pos + CRC_AT..pos + CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        pos += size;
    }
}
