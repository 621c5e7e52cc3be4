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
    /// (INVALID_TIMESTAMP). `record_errors` names each offending record, as Kafka's RecordValidationException.
    #[error("{message}")]
    InvalidTimestamp {
        message: String,
        record_errors: Vec<RecordError>,
    },
    /// A record breaks a rule of its topic, e.g. a keyless record on a compacted topic (INVALID_RECORD).
    /// `record_errors` names each offending record; the batch is refused whole.
    #[error("{message}")]
    InvalidRecord {
        message: String,
        record_errors: Vec<RecordError>,
    },
    /// An idempotent producer's batch does not follow its last sequence, or a new epoch does not start at 0
    /// (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// A producer or marker writes with an epoch older than the partition has seen (INVALID_PRODUCER_EPOCH).
    #[error("{0}")]
    InvalidProducerEpoch(String),
    /// A plain batch from a producer with an open transaction (INVALID_TXN_STATE).
    #[error("{0}")]
    InvalidTxnState(String),
    /// A marker from a transaction coordinator older than the one that wrote the producer's last marker
    /// (TRANSACTION_COORDINATOR_FENCED).
    #[error("{0}")]
    TransactionCoordinatorFenced(String),
    /// A transactional batch whose producer's coordinator does not count this partition in an ongoing
    /// transaction (KIP-890 part 1); the caller knows the coordinator's exact answer.
    #[error("{0}")]
    TransactionNotVerified(String),
    /// A follower's append does not continue its log: the first batch starts below the log end, or the
    /// batches' offsets do not increase (Kafka's UnexpectedAppendOffset / OffsetsOutOfOrder). Nothing was
    /// written; the replica fetcher re-checks where it stands with the leader. Never seen by a client.
    #[error("{0}")]
    UnexpectedAppendOffset(String),
    /// The disk failed us (KAFKA_STORAGE_ERROR).
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
    /// The partition could not be loaded or recovered, or was closed (KAFKA_STORAGE_ERROR); the broker keeps
    /// running without it.
    #[error("partition offline: {0}")]
    Offline(String),
}

/// One refused record of a batch (Kafka's `RecordError`): its index within its batch and why. Produce v8+
/// returns them, so a client fails exactly these records and the rest of the batch with
/// INVALID_RECORD's "different record" variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

impl std::fmt::Display for RecordError {
    /// Kafka's `RecordError.toString`, which its summary message lists.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RecordError(batchIndex={}, message='{}')",
            self.batch_index, self.message
        )
    }
}

impl LogError {
    /// The per-record errors behind an INVALID_RECORD or INVALID_TIMESTAMP, empty for other errors.
    pub fn record_errors(&self) -> &[RecordError] {
        match self {
            LogError::InvalidTimestamp { record_errors, .. }
            | LogError::InvalidRecord { record_errors, .. } => record_errors,
            _ => &[],
        }
    }

    /// Kafka's RecordValidationException for a batch's refused records: INVALID_TIMESTAMP when any record
    /// has a bad timestamp, INVALID_RECORD otherwise, with Kafka's summary message.
    pub fn from_record_errors(timestamp: bool, record_errors: Vec<RecordError>) -> LogError {
        if timestamp {
            return LogError::InvalidTimestamp {
                message: "One or more records have been rejected due to invalid timestamp".into(),
                record_errors,
            };
        }
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|e| e.to_string())
            .collect();
        LogError::InvalidRecord {
            message: format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                record_errors.len(),
                shown.join(", ")
            ),
            record_errors,
        }
    }

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
