//! A backend's cache of values made from an index build (its decoded model):
//! one entry per index, with the build it was made from, least recently used
//! entries dropped past a count and a byte budget.
//!
//! Keyed per index (a `slot`), not per build: a new build of the index (a
//! REINDEX, here or in another session) replaces its entry, so a backend never
//! keeps an index's old models beside its current one. A cache keyed by build
//! and emptied when full kept up to 16 models of one rebuilt index in every
//! backend, and a query over 17 indexes emptied it on every execution
//! (hunt-90).

use std::collections::HashMap;
use std::hash::Hash;

/// See the module docs. `S` names an index, `B` one build of it.
pub struct BuildCache<S, B, V> {
    entries: HashMap<S, Entry<B, V>>,
    bytes: usize,
    tick: u64,
    max_entries: usize,
    max_bytes: usize,
}

struct Entry<B, V> {
    build: B,
    value: V,
    bytes: usize,
    used: u64,
}

impl<S: Hash + Eq + Copy, B: PartialEq, V: Clone> BuildCache<S, B, V> {
    /// A cache of at most `max_entries` values (at least 1) of at most
    /// `max_bytes` in all, beyond the one most recently put.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        BuildCache {
            entries: HashMap::new(),
            bytes: 0,
            tick: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The value of `slot` when it was made from `build` (it is then the most
    /// recently used); None when there is none, or one of another build.
    pub fn get(&mut self, slot: S, build: &B) -> Option<V> {
        self.tick += 1;
        let e = self.entries.get_mut(&slot)?;
        if e.build != *build {
            return None;
        }
        e.used = self.tick;
        Some(e.value.clone())
    }

    /// Keeps `value` (of about `bytes` bytes) as `slot`'s, made from `build`,
    /// in place of any it had, after dropping least recently used values
    /// until it fits the limits (or it is the only one).
    pub fn put(&mut self, slot: S, build: B, value: V, bytes: usize) {
        self.tick += 1;
        if let Some(old) = self.entries.remove(&slot) {
            self.bytes -= old.bytes;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max_entries
                || self.bytes.saturating_add(bytes) > self.max_bytes)
        {
            self.drop_lru();
        }
        self.bytes += bytes;
        let used = self.tick;
        self.entries.insert(
            slot,
            Entry {
                build,
                value,
                bytes,
                used,
            },
        );
    }

    /// Drops the values of the slots `keep` says no to (indexes that no longer
    /// exist: `REINDEX CONCURRENTLY` builds a new index under a new OID and
    /// drops the old one, whose entry no later lookup would replace).
    pub fn retain(&mut self, mut keep: impl FnMut(&S) -> bool) {
        let mut freed = 0;
        self.entries.retain(|slot, e| {
            let k = keep(slot);
            if !k {
                freed += e.bytes;
            }
            k
        });
        self.bytes -= freed;
    }

    /// Changes the byte budget, dropping least recently used values until the
    /// rest fit it (or one is left: the one in use, after a `get`). A budget
    /// lowered while every lookup hits is kept at once, not only at the next
    /// `put` (a pooled backend kept 74 MB of models after `SET
    /// ivfpq.model_cache = 1`; hunt-141).
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        while self.entries.len() > 1 && self.bytes > self.max_bytes {
            self.drop_lru();
        }
    }

