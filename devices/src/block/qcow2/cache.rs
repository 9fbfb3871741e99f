//! A small bounded least-recently-used map for L2 tables and refcount blocks, keyed by host offset.
//!
//! Entries are always clean (metadata is written through), so eviction just drops them.

use std::collections::HashMap;

pub struct Lru<V> {
    map: HashMap<u64, (V, u64)>,
    tick: u64,
    cap: usize,
}

impl<V> Lru<V> {
    pub fn new(cap: usize) -> Lru<V> {
        Lru {
            map: HashMap::new(),
            tick: 0,
            cap: cap.max(1),
        }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    pub fn get(&mut self, key: u64) -> Option<&V> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&key).map(|(v, stamp)| {
            *stamp = t;
            &*v
        })
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&key).map(|(v, stamp)| {
            *stamp = t;
            v
        })
    }

    pub fn insert(&mut self, key: u64, value: V) {
        self.tick += 1;
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            // Linear scan: caches are at most a few thousand entries and misses already cost a read.
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (value, self.tick));
    }

    pub fn remove(&mut self, key: u64) {
        self.map.remove(&key);
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recent() {
        let mut c = Lru::new(2);
        c.insert(1, "a");
        c.insert(2, "b");
        assert!(c.get(1).is_some());
        c.insert(3, "c");
        assert!(c.contains(1) && c.contains(3) && !c.contains(2));
    }
}
