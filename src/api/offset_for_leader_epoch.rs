//! OffsetForLeaderEpoch: where a leader epoch ended, from the partition's leader epoch cache. Consumers ask
//! it after a leader change to detect log truncation (KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Apis;
use super::fetch::check_leader_epoch;

/// Kafka's "no epoch" and "no offset" answers.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

pub fn handle(apis: &Apis, request: &OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let found = check_leader_epoch(p.current_leader_epoch).and_then(|()| {
                        let log = apis.partition(topic.topic.0.as_str(), p.partition)?;
                        Ok(end_offset_for(
                            &log.leader_epochs(),
                            p.leader_epoch,
                            log.log_end_offset(),
                        ))
                    });
                    match found {
                        Ok((epoch, offset)) => {
                            answer.with_leader_epoch(epoch).with_end_offset(offset)
                        }
                        Err(error) => answer
                            .with_error_code(error.code())
                            .with_leader_epoch(UNDEFINED_EPOCH)
                            .with_end_offset(UNDEFINED_EPOCH_OFFSET),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// Kafka's rule over the (epoch, start offset) cache: the latest epoch ends at the log end offset; an
/// older epoch ends where the next larger epoch starts, answered with the largest known epoch not above
/// the requested one; an epoch above every known one, or an empty cache, has no answer.
pub fn end_offset_for(epochs: &[(i32, i64)], requested: i32, log_end_offset: i64) -> (i32, i64) {
    let Some(&(latest, _)) = epochs.last() else {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    };
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    }
    if requested == latest {
        return (latest, log_end_offset);
    }
    let Some(&(_, next_start)) = epochs.iter().find(|(e, _)| *e > requested) else {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    };
    match epochs.iter().rev().find(|(e, _)| *e <= requested) {
        Some(&(floor, _)) => (floor, next_start),
        None => (requested, next_start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_leader_epoch_cache_rules() {
        let epochs = [(0, 0), (2, 10), (5, 30)];
        assert_eq!(
            end_offset_for(&epochs, 5, 42),
            (5, 42),
            "latest ends at LEO"
        );
        assert_eq!(end_offset_for(&epochs, 0, 42), (0, 10));
        assert_eq!(
            end_offset_for(&epochs, 3, 42),
            (2, 30),
            "unknown epoch: floor"
        );
        assert_eq!(end_offset_for(&epochs, 6, 42), (-1, -1), "future epoch");
        assert_eq!(end_offset_for(&[(3, 5)], 1, 9), (1, 5), "below the first");
        assert_eq!(end_offset_for(&[], 0, 0), (-1, -1), "empty cache");
    }
}
