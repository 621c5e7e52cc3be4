//! Errors of the storage engine. The api layer maps each variant to one Kafka error code.

/// Why a log operation failed.
#[derive(thiserror::Error, Debug)]
pub enum LogError {
    /// A batch is malformed: bad magic, length, CRC, record count, or not a whole batch (CORRUPT_MESSAGE).
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// A batch is larger than `message.max.bytes` (MESSAGE_TOO_LARGE).
    #[error("batch of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: u32 },
    /// The requested offset is outside `[log_start, log_end]` (OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A CreateTime timestamp is outside the topic's `message.timestamp.before/after.max.ms` window
    /// (INVALID_TIMESTAMP).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// The disk failed us (KAFKA_STORAGE_ERROR).
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
    /// The partition could not be loaded or recovered, or was closed (KAFKA_STORAGE_ERROR); the broker keeps
    /// running without it.
    #[error("partition offline: {0}")]
    Offline(String),
}

impl LogError {
    /// True when the disk (or the user's quota) is full: ENOSPC / EDQUOT from a write. Such a write lost
    /// nothing already acknowledged and is undone, so the partition stays online and a later append can
    /// succeed once space is freed. Any other storage error leaves the data in doubt.
    pub fn is_disk_full(&self) -> bool {
        match self {
            LogError::Storage(e) => is_disk_full_io(e),
            _ => false,
        }
    }
}

/// True for ENOSPC and EDQUOT.
pub fn is_disk_full_io(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
