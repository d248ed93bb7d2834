//! The entry store: table-load responses in a TinyUFO cache bounded by
//! bytes (scan resistant), looked up by key and checked against the
//! generations they were filled under; the counters behind the byte and
//! eviction metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use tinyufo::TinyUfo;

use super::CACHE_HEADER;
use super::fill::{Flight, Flights};
use super::generations::{GenerationTable, Generations};
use super::key::TableRef;
use super::rules::{self, Freshness, Invalidation};

/// A cached response.
#[derive(Debug)]
pub struct Entry {
    /// Full cache key (TinyUFO keeps only a hash; a collision must not serve the wrong table).
    pub key: String,
    /// Generations at fill time.
    pub generations: Generations,
    /// `ETag` of the response.
    pub etag: String,
    /// `Content-Type` of the response.
    pub content_type: String,
    /// The body, shared with every response that serves it.
    pub body: Bytes,
    /// When it was stored.
    pub stored: Instant,
    /// The head of a fresh hit, built once: serving clones it.
    pub hit_head: ResponseHeader,
    /// The head of a 304 from a fresh hit.
    pub not_modified_head: ResponseHeader,
}

impl Entry {
    /// An entry of `body`, with the head its hits are answered with.
    pub fn new(
        key: String,
        generations: Generations,
        etag: String,
        content_type: String,
        body: Bytes,
    ) -> pingora::Result<Self> {
        let mut hit_head = ResponseHeader::build(200, Some(4))?;
        hit_head.insert_header(http::header::CONTENT_TYPE, content_type.as_str())?;
        hit_head.insert_header(http::header::ETAG, etag.as_str())?;
        hit_head.insert_header(CACHE_HEADER, "hit")?;
        hit_head.set_content_length(body.len())?;
        let mut not_modified_head = ResponseHeader::build(304, Some(2))?;
        not_modified_head.insert_header(http::header::ETAG, etag.as_str())?;
        not_modified_head.insert_header(CACHE_HEADER, "hit")?;
        Ok(Self {
            key,
            generations,
            etag,
            content_type,
            body,
            stored: Instant::now(),
            hit_head,
            not_modified_head,
        })
    }
}

/// Result of a lookup.
pub enum Lookup {
    /// Valid and younger than the maximum age.
    Fresh(Arc<Entry>),
    /// Not servable now, but may be served if no origin answers.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

/// Counters the cache keeps for metrics.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Entries evicted by the admission/eviction policy.
    pub evictions: AtomicU64,
    /// Approximate bytes held: bodies, keys and heads of the entries.
    pub bytes: AtomicI64,
    /// Approximate entries held.
    pub entries: AtomicI64,
}
/// An entry's weight in KiB. It counts the key too: the query string is part
/// of it, and a client chooses it.
fn entry_weight(entry: &Entry) -> u16 {
    (entry.body.len() + entry_overhead(entry))
        .div_ceil(1024)
        .clamp(1, u16::MAX as usize) as u16
}

/// Bytes an entry holds besides its body: key, ETag and content type (in the
/// entry and in both prebuilt heads), and the structures around them.
fn entry_overhead(entry: &Entry) -> usize {
    const FIXED: usize = 1024;
    FIXED + entry.key.len() + 3 * entry.etag.len() + 2 * entry.content_type.len()
}

/// The cache.
pub struct TableCache {
    store: TinyUfo<String, Arc<Entry>>,
    generations: GenerationTable,
    flights: Flights,
    enabled: AtomicBool,
    max_age: Duration,
    stale_for: Duration,
    max_entry_bytes: usize,
    /// Metrics.
    pub counters: CacheCounters,
}

impl TableCache {
    /// A cache of at most `max_bytes` (bodies, keys and heads), with the
    /// default number of generation slots.
    pub fn new(
        max_bytes: usize,
        max_entry_bytes: usize,
        max_age: Duration,
        stale_for: Duration,
    ) -> Self {
        Self::with_generation_slots(
            max_bytes,
            max_entry_bytes,
            max_age,
            stale_for,
            super::DEFAULT_GENERATION_SLOTS,
        )
    }

