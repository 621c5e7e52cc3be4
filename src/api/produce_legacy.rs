//! Produce versions 0-2: advertised so that librdkafka before 2.11.1 keeps compression on (it checks that
//! Produce starts at version 0), but answered with UNSUPPORTED_VERSION for every partition, as Kafka 4 does.
//! Those versions carry the v0/v1 message formats, which brook does not store.
//!
//! The protocol codec no longer knows these versions, so the little that is needed is read and written here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;

/// Smallest encoded topic entry (name length + partition count) and partition entry (index + records length).
const MIN_TOPIC_BYTES: usize = 2 + 4;
const MIN_PARTITION_BYTES: usize = 4 + 4;

/// The (topic, partitions) a legacy produce request names, or None when the body is malformed.
fn requested_partitions(mut body: Bytes) -> Option<Vec<(Bytes, Vec<i32>)>> {
    // acks, timeout
    if body.remaining() < 6 {
        return None;
    }
    body.advance(6);
    let topics = read_count(&mut body, MIN_TOPIC_BYTES)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        if body.remaining() < 2 {
            return None;
        }
        let name_len = usize::try_from(body.get_i16()).ok()?;
        if body.remaining() < name_len {
            return None;
        }
        let name = body.split_to(name_len);
        let partitions = read_count(&mut body, MIN_PARTITION_BYTES)?;
        let mut indexes = Vec::with_capacity(partitions);
        for _ in 0..partitions {
            if body.remaining() < MIN_PARTITION_BYTES {
                return None;
            }
            indexes.push(body.get_i32());
            // Null records are length -1.
            let records_len = body.get_i32();
            let records_len = usize::try_from(records_len.max(0)).ok()?;
            if body.remaining() < records_len {
                return None;
            }
            body.advance(records_len);
        }
        out.push((name, indexes));
    }
    Some(out)
}

/// An array count that the remaining bytes could actually hold, so a crafted count allocates nothing.
fn read_count(body: &mut Bytes, min_entry_bytes: usize) -> Option<usize> {
    if body.remaining() < 4 {
        return None;
    }
    let count = usize::try_from(body.get_i32()).ok()?;
    (count <= body.remaining() / min_entry_bytes).then_some(count)
}

/// The response frame (size prefix included) for a Produce v0-2 request, or None when it cannot be parsed.
/// `body` starts after the request header; acks=0 requests get no response, as for any produce.
pub fn unsupported_version_frame(
    correlation_id: i32,
    version: i16,
    body: Bytes,
) -> Option<Option<Bytes>> {
    let acks = body.get(0..2).map(|b| i16::from_be_bytes([b[0], b[1]]))?;
    let topics = requested_partitions(body)?;
    if acks == 0 {
        return Some(None);
    }
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(correlation_id);
    out.put_i32(topics.len() as i32);
    for (name, partitions) in &topics {
        out.put_i16(name.len() as i16);
        out.put_slice(name);
        out.put_i32(partitions.len() as i32);
        for &index in partitions {
            out.put_i32(index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Some(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(acks: i16, topics: &[(&str, &[i32])]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(1000);
        b.put_i32(topics.len() as i32);
        for (name, partitions) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(partitions.len() as i32);
            for &p in *partitions {
                b.put_i32(p);
                b.put_i32(3);
                b.put_slice(b"abc");
            }
        }
        b.freeze()
    }

    #[test]
    fn every_partition_gets_unsupported_version() {
        let frame = unsupported_version_frame(7, 2, request(1, &[("t", &[0, 1])]))
            .unwrap()
            .unwrap();
        let mut f = frame.clone();
        assert_eq!(f.get_i32() as usize, frame.len() - 4);
        assert_eq!(f.get_i32(), 7);
        assert_eq!(f.get_i32(), 1);
        assert_eq!(f.get_i16(), 1);
        assert_eq!(&f.split_to(1)[..], b"t");
        assert_eq!(f.get_i32(), 2);
        for p in 0..2 {
            assert_eq!(f.get_i32(), p);
            assert_eq!(f.get_i16(), 35);
            assert_eq!(f.get_i64(), -1);
            assert_eq!(f.get_i64(), -1);
        }
        assert_eq!(f.get_i32(), 0);
        assert!(f.is_empty());
    }

    #[test]
    fn acks_zero_gets_no_response_and_garbage_is_refused() {
        assert_eq!(
            unsupported_version_frame(1, 0, request(0, &[("t", &[0])])),
            Some(None)
        );
        let mut crafted = BytesMut::new();
        crafted.put_i16(1);
        crafted.put_i32(0);
        crafted.put_i32(i32::MAX);
        assert_eq!(unsupported_version_frame(1, 0, crafted.freeze()), None);
        assert_eq!(
            unsupported_version_frame(1, 0, Bytes::from_static(b"\x00")),
            None
        );
    }
}
