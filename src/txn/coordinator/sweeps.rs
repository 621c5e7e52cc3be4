//! The coordinator's timers (Kafka's `TransactionStateManager` scheduler): timed-out transactions are
//! fenced and aborted, idle transactional ids expire, and shards loaded meanwhile have their prepared
//! transactions completed.

use super::*;

impl TransactionCoordinator {
    /// Fences and aborts every Ongoing transaction past its timeout (Kafka's `abortTimedOutTransactions`).
    /// Returns how many were aborted.
    pub async fn abort_timed_out_transactions(&self) -> usize {
        let now = self.clock.now_ms();
        let mut timed_out = Vec::new();
        for partition in self.runtime.partitions() {
            let mut stalled = Vec::new();
            let _ = self.runtime.read(partition, |shard| {
                timed_out.extend(
                    shard
                        .transactions()
                        .filter(|m| m.is_timed_out(now))
                        .map(|m| m.transactional_id.clone()),
                );
                // Prepared transactions nobody completes (their completion failed): tried again.
                let pending = lock(&self.pending);
                let completing = lock(&self.completing);
                stalled.extend(
                    shard
                        .transactions()
                        .filter(|m| m.state.is_prepare())
                        .filter(|m| !pending.contains(&m.transactional_id))
                        .filter(|m| !completing.contains(&m.transactional_id))
                        .cloned(),
                );
            });
            if let Some(epoch) = self.runtime.epoch(partition) {
                for m in stalled {
                    self.spawn_completion(partition, epoch, m);
                }
            }
        }
        let mut aborted = 0;
        for id in timed_out {
            let fenced = self
                .transit(&id, |current, pending| {
                    match current {
                        Some(m) if !pending && m.is_timed_out(now) => {
                            Ok((Some(prepare_fence_and_abort(&m, now)?), ()))
                        }
                        _ => Ok((None, ())), // changed meanwhile
                    }
                })
                .await;
            match fenced {
                Ok(((), Some(m), epoch)) => {
                    tracing::info!(
                        id,
                        producer_id = m.producer_id,
                        epoch = m.producer_epoch,
                        "aborting a timed-out transaction"
                    );
                    aborted += 1;
                    self.spawn_completion(self.partition_for(&id), epoch, m);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(id, error = ?e, "could not abort a timed-out transaction"),
            }
        }
        aborted
    }

    /// Tombstones the ids idle for `transactional.id.expiration.ms` with no transaction in flight. Returns
    /// how many expired.
    pub async fn remove_expired_transactional_ids(&self) -> usize {
        let now = self.clock.now_ms();
        let expiration = self.config.id_expiration_ms;
        let mut expired = 0;
        for partition in self.runtime.partitions() {
            let written = self
                .runtime
                .write(partition, |shard| {
                    let pending = lock(&self.pending);
                    let (ids, records): (Vec<String>, Vec<CoordinatorRecord>) = shard
                        .transactions()
                        .filter(|m| {
                            m.is_expired(now, expiration) && !pending.contains(&m.transactional_id)
                        })
                        .filter_map(|m| {
                            let key = encode_key(&m.transactional_id).ok()?;
                            Some((
                                m.transactional_id.clone(),
                                CoordinatorRecord { key, value: None },
                            ))
                        })
                        .unzip();
                    (records, ids)
                })
                .await;
            match written {
                Ok(ids) => {
                    let mut remembered = lock(&self.remembered);
                    for id in &ids {
                        remembered.remove(id);
                    }
                    expired += ids.len();
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "could not expire transactional ids")
                }
            }
        }
        if expired > 0 {
            tracing::info!(expired, "expired transactional ids");
        }
        expired
    }

    /// Starts the background task: completion of prepared transactions in loaded shards, and the two
    /// sweeps. Needs a tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let mut stopping = self.stopping.subscribe();
        let abort_every = Duration::from_millis(self.config.abort_timed_out_interval_ms.max(1));
        let expire_every = Duration::from_millis(self.config.remove_expired_interval_ms.max(1));
        self.recover_loaded_shards();
        tokio::spawn(async move {
            let mut abort = tokio::time::interval(abort_every);
            abort.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut expire = tokio::time::interval(expire_every);
            expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick of an interval is immediate: skip it.
            abort.tick().await;
            expire.tick().await;
            loop {
                let Some(loaded) = weak.upgrade() else {
                    return;
                };
                let notified = async move { loaded.loaded.notified().await };
                enum Due {
                    Loaded,
                    Abort,
                    Expire,
                }
                let due = tokio::select! {
                    _ = notified => Due::Loaded,
                    _ = abort.tick() => Due::Abort,
                    _ = expire.tick() => Due::Expire,
                    _ = stopping.wait_for(|s| *s) => return,
                };
                let Some(coordinator) = weak.upgrade() else {
                    return;
                };
                match due {
                    Due::Loaded => coordinator.recover_loaded_shards(),
                    Due::Abort => {
                        coordinator.abort_timed_out_transactions().await;
                    }
                    Due::Expire => {
                        coordinator.remove_expired_transactional_ids().await;
                    }
                }
            }
        });
    }

    /// Stops the background task and the marker retries.
    pub fn shutdown(&self) {
        self.stopping.send_replace(true);
    }
}
