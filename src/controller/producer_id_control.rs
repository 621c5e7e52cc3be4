//! Producer id blocks (Kafka's `ProducerIdControlManager`): each AllocateProducerIds hands the asking broker
//! the next block of [`BLOCK_SIZE`] ids, so blocks never overlap whichever broker asks, and a migrated
//! single node's counter is continued, never restarted.

use kafka_protocol::ResponseError;

use super::command::{ApiError, ProducerIdsBlock};
use super::records::{MetadataRecord, ProducerIdsRecord};
use super::state::Writer;
pub use crate::cluster::producer_ids::BLOCK_SIZE;

impl Writer<'_> {
    pub(super) fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<ProducerIdsBlock, ApiError> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let first = self.state.next_producer_id;
        let Some(next) = first.checked_add(BLOCK_SIZE).filter(|&n| n < i64::MAX) else {
            return Err(ApiError::new(
                ResponseError::UnknownServerError,
                "Exhausted all producerIds as the next block's end producerId has exceeded the int64 type limit",
            ));
        };
        self.write(MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id,
            broker_epoch,
            next_producer_id: next,
        }));
        Ok(ProducerIdsBlock {
            assigned_broker_id: broker_id,
            first_producer_id: first,
            size: BLOCK_SIZE as i32,
        })
    }
}
