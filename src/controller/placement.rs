//! Where new partitions' replicas go (Kafka's `StripedReplicaPlacer`): round-robin over racks, then over the
//! brokers of each rack, each partition starting one rack and one broker further, so replicas spread over
//! racks first, over brokers second, and leaders (the first replica) rotate over every broker. Kafka starts
//! at random offsets; here the offsets come from a generator seeded by the caller (the log index), so every
//! node places the same way.
//!
//! Only active brokers (unfenced, not in controlled shutdown) are offered: a new replica must be able to
//! join the ISR at once, since the ISR at creation is the placed replicas.

/// A broker the placer may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsableBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// A small deterministic generator (SplitMix64): the placer's only source of variety.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..bound` for spreading replicas; `bound` > 0.
    pub fn below(&mut self, bound: usize) -> usize {
        debug_assert!(bound > 0);
        (self.next_u64() % bound as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The brokers of one rack, handed out round-robin; each placement round ("epoch") starts one further.
struct BrokerList {
    brokers: Vec<i32>,
    /// How many were handed out in the current round.
    index: usize,
    offset: usize,
    epoch: usize,
}

impl BrokerList {
    fn next(&mut self, epoch: usize) -> Option<i32> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.epoch != epoch {
            self.epoch = epoch;
            self.index = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.index >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.index + self.offset) % self.brokers.len()];
        self.index += 1;
        Some(broker)
    }
}

/// The racks, sorted by name (brokers without a rack first), with a rotating start.
struct RackList {
    racks: Vec<BrokerList>,
    brokers: usize,
    epoch: usize,
    offset: usize,
}

impl RackList {
    fn new(random: &mut SplitMix64, brokers: &[UsableBroker]) -> RackList {
        let mut by_rack: std::collections::BTreeMap<Option<&str>, Vec<i32>> = Default::default();
        for broker in brokers {
            by_rack
                .entry(broker.rack.as_deref())
                .or_default()
                .push(broker.id);
        }
        let racks: Vec<BrokerList> = by_rack
            .into_values()
            .map(|mut ids| {
                ids.sort_unstable();
                ids.dedup();
                let offset = random.below(ids.len());
                BrokerList {
                    brokers: ids,
                    index: 0,
                    offset,
                    epoch: 0,
                }
            })
            .collect();
        let offset = if racks.is_empty() {
            0
        } else {
            random.below(racks.len())
        };
        RackList {
            brokers: racks.iter().map(|r| r.brokers.len()).sum(),
            racks,
            epoch: 0,
            offset,
        }
    }

    /// One partition's replicas; the caller made sure `replication_factor` brokers exist.
    fn place(&mut self, random: &mut SplitMix64, replication_factor: usize) -> Vec<i32> {
        // Every broker has led once this round: reshuffle so the next round does not repeat the last.
        if self.epoch == self.brokers && self.brokers > 1 {
            random.shuffle(&mut self.racks);
            for rack in &mut self.racks {
                random.shuffle(&mut rack.brokers);
            }
            self.epoch = 0;
        }
        if self.offset >= self.racks.len() {
            self.offset = 0;
        }
        let mut replicas = Vec::with_capacity(replication_factor);
        // The leader: the first rack from the offset that still has a broker this round.
        let mut first_rack = self.offset;
        loop {
            if let Some(broker) = self.racks[first_rack].next(self.epoch) {
                replicas.push(broker);
                break;
            }
            first_rack = (first_rack + 1) % self.racks.len();
        }
        // The followers: one per rack in turn, the leader's rack skipped on the first pass.
        let mut skip = Some(first_rack);
        let mut rack = self.offset;
        while replicas.len() < replication_factor {
            if skip == Some(rack) {
                skip = None;
            } else if let Some(broker) = self.racks[rack].next(self.epoch) {
                replicas.push(broker);
            }
            rack = (rack + 1) % self.racks.len();
        }
        self.epoch += 1;
        self.offset += 1;
        replicas
    }
}

/// Replicas for `partitions` new partitions of `replication_factor` each over `brokers`, or Kafka's reason
/// why not (to follow "Unable to replicate the partition N time(s): ").
pub fn place(
    seed: u64,
    partitions: usize,
    replication_factor: i16,
    brokers: &[UsableBroker],
) -> Result<Vec<Vec<i32>>, String> {
    if replication_factor <= 0 {
        return Err(format!(
            "Invalid replication factor {replication_factor}: the replication factor must be positive."
        ));
    }
    if brokers.is_empty() {
        return Err("All brokers are currently fenced or in controlled shutdown.".into());
    }
    let factor = replication_factor as usize;
    if factor > brokers.len() {
        return Err(format!(
            "The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
            brokers.len()
        ));
    }
    let mut random = SplitMix64::new(seed);
    let mut racks = RackList::new(&mut random, brokers);
    Ok((0..partitions)
        .map(|_| racks.place(&mut random, factor))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<UsableBroker> {
        racks
            .iter()
            .map(|&(id, rack)| UsableBroker {
                id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn replication_factor_three_on_three_brokers_uses_each_once_and_spreads_leaders() {
        let all = brokers(&[(1, None), (2, None), (3, None)]);
        for seed in 0..20 {
            let placed = place(seed, 6, 3, &all).unwrap();
            let mut leaders = BTreeMap::new();
            for replicas in &placed {
                let distinct: BTreeSet<_> = replicas.iter().collect();
                assert_eq!(distinct.len(), 3, "{replicas:?}");
                *leaders.entry(replicas[0]).or_insert(0) += 1;
            }
            assert_eq!(leaders.len(), 3, "seed {seed}: {placed:?}");
            assert!(
                leaders.values().all(|&n| n == 2),
                "seed {seed}: {leaders:?}"
            );
        }
    }

    #[test]
    fn replicas_spread_over_racks_first() {
        let all = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack = |id: i32| all.iter().find(|b| b.id == id).unwrap().rack.clone();
        for seed in 0..20 {
            let placed = place(seed, 12, 3, &all).unwrap();
            let mut leaders = BTreeMap::new();
            for replicas in &placed {
                let racks: BTreeSet<_> = replicas.iter().map(|&id| rack(id)).collect();
                assert_eq!(racks.len(), 3, "seed {seed}: {replicas:?}");
                *leaders.entry(replicas[0]).or_insert(0) += 1;
            }
            assert_eq!(leaders.len(), 6, "every broker leads: {leaders:?}");
        }
    }

    #[test]
    fn the_same_seed_places_the_same_way() {
        let all = brokers(&[(1, Some("x")), (2, None), (3, Some("y")), (4, None)]);
        assert_eq!(place(7, 10, 2, &all), place(7, 10, 2, &all));
        assert_ne!(
            (0..8)
                .map(|s| place(s, 4, 2, &all).unwrap())
                .collect::<BTreeSet<_>>()
                .len(),
            1,
            "different seeds start elsewhere"
        );
    }

    #[test]
    fn impossible_factors_are_refused_with_kafkas_words() {
        let all = brokers(&[(1, None), (2, None)]);
        assert_eq!(
            place(0, 1, 3, &all).unwrap_err(),
            "The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        );
        assert!(
            place(0, 1, 0, &all)
                .unwrap_err()
                .contains("must be positive")
        );
        assert!(place(0, 1, 1, &[]).unwrap_err().contains("fenced"));
    }
}
