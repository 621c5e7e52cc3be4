//! Producer ids for idempotent and transactional producers (Kafka's `ProducerIdManager`). Ids are handed out
//! from blocks; the end of a block is made durable before the first id of it is handed out, so no id is
//! ever given twice, also after a crash (a crash only skips the rest of the current block). In a cluster the
//! quorum will allocate the blocks (Kafka's AllocateProducerIds and ProducerIdsRecord); on one node the
//! block's end is kept in `brook-producer-ids.json`.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::metadata_store::{JsonState, MetadataError};

pub const FILE_NAME: &str = "brook-producer-ids.json";

/// Ids per block, as Kafka's controller allocates them.
pub const BLOCK_SIZE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// The next block's end could not be made durable (a full or failing disk): no id is handed out.
    #[error("cannot allocate a producer id block: {0}")]
    Storage(#[from] MetadataError),
    #[error("producer ids are exhausted")]
    Exhausted,
}

/// What the file keeps: the first id no block has reached yet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StoredProducerIds {
    next_block_start: i64,
}

/// The current block: ids `next..end` are free to hand out.
#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

pub struct ProducerIdManager {
    stored: JsonState<StoredProducerIds>,
    block: Mutex<Block>,
    /// In a cluster: the metadata quorum hands out the blocks, unique across brokers (Kafka's
    /// AllocateProducerIds); the file is not used.
    allocator: std::sync::OnceLock<std::sync::Arc<dyn super::metadata_store::MetadataWriter>>,
}

impl std::fmt::Debug for ProducerIdManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerIdManager").finish_non_exhaustive()
    }
}

impl ProducerIdManager {
    /// Opens `<dir>/brook-producer-ids.json` (none: ids start at 0). The first id is handed out from a
    /// fresh block: whatever the previous run had left of its block is skipped.
    pub fn open(dir: &Path) -> Result<ProducerIdManager, MetadataError> {
        let stored: JsonState<StoredProducerIds> = JsonState::open(dir.join(FILE_NAME))?;
        let start = stored.read(|s| s.next_block_start);
        if start < 0 {
            return Err(MetadataError::Corrupt(format!(
                "{FILE_NAME}: next_block_start {start} is negative"
            )));
        }
        Ok(ProducerIdManager {
            stored,
            block: Mutex::new(Block {
                next: start,
                end: start,
            }),
            allocator: std::sync::OnceLock::new(),
        })
    }

    /// A cluster member's manager: every block comes from the allocator set with [`Self::set_allocator`].
    pub fn in_memory() -> ProducerIdManager {
        ProducerIdManager {
            stored: JsonState::in_memory(),
            block: Mutex::new(Block { next: 0, end: 0 }),
            allocator: std::sync::OnceLock::new(),
        }
    }

    /// Takes blocks from the cluster's metadata quorum from now on.
    pub fn set_allocator(
        &self,
        allocator: std::sync::Arc<dyn super::metadata_store::MetadataWriter>,
    ) {
        let _ = self.allocator.set(allocator);
    }

    /// The next block: from the quorum in a cluster, else the file's next range (durable before use).
    fn next_block(&self, after: i64) -> Result<Block, ProducerIdError> {
        if let Some(allocator) = self.allocator.get() {
            let (start, len) = allocator.allocate_producer_ids()?;
            let end = start
                .checked_add(len)
                .filter(|e| len > 0 && start >= 0 && *e < i64::MAX)
                .ok_or(ProducerIdError::Exhausted)?;
            return Ok(Block { next: start, end });
        }
        let start = after;
        let end = start
            .checked_add(BLOCK_SIZE)
            .filter(|e| *e < i64::MAX)
            .ok_or(ProducerIdError::Exhausted)?;
        self.stored.update(|s| {
            s.next_block_start = end;
            Ok(())
        })?;
        Ok(Block { next: start, end })
    }

    /// The first id no block has reached yet, as made durable: where a cluster continues after a migration.
    pub fn next_block_start(&self) -> i64 {
        self.stored.read(|s| s.next_block_start)
    }

    /// A producer id never handed out before by this data directory.
    pub fn generate(&self) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock().unwrap_or_else(|e| e.into_inner());
        if block.next == block.end {
            *block = self.next_block(block.end)?;
            tracing::debug!(
                start = block.next,
                end = block.end,
                "allocated a producer id block"
            );
        }
        let id = block.next;
        block.next += 1;
        debug_assert!(
            block.next <= block.end,
            "invariant: ids stay inside their block"
        );
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_blocks_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdManager::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..BLOCK_SIZE + 5)
            .map(|_| ids.generate().unwrap())
            .collect();
        assert_eq!(first[0], 0);
        assert_eq!(
            *first.last().unwrap(),
            BLOCK_SIZE + 4,
            "one id after the other"
        );
        drop(ids);

        // A restart (clean or not) continues after the last block made durable, never inside it.
        let reopened = ProducerIdManager::open(dir.path()).unwrap();
        assert_eq!(reopened.generate().unwrap(), 2 * BLOCK_SIZE);
    }

    #[test]
    fn a_block_is_durable_before_its_first_id() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdManager::open(dir.path()).unwrap();
        assert_eq!(ids.generate().unwrap(), 0);
        // Nothing closed: the file already says the block is taken, as a crash would leave it.
        let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let stored: StoredProducerIds = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored.next_block_start, BLOCK_SIZE);
    }

    #[test]
    fn a_corrupt_or_negative_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"next_block_start\": -5}").unwrap();
        assert!(ProducerIdManager::open(dir.path()).is_err());
        std::fs::write(dir.path().join(FILE_NAME), b"not json").unwrap();
        assert!(ProducerIdManager::open(dir.path()).is_err());
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            format!("{{\"next_block_start\": {}}}", i64::MAX - 10),
        )
        .unwrap();
        let ids = ProducerIdManager::open(dir.path()).unwrap();
        assert!(matches!(ids.generate(), Err(ProducerIdError::Exhausted)));
    }
}
