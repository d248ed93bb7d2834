//! Invalidation by generation: the counters a write bumps and an entry remembers.
//!
//! Invalidation never has to find entries: every entry remembers the
//! generations (global, warehouse, table) current when its request started,
//! and an invalidation bumps a generation. A lookup whose entry carries an
//! old generation is a miss, and a response whose request started before an
//! invalidation is not stored. So a write invalidates every variant of a
//! table (snapshot modes, delegation) at once, and a load racing a commit
//! cannot put the old metadata back.
//!
//! Warehouse and table generations live in a fixed array of counters
//! ([`GenerationSlots`]), indexed by a keyed hash of the name: writes name
//! tables the client chooses (a write to a table that does not exist still
//! invalidates before the origin refuses it), so a map keyed by those names
//! would grow without bound. A table's generation is the counter of its
//! slot; an invalidation bumps that slot. Two names sharing a slot only cost
//! each other spurious misses, never a stale read: whatever slot a table
//! maps to, an invalidation of the table bumps exactly the counter its
//! entries were filled under.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use super::key::TableRef;

/// Generations an entry was filled under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations {
    global: u64,
    warehouse: u64,
    table: u64,
}

/// Default number of generation slots (8 bytes each: 512 KiB).
pub const DEFAULT_GENERATION_SLOTS: usize = 1 << 16;

/// The current generations of everything: one global counter (a flush) and
/// the slots of warehouses and tables.
pub(crate) struct GenerationTable {
    global: AtomicU64,
    slots: GenerationSlots,
}

impl GenerationTable {
    /// Generations tracked in `slots` counters (rounded up to a power of two).
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            global: AtomicU64::new(0),
            slots: GenerationSlots::new(slots),
        }
    }

    /// Current generations for `table`.
    pub(crate) fn current(&self, table: &TableRef) -> Generations {
        let slots = &self.slots;
        Generations {
            global: self.global.load(Ordering::Acquire),
            warehouse: slots.get(slots.index(WAREHOUSE_DOMAIN, table.warehouse.as_str())),
            table: slots.get(slots.index(TABLE_DOMAIN, table)),
        }
    }

    /// Bumps every variant of a table (with and without its prefix).
    pub(crate) fn invalidate_table(&self, table: &TableRef) {
        let slots = &self.slots;
        slots.bump(slots.index(TABLE_DOMAIN, table));
        if !table.warehouse.is_empty() {
            slots.bump(slots.index(TABLE_DOMAIN, &table.unprefixed()));
        }
    }

    /// Bumps a warehouse (and the unprefixed routes).
    pub(crate) fn invalidate_warehouse(&self, warehouse: &str) {
        let slots = &self.slots;
        slots.bump(slots.index(WAREHOUSE_DOMAIN, warehouse));
        if !warehouse.is_empty() {
            slots.bump(slots.index(WAREHOUSE_DOMAIN, ""));
        }
    }

    /// Bumps everything.
    pub(crate) fn flush(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }

    /// Number of slots (fixed for the table's life).
    pub(crate) fn slots(&self) -> usize {
        self.slots.slots.len()
    }

    /// Slots bumped at least once.
    pub(crate) fn slots_used(&self) -> u64 {
        self.slots.used.load(Ordering::Relaxed)
    }
}

/// Fixed-size generation counters of warehouses and tables.
///
/// The memory is allocated once and never grows, whatever names requests
/// carry. The hash is keyed per process (`RandomState`), so a client cannot
/// pick names that land on the slot of a table it wants to keep out of the
/// cache. With `n` slots, a commit bumps at most three distinct ones (the
/// table as the client spelled it, with the warehouse's name, and without),
/// so another table loses its entries to a collision with probability about
/// 3/n per commit: at the default 65,536 slots and 100 commits a second, once
/// in some 220 s per table, against a refetch every `cache.max_age_seconds`
/// anyway. A writer sending writes to made-up names can cause such misses
/// (each costs one origin load); it could commit to real tables as well.
struct GenerationSlots {
    slots: Box<[AtomicU64]>,
    mask: usize,
    hasher: RandomState,
    /// Slots bumped at least once (for `floe_edge_cache_generation_slots_used`).
    used: AtomicU64,
}

/// Hash domains: a warehouse and a table of the same spelling get different slots.
const WAREHOUSE_DOMAIN: u8 = 0;
const TABLE_DOMAIN: u8 = 1;

impl GenerationSlots {
    /// `slots` counters (rounded up to a power of two, at least one).
    fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        Self {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            hasher: RandomState::new(),
            used: AtomicU64::new(0),
        }
    }

    fn index<K: Hash + ?Sized>(&self, domain: u8, key: &K) -> usize {
        // Truncating the hash is fine: only its low bits pick the slot.
        (self.hasher.hash_one((domain, key)) as usize) & self.mask
    }

    fn get(&self, index: usize) -> u64 {
        // SeqCst: an invalidation and a later check of the same slot are
        // ordered as they happened, the same as the lock they replace.
        self.slots
            .get(index)
            .map_or(0, |slot| slot.load(Ordering::SeqCst))
    }

    fn bump(&self, index: usize) {
        if let Some(slot) = self.slots.get(index)
            && slot.fetch_add(1, Ordering::SeqCst) == 0
        {
            self.used.fetch_add(1, Ordering::Relaxed);
        }
    }
}