    fn drop_lru(&mut self) {
        let lru = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(k, _)| *k);
        if let Some(gone) = lru.and_then(|k| self.entries.remove(&k)) {
            self.bytes -= gone.bytes;
        }
    }

    /// Values kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no value is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the values kept, as `put` was told.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_new_build_replaces_the_old_one() {
        let mut c = BuildCache::new(16, 1 << 20);
        for build in 0..40u64 {
            assert_eq!(c.get(7u32, &build), None);
            c.put(7, build, build * 10, 100);
            assert_eq!(c.get(7, &build), Some(build * 10));
            assert_eq!((c.len(), c.bytes()), (1, 100));
        }
        assert_eq!(c.get(7, &3), None, "an old build is never answered");
    }

    #[test]
    fn more_indexes_than_the_limit_keep_the_recently_used_ones() {
        let mut c = BuildCache::new(16, usize::MAX);
        for slot in 0..17u32 {
            c.put(slot, 0u8, slot, 1);
        }
        assert_eq!(c.len(), 16);
        assert_eq!(c.get(0, &0), None, "the least recently used went");
        for slot in 1..17 {
            assert_eq!(c.get(slot, &0), Some(slot));
        }
        // Slot 1 is now the least recently used but for the ones after it.
        c.get(1, &0);
        c.put(17, 0, 17, 1);
        assert_eq!(c.get(2, &0), None);
        assert_eq!(c.get(1, &0), Some(1));
    }

    #[test]
    fn a_smaller_budget_applies_at_once_keeping_the_one_in_use() {
        let mut c = BuildCache::new(100, 1000);
        c.put(1u32, 0u8, 'a', 300);
        c.put(2, 0, 'b', 300);
        c.put(3, 0, 'c', 300);
        assert_eq!(c.get(1, &0), Some('a'));
        c.set_max_bytes(600);
        assert_eq!((c.len(), c.bytes()), (2, 600));
        assert_eq!(c.get(2, &0), None, "the least recently used went first");
        c.set_max_bytes(0);
        assert_eq!((c.len(), c.bytes()), (1, 300));
        assert_eq!(c.get(1, &0), Some('a'), "the one in use stays");
        c.put(3, 0, 'c', 300);
        assert_eq!((c.len(), c.bytes()), (1, 300));
        assert_eq!(c.get(3, &0), Some('c'));
    }

    #[test]
    fn the_byte_budget_drops_old_values_but_keeps_the_newest() {
        let mut c = BuildCache::new(100, 1000);
        c.put(1u32, 0u8, 'a', 600);
        c.put(2, 0, 'b', 300);
        assert_eq!(c.bytes(), 900);
        c.put(3, 0, 'c', 400);
        assert_eq!(c.get(1, &0), None);
        assert_eq!((c.len(), c.bytes()), (2, 700));
        c.put(4, 0, 'd', 5000);
        assert_eq!((c.len(), c.bytes()), (1, 5000));
        assert_eq!(c.get(4, &0), Some('d'));
    }

    #[test]
    fn retain_drops_slots_and_their_bytes() {
        let mut c = BuildCache::new(16, usize::MAX);
        for slot in 0..6u32 {
            c.put(slot, 0u8, slot, 10 + slot as usize);
        }
        c.retain(|s| s % 2 == 0);
        assert_eq!((c.len(), c.bytes()), (3, 10 + 12 + 14));
        assert_eq!(c.get(1, &0), None);
        assert_eq!(c.get(4, &0), Some(4));
    }

    proptest! {
        /// Whatever the sequence of puts and gets: the limits hold (but for
        /// one value alone), the bytes add up, and a get answers only the
        /// build last put for its slot.
        #[test]
        fn limits_and_builds_hold(ops in proptest::collection::vec((0u8..8, 0u8..4, 0usize..500, any::<bool>()), 0..200)) {
            let mut c = BuildCache::new(5, 1000);
            let mut last: HashMap<u8, u8> = HashMap::new();
            for (slot, build, bytes, put) in ops {
                if put {
                    c.put(slot, build, (slot, build), bytes);
                    last.insert(slot, build);
                    prop_assert!(c.len() == 1 || (c.len() <= 5 && c.bytes() <= 1000));
                } else if let Some(v) = c.get(slot, &build) {
                    prop_assert_eq!(v, (slot, build));
                    prop_assert_eq!(last.get(&slot), Some(&build));
                }
                let sum: usize = c.entries.values().map(|e| e.bytes).sum();
                prop_assert_eq!(sum, c.bytes());
            }
        }
    }
}
