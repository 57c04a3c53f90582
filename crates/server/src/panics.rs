//! Counts the panics of this process (`ringcache_panics_total`).
//!
//! A panic in a connection or bus task is caught by the runtime: the node goes on, but the
//! request (or task) that hit it is lost, so every panic is a bug. The hook counts it and logs
//! it through `tracing` before the standard hook prints its `panicked at` line, which the
//! multi-process tests look for in every node's log.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Once;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Installs the counting hook in front of the one in place; later calls do nothing.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Relaxed);
            tracing::error!(%info, "panic (a bug: please report it with this log)");
            previous(info);
        }));
    });
}

/// Returns how many panics this process has had since start.
pub fn count() -> u64 {
    PANICS.load(Relaxed)
}