    /// A cache whose invalidations are tracked in `slots` counters.
    pub fn with_generation_slots(
        max_bytes: usize,
        max_entry_bytes: usize,
        max_age: Duration,
        stale_for: Duration,
        slots: usize,
    ) -> Self {
        let kib = (max_bytes / 1024).max(1);
        Self {
            // Weights are KiB; assume entries of ~16 KiB for the sketch size.
            store: TinyUfo::new(kib, (kib / 16).max(64)),
            generations: GenerationTable::new(slots),
            flights: Flights::default(),
            enabled: AtomicBool::new(true),
            max_age,
            stale_for,
            max_entry_bytes,
            counters: CacheCounters::default(),
        }
    }

    /// Current generations for `table`.
    pub fn generations(&self, table: &TableRef) -> Generations {
        self.generations.current(table)
    }

    /// Number of generation slots (fixed for the cache's life).
    pub fn generation_slots(&self) -> usize {
        self.generations.slots()
    }

    /// Generation slots bumped at least once (at most [`Self::generation_slots`]).
    pub fn generation_slots_used(&self) -> u64 {
        self.generations.slots_used()
    }

    /// Looks up `key` of `table`.
    // TinyUFO takes `&K`: a `&str` would cost the hit path a copy of the key.
    #[allow(clippy::ptr_arg)]
    pub fn lookup(&self, key: &String, table: &TableRef) -> Lookup {
        let Some(entry) = self.store.get(key) else {
            return Lookup::Miss;
        };
        if entry.key != *key || entry.generations != self.generations(table) {
            return Lookup::Miss;
        }
        let live = self.enabled.load(Ordering::Acquire);
        match rules::freshness(entry.stored.elapsed(), live, self.max_age, self.stale_for) {
            Freshness::Fresh => Lookup::Fresh(entry),
            Freshness::Stale => Lookup::Stale(entry),
            Freshness::Expired => Lookup::Miss,
        }
    }

    /// Whether a body of `len` bytes may be cached.
    pub fn admits(&self, len: usize) -> bool {
        self.enabled.load(Ordering::Acquire) && len <= self.max_entry_bytes
    }

    /// Stores a response whose request started under `generations`; refused
    /// when an invalidation happened since.
    pub fn store(&self, table: &TableRef, entry: Entry) -> bool {
        if !self.admits(entry.body.len()) || entry.generations != self.generations(table) {
            return false;
        }
        let weight = entry_weight(&entry);
        let key = entry.key.clone();
        // TinyUFO replaces an entry of the same key in place and does not
        // hand the old one back: its bytes leave the count here (without
        // this, every refill of a table after a commit added to
        // `floe_edge_cache_bytes` for good; found by the soak, `tests/soak`).
        let replaced = self.store.get(&key).map(|old| entry_weight(&old));
        let evicted = self.store.force_put(key, Arc::new(entry), weight);
        self.counters.bytes.fetch_add(
            (i64::from(weight) - i64::from(replaced.unwrap_or(0))) * 1024,
            Ordering::Relaxed,
        );
        if replaced.is_none() {
            self.counters.entries.fetch_add(1, Ordering::Relaxed);
        }
        for kv in evicted {
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            self.counters.entries.fetch_sub(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_sub(i64::from(kv.weight) * 1024, Ordering::Relaxed);
        }
        true
    }

    /// Invalidates what a write or a change event touched.
    pub fn invalidate(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::Table(table) => self.invalidate_table(table),
            Invalidation::Warehouse(warehouse) => self.invalidate_warehouse(warehouse),
        }
    }

    /// Invalidates every variant of a table (with and without its prefix).
    pub fn invalidate_table(&self, table: &TableRef) {
        self.generations.invalidate_table(table);
    }

    /// Invalidates every table of a warehouse (and the unprefixed routes).
    pub fn invalidate_warehouse(&self, warehouse: &str) {
        self.generations.invalidate_warehouse(warehouse);
    }

    /// Invalidates everything.
    pub fn flush(&self) {
        self.generations.flush();
    }

