//! Producer state through the PartitionLog: dedup against the log, snapshots at roll and close, reload
//! after a clean stop and a crash, truncation, retention and expiry.

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::BytesMut;

    use super::super::tests::{open, small_config, tp};
    use super::super::*;
    use crate::log::batch_builder::{BatchBuilder, end_transaction_marker};
    use crate::log::producer_state::{ActiveProducer, CompletedTxn};
    use crate::log::record_batch::test_support::batch;
    use crate::log::{CleanerConfig, LogManager};
    use crate::replica::partition::leader_append;

    /// Timestamps of test batches: now, or producers would be expired when a snapshot is loaded.
    fn now() -> i64 {
        crate::clock::Clock::system().now_ms()
    }

    /// A batch of `n` 100-byte records from `pid` at `epoch` from sequence `seq`, stamped `ts`, `ts + 1`, ...
    fn idem_at(pid: i64, epoch: i16, seq: i32, n: usize, txn: bool, ts: i64) -> BytesMut {
        let mut b = BatchBuilder::new()
            .producer(pid, epoch, seq)
            .transactional(txn);
        for i in 0..n {
            b.append(ts + i as i64, None, Some(&[b'v'; 100]), &[])
                .unwrap();
        }
        b.build().unwrap()
    }

    fn idem(pid: i64, epoch: i16, seq: i32, n: usize, txn: bool) -> BytesMut {
        idem_at(pid, epoch, seq, n, txn, now())
    }

    fn produce(log: &Arc<PartitionLog>, records: BytesMut) -> Result<AppendInfo, LogError> {
        leader_append(log, records, 0)
    }

    /// A transaction marker written as the transaction coordinator writes it.
    fn marker(
        log: &Arc<PartitionLog>,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<AppendInfo, LogError> {
        let m = end_transaction_marker(pid, epoch, commit, 0, 2_000).unwrap();
        let info = log.append(m, 0, AppendOrigin::Coordinator)?;
        log.maybe_increment_high_watermark(log.log_end_offset());
        Ok(info)
    }

    fn active_log_bytes(log: &PartitionLog) -> u64 {
        log.segments().last().unwrap().size()
    }

    fn snapshot_files(dir: &Path) -> Vec<i64> {
        let mut out: Vec<i64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".snapshot")?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn a_retried_batch_dedups_to_its_original_offsets_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), LogConfig::default());
        let ts = now();
        let first = produce(&log, idem_at(7, 0, 0, 3, false, ts)).unwrap();
        let second = produce(&log, idem_at(7, 0, 3, 2, false, ts)).unwrap();
        assert_eq!((first.base_offset, second.base_offset), (0, 3));
        assert!(!first.duplicate && first.completed_txns.is_empty());
        let (leo, bytes) = (log.log_end_offset(), active_log_bytes(&log));

        let retry = produce(&log, idem_at(7, 0, 0, 3, false, ts + 50)).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
        assert_eq!(retry.record_count, 0);
        assert_eq!(
            retry.log_append_time,
            ts + 2,
            "Kafka answers the original's max timestamp"
        );
        let retry = produce(&log, idem(7, 0, 3, 2, false)).unwrap();
        assert_eq!(
            (retry.base_offset, retry.last_offset, retry.duplicate),
            (3, 4, true)
        );
        assert_eq!((log.log_end_offset(), active_log_bytes(&log)), (leo, bytes));

        assert!(matches!(
            produce(&log, idem(7, 0, 6, 1, false)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            produce(&log, idem_at(7, 0, 5, 1, true, ts + 9)).map(|i| i.base_offset),
            Ok(5)
        ));
        assert!(matches!(
            produce(&log, idem(7, 0, 6, 1, false)),
            Err(LogError::InvalidTxnState(_))
        ));
        assert_eq!(
            log.active_producers(),
            vec![ActiveProducer {
                producer_id: 7,
                producer_epoch: 0,
                last_sequence: 5,
                last_timestamp: ts + 9,
                coordinator_epoch: -1,
                current_txn_start_offset: 5,
            }]
        );
        assert!(log.has_ongoing_txn(7) && !log.has_ongoing_txn(8));
        // Plain batches are untouched by any of it.
        leader_append(&log, BytesMut::from(&batch(2, 10, 0)[..]), 0).unwrap();
    }

    #[test]
    fn a_client_sends_one_idempotent_batch_per_append() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), LogConfig::default());
        let mut two = idem(1, 0, 0, 1, false);
        two.extend_from_slice(&idem(1, 0, 1, 1, false));
        assert!(matches!(
            produce(&log, two.clone()),
            Err(LogError::InvalidRecord { .. })
        ));
        // A coordinator may.
        log.append(two, 0, AppendOrigin::Coordinator).unwrap();
        assert_eq!(log.active_producers()[0].last_sequence, 1);
    }

    #[test]
    fn a_disk_full_append_leaves_no_producer_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), LogConfig::default());
        produce(&log, idem(1, 0, 0, 1, false)).unwrap();
        log.inject_write_failure(libc::ENOSPC);
        let err = produce(&log, idem(1, 0, 1, 1, true)).unwrap_err();
        assert!(err.is_disk_full(), "{err:?}");
        assert!(!log.has_ongoing_txn(1));
        assert_eq!(log.first_unstable_offset(log.high_watermark()), None);
        assert_eq!(log.active_producers()[0].last_sequence, 0);
        // The retry is no duplicate: it lands.
        let info = produce(&log, idem(1, 0, 1, 1, true)).unwrap();
        assert_eq!((info.base_offset, info.duplicate), (1, false));
        assert_eq!(log.first_unstable_offset(log.high_watermark()), Some(1));
    }

    /// KIP-890 across brokers: a write verified with a remote coordinator holds until a marker for its
    /// producer is written here; concurrent verifications of one producer share their guard, and another
    /// producer's marker leaves it alone.
    #[test]
    fn a_marker_voids_a_verification_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), LogConfig::default());
        let guard = log.start_verification(7);
        assert_eq!(log.start_verification(7), guard, "shared while in flight");
        assert!(log.verification_holds(guard));
        marker(&log, 8, 0, true).unwrap();
        assert!(log.verification_holds(guard), "another producer's marker");
        marker(&log, 7, 0, false).unwrap();
        assert!(
            !log.verification_holds(guard),
            "voided by its producer's marker"
        );
        let verify = |_: i64, _: i16| log.verification_holds(guard);
        let refused = log.append_verified(
            idem(7, 0, 0, 1, true),
            0,
            AppendOrigin::Client,
            Some(&verify),
        );
        assert!(
            matches!(refused, Err(LogError::TransactionNotVerified(_))),
            "{refused:?}"
        );
        let fresh = log.start_verification(7);
        assert_ne!(fresh, guard);
        let verify = |_: i64, _: i16| log.verification_holds(fresh);
        log.append_verified(
            idem(7, 0, 0, 1, true),
            0,
            AppendOrigin::Client,
            Some(&verify),
        )
        .unwrap();
    }

    #[test]
    fn markers_complete_transactions_and_the_unstable_offset_follows_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), LogConfig::default());
        produce(&log, idem(1, 0, 0, 2, true)).unwrap(); // 0..=1
        produce(&log, idem(2, 0, 0, 1, true)).unwrap(); // 2
        assert_eq!(log.first_unstable_offset(log.high_watermark()), Some(0));
        let info = marker(&log, 1, 0, false).unwrap(); // 3
        assert_eq!(
            info.completed_txns,
            vec![CompletedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 3,
                is_aborted: true,
                last_stable_offset: 2,
            }]
        );
        // Before the high watermark passes the marker, the aborted txn still holds the LSO.
        assert_eq!(log.first_unstable_offset(3), Some(0));
        // DeleteRecords past an open transaction's start: the unstable offset is not below the log start.
        log.delete_records_before(1).unwrap();
        assert_eq!(log.first_unstable_offset(3), Some(1));
        assert_eq!(log.first_unstable_offset(4), Some(2));
        let info = marker(&log, 2, 0, true).unwrap();
        assert!(!info.completed_txns[0].is_aborted);
        assert_eq!(log.first_unstable_offset(log.high_watermark()), None);
        // An empty transaction's marker completes nothing; stale epochs are fenced.
        assert!(marker(&log, 2, 0, false).unwrap().completed_txns.is_empty());
        produce(&log, idem(3, 4, 0, 1, false)).unwrap();
        assert!(matches!(
            marker(&log, 3, 3, true),
            Err(LogError::InvalidProducerEpoch(_))
        ));
    }

    /// P5 at the log level: after a restart (clean or not) a retry of the last batch dedups, the next
    /// sequence is accepted and an open transaction is still open.
    fn producer_state_survives_a_restart(crash: bool) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        let mut seq = 0;
        let mut last = None;
        // Several segments, with snapshots at each roll.
        for _ in 0..8 {
            last = Some(produce(&log, idem(1, 0, seq, 2, false)).unwrap());
            seq += 2;
        }
        let last = last.unwrap();
        produce(&log, idem(2, 3, 0, 1, true)).unwrap();
        produce(&log, idem(2, 3, 1, 1, true)).unwrap();
        let unstable = log.first_unstable_offset(log.high_watermark());
        assert_eq!(unstable, Some(16));
        assert!(log.segment_count() > 2);
        let leo = log.log_end_offset();
        if crash {
            log.flush().unwrap();
            mgr.abandon();
        } else {
            mgr.shutdown().unwrap();
            assert!(
                snapshot_files(log.dir()).contains(&leo),
                "a clean stop snapshots the log end"
            );
        }
        drop((log, mgr));

        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(log.first_unstable_offset(log.high_watermark()), unstable);
        assert!(log.has_ongoing_txn(2));
        let retry = produce(&log, idem(1, 0, seq - 2, 2, false)).unwrap();
        assert!(retry.duplicate);
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (last.base_offset, last.last_offset)
        );
        assert!(matches!(
            produce(&log, idem(1, 0, seq + 1, 1, false)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(
            produce(&log, idem(1, 0, seq, 1, false))
                .unwrap()
                .base_offset,
            leo
        );
        assert_eq!(
            produce(&log, idem(2, 3, 2, 1, true)).unwrap().base_offset,
            leo + 1
        );
        let done = marker(&log, 2, 3, true).unwrap().completed_txns;
        assert_eq!(
            done[0].first_offset, 16,
            "the transaction open before the restart"
        );
        assert_eq!(log.first_unstable_offset(log.high_watermark()), None);
    }

    #[test]
    fn producer_state_survives_a_clean_restart() {
        producer_state_survives_a_restart(false);
    }

    #[test]
    fn producer_state_survives_a_crash() {
        producer_state_survives_a_restart(true);
    }

    #[test]
    fn a_crash_with_a_corrupt_snapshot_rebuilds_from_an_older_one_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for seq in 0..20 {
            produce(&log, idem(1, 0, seq, 1, false)).unwrap();
        }
        log.flush().unwrap();
        let snaps = snapshot_files(log.dir());
        assert!(snaps.len() >= 2, "snapshots at the rolls: {snaps:?}");
        let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset()).collect();
        assert!(snaps.iter().all(|o| bases.contains(o)), "at segment bases");
        mgr.abandon();
        drop((log, mgr));
        let newest = dir
            .path()
            .join("t-0")
            .join(format!("{:020}.snapshot", snaps.last().unwrap()));
        fs::write(&newest, b"not a snapshot").unwrap();

        let (_mgr, log) = open(dir.path(), config);
        assert!(produce(&log, idem(1, 0, 19, 1, false)).unwrap().duplicate);
        assert_eq!(
            produce(&log, idem(1, 0, 20, 1, false)).unwrap().base_offset,
            20
        );
    }

    #[test]
    fn a_data_dir_without_snapshots_opens_after_a_clean_stop_without_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for seq in 0..10 {
            produce(&log, idem(5, 0, seq, 1, false)).unwrap();
        }
        mgr.shutdown().unwrap();
        // As an earlier brook left it: no snapshot at all.
        let pdir = log.dir().to_path_buf();
        drop((log, mgr));
        for o in snapshot_files(&pdir) {
            fs::remove_file(pdir.join(format!("{o:020}.snapshot"))).unwrap();
        }
        let (mgr, log) = open(dir.path(), config.clone());
        assert_eq!(log.log_end_offset(), 10);
        let snaps = snapshot_files(&pdir);
        assert!(
            snaps.contains(&10),
            "empty snapshot at the log end: {snaps:?}"
        );
        // As Kafka after an upgrade: the log was not read for producers, so producer 5 is unknown here and
        // any sequence goes.
        assert!(log.active_producers().is_empty());
        assert_eq!(
            produce(&log, idem(5, 0, 17, 1, false)).unwrap().base_offset,
            10
        );
        mgr.shutdown().unwrap();
    }

    #[test]
    fn truncation_drops_later_snapshots_and_reloads_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        for seq in 0..12 {
            produce(&log, idem(1, 0, seq, 1, false)).unwrap();
        }
        produce(&log, idem(2, 0, 0, 1, true)).unwrap(); // 12
        assert!(log.has_ongoing_txn(2));
        log.truncate_to(6).unwrap();
        assert!(snapshot_files(log.dir()).iter().all(|o| *o <= 6));
        assert!(!log.has_ongoing_txn(2), "its batch is gone");
        assert_eq!(log.first_unstable_offset(log.high_watermark()), None);
        assert_eq!(log.active_producers()[0].last_sequence, 5);
        assert!(produce(&log, idem(1, 0, 5, 1, false)).unwrap().duplicate);
        assert_eq!(
            produce(&log, idem(1, 0, 6, 1, false)).unwrap().base_offset,
            6
        );

        log.truncate_fully_and_start_at(50).unwrap();
        assert!(log.active_producers().is_empty());
        assert!(snapshot_files(log.dir()).iter().all(|o| *o == 50));
        assert_eq!(
            produce(&log, idem(1, 0, 99, 1, false)).unwrap().base_offset,
            50
        );
    }

    #[test]
    fn snapshots_below_the_log_start_go_with_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: -1,
            file_delete_delay_ms: 0,
            ..small_config()
        };
        let (_mgr, log) = open(dir.path(), config);
        for seq in 0..20 {
            produce(&log, idem(1, 0, seq, 1, false)).unwrap();
        }
        assert!(snapshot_files(log.dir()).len() >= 3);
        log.delete_records_before(15).unwrap();
        let mut pending = crate::log::retention::PendingDeletes::default();
        let deleted = crate::log::retention::delete_old_segments(&log, &mut pending, 0).unwrap();
        assert!(deleted > 0);
        let start = log.log_start_offset();
        assert_eq!(start, 15);
        let left = snapshot_files(log.dir());
        assert!(left.iter().all(|o| *o >= start), "{left:?} below {start}");
        assert_eq!(left, log.producer_snapshot_offsets());
        // The producer is still known in memory.
        assert!(produce(&log, idem(1, 0, 19, 1, false)).unwrap().duplicate);
    }

    #[test]
    fn idle_producers_expire_by_the_managers_clock() {
        let dir = tempfile::tempdir().unwrap();
        let manual = crate::clock::ManualClock::new(1_000);
        let config = LogConfig {
            producer_id_expiration_ms: 60_000,
            ..LogConfig::default()
        };
        let mgr = LogManager::open_with_clock(dir.path(), config.clone(), manual.clock()).unwrap();
        let log = mgr.get_or_create(&tp(), config).unwrap();
        produce(&log, idem_at(1, 0, 0, 1, false, 1_000)).unwrap();
        produce(&log, idem_at(2, 0, 0, 1, true, 1_000)).unwrap();
        mgr.start_background(CleanerConfig {
            producer_id_expiration_check_interval_ms: 5,
            enable: false,
            ..CleanerConfig::default()
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(log.active_producers().len(), 2, "not idle long enough");
        manual.advance(Duration::from_millis(60_000));
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.active_producers().len() != 1 {
            assert!(Instant::now() < deadline, "producer 1 never expired");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            log.active_producers()[0].producer_id,
            2,
            "an open txn stays"
        );
        // An expired producer is unknown: any sequence goes.
        assert!(
            !produce(&log, idem_at(1, 0, 40, 1, false, 61_000))
                .unwrap()
                .duplicate
        );
        mgr.shutdown().unwrap();
    }

    #[test]
    fn compaction_and_deletion_tolerate_snapshot_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup_policy: crate::log::CleanupPolicy {
                delete: false,
                compact: true,
            },
            file_delete_delay_ms: 0,
            ..small_config()
        };
        let (mgr, log) = open(dir.path(), config.clone());
        for seq in 0..12 {
            let mut b = BatchBuilder::new().producer(1, 0, seq);
            b.append(now(), Some(b"k"), Some(&[b'v'; 100]), &[])
                .unwrap();
            produce(&log, b.build().unwrap()).unwrap();
        }
        assert!(!snapshot_files(log.dir()).is_empty());
        let cleaner = crate::log::cleaner::LogCleaner::new(
            dir.path(),
            CleanerConfig::default(),
            crate::clock::Clock::system(),
        );
        let cleaned = cleaner.clean_filthiest(&mgr.logs(), &|| false);
        assert!(cleaned.is_some(), "the dirty log was cleaned");
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let (mgr, log) = open(dir.path(), config);
        assert_eq!(log.log_end_offset(), 12);
        let mut b = BatchBuilder::new().producer(1, 0, 11);
        b.append(now(), Some(b"k"), Some(&[b'v'; 100]), &[])
            .unwrap();
        assert!(produce(&log, b.build().unwrap()).unwrap().duplicate);
        mgr.delete(&tp()).unwrap();
        assert!(!dir.path().join("t-0").exists());
    }

    #[test]
    fn aborted_transactions_are_indexed_live_and_a_replay_rebuilds_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(dir.path(), small_config());
        let mut live = Vec::new();
        // Interleaved transactions of three producers over several segments, aborted and committed.
        for round in 0..4 {
            produce(&log, idem(1, 0, round, 1, true)).unwrap();
            produce(&log, idem(2, 0, round, 1, true)).unwrap();
            live.extend(marker(&log, 1, 0, round % 2 == 0).unwrap().completed_txns);
            produce(&log, idem(3, 0, round, 1, true)).unwrap();
            live.extend(marker(&log, 2, 0, false).unwrap().completed_txns);
            live.extend(marker(&log, 3, 0, true).unwrap().completed_txns);
        }
        assert_eq!(live.len(), 12);
        assert!(log.segment_count() > 2);
        let leo = log.log_end_offset();
        let aborted: Vec<_> = live
            .iter()
            .filter(|ct| ct.is_aborted)
            .map(super::super::load::aborted_txn)
            .collect();
        assert_eq!(aborted.len(), 6);
        assert_eq!(
            log.collect_aborted_txns(0, leo).unwrap(),
            aborted,
            "indexed live"
        );
        let producers = log.active_producers();
        log.flush().unwrap();
        mgr.abandon();
        let pdir = log.dir().to_path_buf();
        drop((log, mgr));
        // Nothing to start from: the whole log is replayed, and every index entry comes from the replay.
        for entry in fs::read_dir(&pdir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".snapshot") || name.ends_with(".txnindex") {
                fs::remove_file(path).unwrap();
            }
        }
        let (_mgr, log) = open(dir.path(), small_config());
        assert_eq!(
            log.collect_aborted_txns(0, leo).unwrap(),
            aborted,
            "rebuilt"
        );
        assert_eq!(log.active_producers(), producers);
        // A second replay from a snapshot in the middle does not record the same transactions twice.
        log.truncate_to(leo - 1).unwrap();
        let kept: Vec<_> = aborted
            .iter()
            .copied()
            .filter(|t| t.last_offset < leo - 1)
            .collect();
        assert_eq!(log.collect_aborted_txns(0, leo).unwrap(), kept);
    }

    #[test]
    fn a_failed_snapshot_at_close_is_clean_only_with_an_older_snapshot_to_replay_from() {
        for older in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let config = if older {
                small_config()
            } else {
                LogConfig::default()
            };
            let (mgr, log) = open(dir.path(), config.clone());
            for seq in 0..20 {
                produce(&log, idem(1, 0, seq, 1, false)).unwrap();
            }
            assert_eq!(!log.producer_snapshot_offsets().is_empty(), older);
            // Something in the way of the snapshot at the log end.
            fs::create_dir(log.dir().join(format!("{:020}.snapshot", 20))).unwrap();
            assert_eq!(mgr.shutdown().is_ok(), older, "older snapshot: {older}");
            let pdir = log.dir().to_path_buf();
            drop((log, mgr));
            fs::remove_dir(pdir.join(format!("{:020}.snapshot", 20))).unwrap();
            let (_mgr, log) = open(dir.path(), config);
            assert!(
                produce(&log, idem(1, 0, 19, 1, false)).unwrap().duplicate,
                "older snapshot: {older}"
            );
        }
    }

    #[test]
    fn after_a_crash_the_replay_starts_below_the_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(dir.path(), small_config());
        produce(&log, idem(1, 0, 0, 1, true)).unwrap();
        let done = marker(&log, 1, 0, false).unwrap().completed_txns;
        let marker_segment = log.segments().last().unwrap().base_offset();
        for seq in 0..12 {
            produce(&log, idem(2, 0, seq, 1, false)).unwrap();
        }
        let snapshots = log.producer_snapshot_offsets();
        assert!(
            snapshots.iter().any(|s| *s > marker_segment),
            "a newer snapshot than the marker's segment: {snapshots:?}"
        );
        let expected = vec![super::super::load::aborted_txn(&done[0])];
        assert_eq!(log.collect_aborted_txns(0, 1).unwrap(), expected);
        mgr.abandon();
        let pdir = log.dir().to_path_buf();
        drop((log, mgr));
        // As after a power loss: the marker's segment kept its batches, not its index entry.
        fs::remove_file(pdir.join(format!("{marker_segment:020}.txnindex"))).unwrap();
        let log = PartitionLog::load(LoadParams {
            dir: pdir,
            tp: tp(),
            config: small_config(),
            had_clean_shutdown: false,
            recovery_point: Some(0),
            log_start_offset: None,
            flusher: None,
            clock: crate::clock::Clock::system(),
        })
        .unwrap();
        assert_eq!(log.collect_aborted_txns(0, 1).unwrap(), expected);
        assert!(produce(&log, idem(2, 0, 11, 1, false)).unwrap().duplicate);
    }
}
