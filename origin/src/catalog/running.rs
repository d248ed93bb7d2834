//! The scan plans this process runs: each plan's task (to abort it on
//! cancel) and how many plans each principal has running. The planning
//! itself is [`crate::planning`]'s; the catalog only keeps the count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// Planning tasks of this process, by plan id (to abort on cancel), and
/// how many each principal has running.
#[derive(Debug, Default)]
pub struct Running {
    tasks: Mutex<HashMap<String, AbortHandle>>,
    /// Running plans per principal; an entry goes when its count is 0, so
    /// the map holds at most one entry per running plan.
    per_principal: Arc<Mutex<HashMap<String, usize>>>,
}

/// One running plan counted against its principal; uncounted on drop.
pub(crate) struct Slot {
    per_principal: Arc<Mutex<HashMap<String, usize>>>,
    principal: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.per_principal.lock()
            && let Some(count) = counts.get_mut(&self.principal)
        {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}

impl Running {
    /// Counts a plan of `principal`; `None` when it already runs `limit`.
    pub(crate) fn slot(&self, principal: &str, limit: usize) -> Option<Slot> {
        let mut counts = self.per_principal.lock().ok()?;
        let count = counts.entry(principal.to_string()).or_default();
        if *count >= limit {
            if *count == 0 {
                counts.remove(principal);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            per_principal: self.per_principal.clone(),
            principal: principal.to_string(),
        })
    }

    pub(crate) fn insert(&self, id: &str, handle: AbortHandle) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(id.to_string(), handle);
        }
    }

    pub(crate) fn remove(&self, id: &str) -> Option<AbortHandle> {
        self.tasks.lock().ok().and_then(|mut t| t.remove(id))
    }
}
