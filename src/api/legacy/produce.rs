//! Produce versions 0-2: advertised so that librdkafka before 2.11.1 keeps compression on (it checks that
//! Produce starts at version 0), but answered with UNSUPPORTED_VERSION for every partition, as Kafka 4 does.
//! Those versions carry the v0/v1 message formats, which brook does not store, so only the topics and
//! partitions are read (with the module's bounded [`wire::Reader`]) to answer each of them.

use bytes::{BufMut, Bytes};
use kafka_protocol::ResponseError;

use super::wire::{self, MIN_ARRAY, MIN_STRING};
use super::{LegacyError, frame};

/// Smallest encoded partition entry: index + records length.
const MIN_PARTITION_BYTES: usize = 4 + 4;

/// The topics a legacy produce request names, each with its partition indexes.
type Requested = Vec<(Bytes, Vec<i32>)>;

/// acks and the (topic, partitions) a legacy produce request names.
fn requested_partitions(body: Bytes) -> Result<(i16, Requested), LegacyError> {
    let mut r = wire::Reader::new(body);
    let acks = r.i16("acks")?;
    r.i32("timeout_ms")?;
    let topics = r.count("topic_data", MIN_STRING + MIN_ARRAY)?;
    let topics = (0..topics)
        .map(|_| {
            let name = r
                .nullable_string_bytes("name")?
                .ok_or(LegacyError::UnexpectedNull("name"))?;
            let partitions = r.count("partition_data", MIN_PARTITION_BYTES)?;
            let indexes = (0..partitions)
                .map(|_| {
                    let index = r.i32("index")?;
                    r.skip_nullable_bytes("records")?;
                    Ok(index)
                })
                .collect::<Result<Vec<i32>, LegacyError>>()?;
            Ok((name, indexes))
        })
        .collect::<Result<Vec<_>, LegacyError>>()?;
    Ok((acks, topics))
}

/// The response frame (size prefix included) for a Produce v0-2 request, or None when it cannot be parsed.
/// `body` starts after the request header; acks=0 requests get no response, as for any produce.
pub fn unsupported_version_frame(
    correlation_id: i32,
    version: i16,
    body: Bytes,
) -> Option<Option<Bytes>> {
    let (acks, topics) = requested_partitions(body).ok()?;
    if acks == 0 {
        return Some(None);
    }
    let mut w = wire::Writer::new();
    w.count(topics.len()).ok()?;
    for (name, partitions) in &topics {
        // The name came in with an i16 length, so it goes back out with one.
        w.buf.put_i16(name.len() as i16);
        w.buf.put_slice(name);
        w.count(partitions.len()).ok()?;
        for &index in partitions {
            w.buf.put_i32(index);
            w.buf.put_i16(ResponseError::UnsupportedVersion.code());
            w.buf.put_i64(-1);
            if version >= 2 {
                w.buf.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        w.buf.put_i32(0);
    }
    frame(correlation_id, &w.buf).ok().map(Some)
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, BytesMut};

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