    /// Turns fresh serving on or off (off while the event stream is down).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    /// Whether entries are served fresh.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Joins the request already filling `key`, or becomes the one that does.
    pub fn flight(&self, key: &str) -> Flight {
        self.flights.join(key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::key::variant_key;

    fn table(w: &str, t: &str) -> TableRef {
        TableRef {
            warehouse: w.into(),
            namespace: "ns".into(),
            table: t.into(),
        }
    }

    /// A cache of 1 MiB, entries fresh for a minute, stale for five.
    pub(crate) fn cache() -> TableCache {
        TableCache::new(
            1 << 20,
            1 << 19,
            Duration::from_secs(60),
            Duration::from_secs(300),
        )
    }

    /// What a lookup of one variant of `t` finds: "fresh", "stale" or "miss".
    fn found(c: &TableCache, t: &TableRef, variant: &str) -> &'static str {
        match c.lookup(&variant_key(t, variant, ""), t) {
            Lookup::Fresh(_) => "fresh",
            Lookup::Stale(_) => "stale",
            Lookup::Miss => "miss",
        }
    }

    fn entry(cache: &TableCache, t: &TableRef, variant: &str, body: &'static [u8]) -> Entry {
        entry_of(variant_key(t, variant, ""), cache.generations(t), body)
    }

    /// An entry of `key` whose load started under `generations`.
    fn entry_of(key: String, generations: Generations, body: &'static [u8]) -> Entry {
        Entry::new(
            key,
            generations,
            "\"e\"".into(),
            "application/json".into(),
            Bytes::from_static(body),
        )
        .expect("valid head")
    }

    #[test]
    fn stored_entries_are_served_until_invalidated() {
        let c = cache();
        let t = table("w", "t");
        assert!(c.store(&t, entry(&c, &t, "all", b"{}")));
        assert!(c.store(&t, entry(&c, &t, "refs", b"{}")));
        assert_eq!(found(&c, &t, "all"), "fresh");
        c.invalidate_table(&t);
        assert_eq!(found(&c, &t, "all"), "miss");
        assert_eq!(found(&c, &t, "refs"), "miss", "every variant");
    }

    #[test]
    fn invalidating_a_prefixed_table_covers_the_unprefixed_route() {
        let c = cache();
        let bare = table("", "t");
        assert!(c.store(&bare, entry(&c, &bare, "all", b"{}")));
        c.invalidate_table(&table("default", "t"));
        assert_eq!(found(&c, &bare, "all"), "miss");
        let other = table("w", "u");
        assert!(c.store(&other, entry(&c, &other, "all", b"{}")));
        c.invalidate_warehouse("w");
        assert_eq!(found(&c, &other, "all"), "miss");
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_stored() {
        let c = cache();
        let t = table("w", "t");
        let stale_fill = entry(&c, &t, "all", b"old");
        c.invalidate_table(&t);
        assert!(!c.store(&t, stale_fill));
        assert_eq!(found(&c, &t, "all"), "miss");
    }

    #[test]
    fn disabled_cache_serves_only_stale_on_request() {
        let c = cache();
        let t = table("w", "t");
        assert!(c.store(&t, entry(&c, &t, "all", b"{}")));
        c.set_enabled(false);
        assert_eq!(found(&c, &t, "all"), "stale");
        c.set_enabled(true);
        c.flush();
        assert_eq!(found(&c, &t, "all"), "miss");
    }

    #[test]
    fn oversized_bodies_are_not_admitted() {
        let c = TableCache::new(1 << 20, 4, Duration::from_secs(60), Duration::ZERO);
        let t = table("w", "t");
        assert!(!c.store(&t, entry(&c, &t, "all", b"too large")));
    }

    /// Many more tables than slots: every table shares its slot with others.
    fn crowded(slots: usize) -> TableCache {
        TableCache::with_generation_slots(
            64 << 20,
            1 << 19,
            Duration::from_secs(60),
            Duration::from_secs(300),
            slots,
        )
    }

    #[test]
    fn invalidating_unknown_tables_uses_no_memory_beyond_the_slots() {
        let c = crowded(64);
        assert_eq!(c.generation_slots(), 64);
        let kept = table("w", "kept");
        assert!(c.store(&kept, entry(&c, &kept, "all", b"{}")));
        for i in 0..10_000 {
            c.invalidate_table(&table("w", &format!("missing-{i}-{}", "x".repeat(200))));
            c.invalidate_warehouse(&format!("nowhere-{i}"));
        }
        assert!(c.generation_slots_used() <= 64);
        assert_eq!(c.generation_slots(), 64, "the array never grows");
        // Still a working cache: a fill now is served, and the table's own
        // invalidation still reaches it.
        assert!(c.store(&kept, entry(&c, &kept, "all", b"{}")));
        assert_eq!(found(&c, &kept, "all"), "fresh");
        c.invalidate_table(&kept);
        assert_eq!(found(&c, &kept, "all"), "miss");
    }

    /// The no-stale-read property, checked against a model over random
    /// operations on more tables than slots: loads start (taking the
    /// generations of the moment), finish later (storing, or refused),
    /// writes invalidate tables and warehouses, lookups serve. An entry may
    /// be served fresh only when nothing invalidated its table (itself, its
    /// unprefixed twin, its warehouse, or everything) since its load started.
    /// Collisions may turn a valid entry into a miss; never serve a stale one.
    #[test]
    fn no_stale_read_whatever_the_collisions() {
        let c = crowded(4);
        let tables: Vec<TableRef> = ["", "w", "v"]
            .iter()
            .flat_map(|w| (0..6).map(move |i| table(w, &format!("t{i}"))))
            .collect();
        // Model: per table, the time of its last invalidation, and the time
        // the load behind its cached entry started.
        let mut invalidated = vec![0u64; tables.len()];
        let mut filled: Vec<Option<u64>> = vec![None; tables.len()];
        let mut in_flight: Vec<(usize, Generations, u64)> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut served, mut spurious) = (0, 0);
        for time in 1..50_000u64 {
            let i = next(tables.len());
            let t = &tables[i];
            match next(10) {
                0 | 1 => in_flight.push((i, c.generations(t), time)),
                2 | 3 if !in_flight.is_empty() => {
                    let (j, generations, started) = in_flight.swap_remove(next(in_flight.len()));
                    let u = &tables[j];
                    let e = entry_of(variant_key(u, "all", ""), generations, b"{}");
                    if c.store(u, e) {
                        filled[j] = Some(started);
                    }
                }
                4 => {
                    c.invalidate_table(t);
                    for (j, u) in tables.iter().enumerate() {
                        if u.table == t.table
                            && (u.warehouse == t.warehouse || u.warehouse.is_empty())
                        {
                            invalidated[j] = time;
                        }
                    }
                }
                5 if next(4) == 0 => {
                    c.invalidate_warehouse(&t.warehouse);
                    for (j, u) in tables.iter().enumerate() {
                        if u.warehouse == t.warehouse || u.warehouse.is_empty() {
                            invalidated[j] = time;
                        }
                    }
                }
                6 if next(100) == 0 => {
                    c.flush();
                    invalidated.fill(time);
                }
                _ => {
                    let fresh = found(&c, t, "all") == "fresh";
                    let valid = filled[i].is_some_and(|started| started > invalidated[i]);
                    assert!(!fresh || valid, "stale read of {t:?} at {time}");
                    served += usize::from(fresh);
                    spurious += usize::from(valid && !fresh);
                }
            }
        }
        assert!(served > 100, "the cache still serves: {served}");
        assert!(spurious > 0, "4 slots for 18 tables collide");
    }

    #[test]
    fn keys_count_against_the_byte_bound() {
        // 64 KiB of cache; bodies of 2 bytes under 8 KiB keys (a long query
        // string): a few entries fit, not thousands.
        let c = TableCache::new(64 << 10, 1 << 10, Duration::from_secs(60), Duration::ZERO);
        let t = table("w", "t");
        let junk = "q".repeat(8 << 10);
        for i in 0..1000 {
            let e = entry(&c, &t, &format!("{i}{junk}"), b"{}");
            c.store(&t, e);
        }
        let held = c.counters.bytes.load(Ordering::Relaxed);
        assert!(held <= 80 << 10, "{held} bytes held for a 64 KiB cache");
    }

    #[test]
    fn refilling_a_key_counts_its_bytes_once() {
        let c = cache();
        let t = table("w", "t");
        let store = |body: &'static [u8]| {
            let e = entry(&c, &t, "", body);
            let weight = i64::from(entry_weight(&e)) * 1024;
            assert!(c.store(&t, e));
            weight
        };
        for _ in 0..100 {
            store(b"{}");
        }
        let small = store(b"{}");
        assert_eq!(c.counters.bytes.load(Ordering::Relaxed), small);
        // A bigger body under the same key: the count follows it, both ways.
        let big = store(&[b' '; 5000]);
        assert!(big > small);
        assert_eq!(c.counters.bytes.load(Ordering::Relaxed), big);
        store(b"{}");
        assert_eq!(c.counters.bytes.load(Ordering::Relaxed), small);
    }
}
