//! A small bounded map whose entries expire, with tickets so a value read
//! before a removal is never stored after it: the principal, API-key and
//! verified-credential caches of both tiers.

/// A small map whose entries expire: the principal, API-key and
/// verified-credential caches of both tiers. Bounded: it never holds more
/// than `capacity` entries (when full of live entries, it starts over).
/// Keys are strings unless said otherwise (digests are kept as bytes).
#[derive(Debug)]
pub struct ExpiringMap<V, K = String> {
    ttl: std::time::Duration,
    capacity: usize,
    entries: std::sync::Mutex<Entries<K, V>>,
}

#[derive(Debug)]
struct Entries<K, V> {
    map: std::collections::HashMap<K, (std::time::Instant, V)>,
    /// Bumped by every removal: a value read before a removal is not inserted after it.
    generation: u64,
}

/// What a reader notes before fetching a value it means to cache (see
/// [`ExpiringMap::ticket`]): the map's removal count and the instant. A value
/// stored with it ages from that instant, not from when the fetch ended, so
/// a record read before a change is never kept `ttl` past the change.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
    at: std::time::Instant,
}

impl<V: Clone, K: std::hash::Hash + Eq> ExpiringMap<V, K> {
    /// Entries live `ttl`; at most `capacity` are kept.
    pub fn new(ttl: std::time::Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: std::sync::Mutex::new(Entries {
                map: std::collections::HashMap::new(),
                generation: 0,
            }),
        }
    }

    /// The live value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.get_aged(key).map(|(v, _)| v)
    }

    /// The live value of `key` and how long ago it was read.
    pub fn get_aged<Q>(&self, key: &Q) -> Option<(V, std::time::Duration)>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        entries
            .map
            .get(key)
            .map(|(at, v)| (at.elapsed(), v))
            .filter(|(age, _)| *age < self.ttl)
            .map(|(age, v)| (v.clone(), age))
    }

    /// Note this before fetching a value, and pass it to
    /// [`ExpiringMap::insert_since`].
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.entries.lock().map_or(0, |e| e.generation),
            at: std::time::Instant::now(),
        }
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: impl Into<K>, value: V) {
        let ticket = self.ticket();
        self.insert_since(key, value, ticket);
    }

    /// Stores `value` (read after `ticket` was taken) unless something was
    /// removed since: the value may predate that removal. It ages from the
    /// ticket's instant.
    pub fn insert_since(&self, key: impl Into<K>, value: V, ticket: Ticket) {
        let key = key.into();
        if let Ok(mut entries) = self.entries.lock() {
            if entries.generation != ticket.generation {
                return;
            }
            if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
                entries.map.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if entries.map.len() >= self.capacity {
                    entries.map.clear();
                }
            }
            entries.map.insert(key, (ticket.at, value));
        }
    }

    /// How many entries are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.map.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Ok(mut entries) = self.entries.lock() {
            entries.generation += 1;
            entries.map.remove(key);
        }
    }

    /// Drops every entry whose value matches.
    pub fn remove_where(&self, f: impl Fn(&V) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.generation += 1;
            entries.map.retain(|_, (_, v)| !f(v));
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.generation += 1;
            entries.map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_during_a_fetch_wins_over_the_fetched_value() {
        let map: ExpiringMap<i32> = ExpiringMap::new(std::time::Duration::from_secs(60), 10);
        let before = map.ticket();
        map.remove("p");
        map.insert_since("p", 1, before);
        assert_eq!(map.get("p"), None, "read before the removal: not cached");
        map.insert_since("p", 2, map.ticket());
        assert_eq!(map.get("p"), Some(2));
    }

    #[test]
    fn entries_age_from_the_start_of_their_fetch_and_the_map_stays_bounded() {
        let ttl = std::time::Duration::from_millis(200);
        let map: ExpiringMap<i32> = ExpiringMap::new(ttl, 3);
        let ticket = map.ticket();
        std::thread::sleep(ttl);
        map.insert_since("slow", 1, ticket);
        assert_eq!(
            map.get("slow"),
            None,
            "a fetch that began a ttl ago is already stale"
        );
        map.insert("fresh", 2);
        let (value, age) = map.get_aged("fresh").unwrap();
        assert!(value == 2 && age < ttl);
        for i in 0..1_000 {
            map.insert(format!("k{i}"), i);
            assert!(map.len() <= 3, "never more than the capacity");
        }
    }
}
