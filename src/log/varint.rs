//! Kafka's variable-length integers, the one codec of the crate: zig-zag varints (i32, at most 5 bytes)
//! and varlongs (i64, at most 10 bytes) inside records, and unsigned varints (compact lengths and tagged
//! fields of flexible versions). Reads come from disk or the network, so they are bounds-checked and an
//! over-long encoding is an error, never a panic.

use bytes::BufMut;

/// Why a varint could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VarintError {
    #[error("truncated varint at byte {at}")]
    Truncated { at: usize },
    #[error("varint too long at byte {at}")]
    TooLong { at: usize },
}

/// Reads raw 7-bit groups starting at `*pos`: at most `max_bytes`, whose last may only use `last_bits`.
/// Encodings of one or two bytes (every record length, key and value length under 8 KiB, millisecond
/// deltas within 8 s: nearly every varint of a batch) are read inline, the rest by the loop. Both callers
/// allow at least 5 bytes, so neither of the first two is the last one, whose bits are limited.
#[inline]
fn read_raw(
    buf: &[u8],
    pos: &mut usize,
    max_bytes: u32,
    last_bits: u32,
) -> Result<u64, VarintError> {
    match buf.get(*pos..).unwrap_or_default() {
        [b0, ..] if *b0 < 0x80 => {
            *pos += 1;
            Ok(u64::from(*b0))
        }
        [b0, b1, ..] if *b1 < 0x80 => {
            *pos += 2;
            Ok(u64::from(b0 & 0x7f) | (u64::from(*b1) << 7))
        }
        _ => read_raw_long(buf, pos, max_bytes, last_bits),
    }
}

/// [`read_raw`] of an encoding longer than two bytes (or truncated).
#[inline(never)]
fn read_raw_long(
    buf: &[u8],
    pos: &mut usize,
    max_bytes: u32,
    last_bits: u32,
) -> Result<u64, VarintError> {
    let start = *pos;
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let b = *buf.get(*pos).ok_or(VarintError::Truncated { at: *pos })?;
        *pos += 1;
        if i == max_bytes - 1 && u32::from(b) >> last_bits != 0 {
            break;
        }
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(raw);
        }
    }
    Err(VarintError::TooLong { at: start })
}

/// An unsigned varint that fits 32 bits (compact lengths, tagged fields).
#[inline]
pub fn read_unsigned_varint(buf: &[u8], pos: &mut usize) -> Result<u32, VarintError> {
    // 4 groups of 7 bits, then 4 bits: 32.
    read_raw(buf, pos, 5, 4).map(|raw| raw as u32)
}

/// A zig-zag varint (record lengths, offset deltas, key and value lengths).
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let raw = read_unsigned_varint(buf, pos)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// A zig-zag varlong (timestamp deltas).
#[inline]
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    // 9 groups of 7 bits, then 1 bit: 64.
    let raw = read_raw(buf, pos, 10, 1)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Writes an unsigned varint.
pub fn put_unsigned_varint(out: &mut impl BufMut, v: u64) {
    let mut z = v;
    while z >= 0x80 {
        out.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Writes a zig-zag varint or varlong (the encoding is the same; an i32 takes at most 5 bytes).
pub fn put_varlong(out: &mut impl BufMut, v: i64) {
    put_unsigned_varint(out, zigzag(v));
}

/// Writes a record field's bytes with a varint length, -1 for null (keys, values, header values).
pub fn put_nullable_bytes(out: &mut impl BufMut, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

/// Bytes [`put_varlong`] writes for `v`.
pub fn varlong_len(v: i64) -> usize {
    let bits = 64 - zigzag(v).leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lengths_agree() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
            if let Ok(v32) = i32::try_from(v) {
                let mut pos = 0;
                assert_eq!(read_varint(&out, &mut pos), Ok(v32));
            }
        }
        // Kafka's examples: zig-zag maps -1 to 1 and 1 to 2.
        let mut out = Vec::new();
        put_varlong(&mut out, -1);
        put_varlong(&mut out, 1);
        put_varlong(&mut out, 150);
        assert_eq!(out, [0x01, 0x02, 0xac, 0x02]);
    }

    #[test]
    fn short_encodings_read_inline_match_the_loop() {
        for v in -20_000i64..20_000 {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            out.push(0xff); // a following byte is not read
            let (mut fast, mut slow) = (0, 0);
            let read = read_varlong(&out, &mut fast);
            assert_eq!(read, read_raw_long(&out, &mut slow, 10, 1).map(unzigzag));
            assert_eq!((read, fast), (Ok(v), slow));
        }
        // A non-minimal two-byte zero, as the loop reads it.
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x00], &mut pos), Ok(0));
        assert_eq!(pos, 2);
    }

    fn unzigzag(raw: u64) -> i64 {
        ((raw >> 1) as i64) ^ -((raw & 1) as i64)
    }

    #[test]
    fn truncated_and_overlong_encodings_are_errors() {
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80], &mut pos),
            Err(VarintError::Truncated { at: 2 })
        );
        let mut pos = 0;
        assert_eq!(
            read_varint(&[], &mut pos),
            Err(VarintError::Truncated { at: 0 })
        );
        // Beyond 32 bits for a varint, beyond 64 for a varlong.
        let mut pos = 0;
        assert!(matches!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err(VarintError::TooLong { .. })
        ));
        let mut pos = 0;
        assert_eq!(
            read_unsigned_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut pos),
            Ok(u32::MAX)
        );
        let mut pos = 0;
        assert!(matches!(
            read_varlong(&[0xff; 11], &mut pos),
            Err(VarintError::TooLong { .. })
        ));
        let mut pos = 0;
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(read_varlong(&max, &mut pos), Ok(i64::MIN));
    }
}
