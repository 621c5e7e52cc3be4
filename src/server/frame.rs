//! A response frame as a short list of byte chunks, so large payloads (a Fetch's records) go to the socket
//! from the buffer they were read into, by vectored writes, instead of being copied into one frame buffer,
//! or straight from the segment file they are in (a [`Chunk::File`], sent with `sendfile`).

use bytes::Bytes;

use crate::log::read_buffer::FileSlice;

/// One piece of a frame: bytes in memory, or a range of a segment file sent from the page cache.
#[derive(Clone, Debug)]
pub enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.len(),
            Chunk::File(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the first `n` bytes (written).
    pub fn advance(&mut self, n: usize) {
        match self {
            Chunk::Bytes(b) => bytes::Buf::advance(b, n.min(b.len())),
            Chunk::File(f) => f.advance(n),
        }
    }
}

impl From<Bytes> for Chunk {
    fn from(bytes: Bytes) -> Chunk {
        Chunk::Bytes(bytes)
    }
}

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
    Many(Vec<Chunk>),
}

impl Frame {
    /// A frame made of `chunks` in order; empty chunks are dropped.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Frame {
        Frame::from_parts(chunks.into_iter().map(Chunk::Bytes).collect())
    }

    /// A frame made of in-memory and file `chunks` in order; empty chunks are dropped.
    pub fn from_parts(mut chunks: Vec<Chunk>) -> Frame {
        chunks.retain(|c| !c.is_empty());
        let len = chunks.iter().map(Chunk::len).sum();
        let chunks = match chunks.len() {
            0 => Chunks::Empty,
            1 => match chunks.pop() {
                Some(Chunk::Bytes(one)) => Chunks::One(one),
                Some(file) => Chunks::Many(vec![file]),
                None => Chunks::Empty,
            },
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
    pub fn into_chunks(self) -> impl Iterator<Item = Chunk> {
        let (one, many) = match self.chunks {
            Chunks::Empty => (None, Vec::new()),
            Chunks::One(chunk) => (Some(Chunk::Bytes(chunk)), Vec::new()),
            Chunks::Many(chunks) => (None, chunks),
        };
        one.into_iter().chain(many)
    }

    /// Whether a chunk is left in a file (written with `sendfile` where the transport allows).
    pub fn has_file_chunks(&self) -> bool {
        matches!(&self.chunks, Chunks::Many(c) if c.iter().any(|c| matches!(c, Chunk::File(_))))
    }

    /// The frame in one contiguous buffer (copies when it has several chunks, reads file chunks; for tests
    /// and tools). A file chunk that cannot be read whole is left out: the result is then shorter than
    /// [`Frame::len`].
    pub fn to_bytes(&self) -> Bytes {
        match &self.chunks {
            Chunks::Empty => Bytes::new(),
            Chunks::One(chunk) => chunk.clone(),
            Chunks::Many(chunks) => {
                let mut out = Vec::with_capacity(self.len);
                for chunk in chunks {
                    match chunk {
                        Chunk::Bytes(b) => out.extend_from_slice(b),
                        Chunk::File(f) => {
                            if let Ok(read) = f.read_prefix(f.len()) {
                                out.extend_from_slice(&read);
                            }
                        }
                    }
                }
                Bytes::from(out)
            }
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

    fn in_memory(chunk: Chunk) -> Bytes {
        match chunk {
            Chunk::Bytes(b) => b,
            Chunk::File(f) => panic!("unexpected file chunk {f:?}"),
        }
    }

    #[test]
    fn file_chunks_are_read_back_in_place() {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let slice = FileSlice::new(std::sync::Arc::new(file), 2, 5, 1);
        let frame = Frame::from_parts(vec![
            Chunk::Bytes(Bytes::from_static(b"ab")),
            Chunk::File(slice.clone()),
            Chunk::Bytes(Bytes::from_static(b"z")),
        ]);
        assert_eq!(frame.len(), 8);
        assert!(frame.has_file_chunks());
        assert_eq!(&frame.to_bytes()[..], b"ab23456z");
        let alone = Frame::from_parts(vec![Chunk::File(slice)]);
        assert_eq!((alone.len(), alone.chunk_count()), (5, 1));
        assert_eq!(&alone.to_bytes()[..], b"23456");
    }

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
        let chunks: Vec<Bytes> = frame.into_chunks().map(in_memory).collect();
        assert_eq!(chunks, vec![&b"ab"[..], &b"cde"[..], &b"f"[..]]);
    }

    #[test]
    fn one_buffer_frame_is_that_buffer() {
        let frame = Frame::from(Bytes::from_static(b"xyz"));
        assert_eq!((frame.len(), frame.chunk_count()), (3, 1));
        assert_eq!(
            frame.into_chunks().map(in_memory).collect::<Vec<_>>(),
            vec![&b"xyz"[..]]
        );
        let empty = Frame::from(Bytes::new());
        assert!(empty.is_empty());
        assert_eq!(empty.chunk_count(), 0);
        assert_eq!(Frame::from_chunks(vec![Bytes::new()]).chunk_count(), 0);
    }
}
