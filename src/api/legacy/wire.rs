//! Bounded reading and writing of the non-flexible (pre-KIP-482) wire types the legacy versions use.
//!
//! Every length is checked against the bytes that remain before anything is allocated, and an array count
//! is accepted only if the remaining bytes could hold that many of its smallest entry, so a crafted count
//! costs nothing (kafka-protocol's own decoder pre-allocates from counts; see the field notes).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

use super::LegacyError;

/// A request body being read, front to back.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    fn need(&self, bytes: usize, field: &'static str) -> Result<(), LegacyError> {
        if self.buf.remaining() < bytes {
            return Err(LegacyError::Truncated {
                field,
                needed: bytes,
                remaining: self.buf.remaining(),
            });
        }
        Ok(())
    }

    pub fn i8(&mut self, field: &'static str) -> Result<i8, LegacyError> {
        self.need(1, field)?;
        Ok(self.buf.get_i8())
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, LegacyError> {
        Ok(self.i8(field)? != 0)
    }

    pub fn i16(&mut self, field: &'static str) -> Result<i16, LegacyError> {
        self.need(2, field)?;
        Ok(self.buf.get_i16())
    }

    pub fn i32(&mut self, field: &'static str) -> Result<i32, LegacyError> {
        self.need(4, field)?;
        Ok(self.buf.get_i32())
    }

    pub fn i64(&mut self, field: &'static str) -> Result<i64, LegacyError> {
        self.need(8, field)?;
        Ok(self.buf.get_i64())
    }

    /// A nullable string's bytes: an i16 length (-1 for null), then the bytes, sliced without copying.
    pub fn nullable_string_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Bytes>, LegacyError> {
        let len = self.i16(field)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len, field)?;
        Ok(Some(self.buf.split_to(len)))
    }

    /// A nullable string: [`Self::nullable_string_bytes`] that must be UTF-8.
    pub fn nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<StrBytes>, LegacyError> {
        self.nullable_string_bytes(field)?
            .map(|bytes| StrBytes::from_utf8(bytes).map_err(|_| LegacyError::NotUtf8(field)))
            .transpose()
    }

    /// Passes over nullable bytes: an i32 length (-1 for null), then that many bytes.
    pub fn skip_nullable_bytes(&mut self, field: &'static str) -> Result<(), LegacyError> {
        let len = usize::try_from(self.i32(field)?.max(0)).unwrap_or(0);
        self.need(len, field)?;
        self.buf.advance(len);
        Ok(())
    }

    pub fn string(&mut self, field: &'static str) -> Result<StrBytes, LegacyError> {
        self.nullable_string(field)?
            .ok_or(LegacyError::UnexpectedNull(field))
    }

    /// A nullable array's count (-1 for null), admitted only if `min_entry_bytes` per entry still fit.
    pub fn nullable_count(
        &mut self,
        field: &'static str,
        min_entry_bytes: usize,
    ) -> Result<Option<usize>, LegacyError> {
        let count = self.i32(field)?;
        if count < 0 {
            return Ok(None);
        }
        let count = count as usize;
        let remaining = self.buf.remaining();
        if count > remaining / min_entry_bytes.max(1) {
            return Err(LegacyError::ArrayTooLong {
                field,
                count,
                remaining,
            });
        }
        Ok(Some(count))
    }

    pub fn count(
        &mut self,
        field: &'static str,
        min_entry_bytes: usize,
    ) -> Result<usize, LegacyError> {
        self.nullable_count(field, min_entry_bytes)?
            .ok_or(LegacyError::UnexpectedNull(field))
    }

    /// An array of i32 (partition indexes, broker ids).
    pub fn i32_array(&mut self, field: &'static str) -> Result<Vec<i32>, LegacyError> {
        let count = self.count(field, 4)?;
        (0..count).map(|_| self.i32(field)).collect()
    }
}

/// Smallest encoded string (its length alone), array (its count alone) and i32.
pub const MIN_STRING: usize = 2;
pub const MIN_ARRAY: usize = 4;

/// Writes a response body; lengths that the wire types cannot carry are errors, not truncations.
pub struct Writer {
    pub buf: BytesMut,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            buf: BytesMut::new(),
        }
    }

    pub fn string(&mut self, value: &str) -> Result<(), LegacyError> {
        let len = i16::try_from(value.len()).map_err(|_| LegacyError::TooLong("string"))?;
        self.buf.put_i16(len);
        self.buf.put_slice(value.as_bytes());
        Ok(())
    }

    pub fn nullable_string(&mut self, value: Option<&str>) -> Result<(), LegacyError> {
        match value {
            Some(value) => self.string(value),
            None => {
                self.buf.put_i16(-1);
                Ok(())
            }
        }
    }

    pub fn count(&mut self, len: usize) -> Result<(), LegacyError> {
        let len = i32::try_from(len).map_err(|_| LegacyError::TooLong("array"))?;
        self.buf.put_i32(len);
        Ok(())
    }
}
