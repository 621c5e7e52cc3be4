//! A response frame as a short list of byte chunks, so large payloads (a Fetch's records) go to the socket
//! from the buffer they were read into, by vectored writes, instead of being copied into one frame buffer.

use bytes::Bytes;

/// One complete response frame, INCLUDING its 4-byte big-endian size prefix: the concatenation of its
/// chunks. Most frames are one chunk; a Fetch response is its protocol fields interleaved with the records
/// of each partition (see `fetch_frame`).
#[derive(Clone, Default)]
pub struct Frame {
    chunks: Chunks,
    len: usize,
}

#[derive(Clone, Default)]
enum Chunks {
    #[default]
    Empty,
    /// Saves allocating a list for the frames that are one buffer (all but Fetch).
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Frame {
    /// A frame made of `chunks` in order; empty chunks are dropped.
    pub fn from_chunks(mut chunks: Vec<Bytes>) -> Frame {
        chunks.retain(|c| !c.is_empty());
        let len = chunks.iter().map(Bytes::len).sum();
        let chunks = match chunks.len() {
            0 => Chunks::Empty,
            1 => Chunks::One(chunks.pop().expect("invariant: one chunk")),
            _ => Chunks::Many(chunks),
        };
        Frame { chunks, len }
    }

    /// Total bytes of the frame (what it counts against a connection's reply budget).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of chunks (each is one `iovec` in the vectored write).
    pub fn chunk_count(&self) -> usize {
        match &self.chunks {
            Chunks::Empty => 0,
            Chunks::One(_) => 1,
            Chunks::Many(chunks) => chunks.len(),
        }
    }

    /// The chunks in order, none of them empty.
    pub fn into_chunks(self) -> impl Iterator<Item = Bytes> {
        let (one, many) = match self.chunks {
            Chunks::Empty => (None, Vec::new()),
            Chunks::One(chunk) => (Some(chunk), Vec::new()),
            Chunks::Many(chunks) => (None, chunks),
        };
        one.into_iter().chain(many)
    }

    /// The frame in one contiguous buffer (copies when it has several chunks; for tests and tools).
    pub fn to_bytes(&self) -> Bytes {
        match &self.chunks {
            Chunks::Empty => Bytes::new(),
            Chunks::One(chunk) => chunk.clone(),
            Chunks::Many(chunks) => Bytes::from(chunks.concat()),
        }
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Frame {
        let len = bytes.len();
        let chunks = if bytes.is_empty() {
            Chunks::Empty
        } else {
            Chunks::One(bytes)
        };
        Frame { chunks, len }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.len)
            .field("chunks", &self.chunk_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate_in_order_without_empty_ones() {
        let frame = Frame::from_chunks(vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ]);
        assert_eq!(frame.len(), 6);
        assert_eq!(frame.chunk_count(), 3);
        assert_eq!(&frame.to_bytes()[..], b"abcdef");
        let chunks: Vec<Bytes> = frame.into_chunks().collect();
        assert_eq!(chunks, vec![&b"ab"[..], &b"cde"[..], &b"f"[..]]);
    }

    #[test]
    fn one_buffer_frame_is_that_buffer() {
        let frame = Frame::from(Bytes::from_static(b"xyz"));
        assert_eq!((frame.len(), frame.chunk_count()), (3, 1));
        assert_eq!(frame.into_chunks().collect::<Vec<_>>(), vec![&b"xyz"[..]]);
        let empty = Frame::from(Bytes::new());
        assert!(empty.is_empty());
        assert_eq!(empty.chunk_count(), 0);
        assert_eq!(Frame::from_chunks(vec![Bytes::new()]).chunk_count(), 0);
    }
}
