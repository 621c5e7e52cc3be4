//! The one place where brook's errors become Kafka error codes.

use kafka_protocol::ResponseError;

use crate::cluster::MetadataError;
use crate::log::LogError;

/// The Kafka error a client sees for a storage-layer failure.
pub fn log_error_code(error: &LogError) -> ResponseError {
    match error {
        LogError::CorruptMessage(_) => ResponseError::CorruptMessage,
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        LogError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        LogError::InvalidTxnState(_) | LogError::TransactionNotVerified(_) => {
            ResponseError::InvalidTxnState
        }
        LogError::TransactionCoordinatorFenced(_) => ResponseError::TransactionCoordinatorFenced,
        LogError::Storage(_) | LogError::Offline(_) => ResponseError::KafkaStorageError,
        // Only a follower's append returns it, and no client request appends as a follower.
        LogError::UnexpectedAppendOffset(_) => ResponseError::UnknownServerError,
    }
}

/// The Kafka error a client sees for a topic administration failure.
pub fn metadata_error_code(error: &MetadataError) -> ResponseError {
    error.response_error()
}

/// A code for a response field: 0 when there is no error.
pub fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}
