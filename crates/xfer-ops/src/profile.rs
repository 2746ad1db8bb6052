//! Where a step's time goes, by op: wall time spent in each of xfer's CPU kernels.
//!
//! Off by default (one relaxed atomic load per kernel call). [`enable`] starts recording,
//! [`take`] returns and clears the totals: for each op name (`xfer-conv2d`,
//! `xfer-conv2d-backward-input`, …) the calls and the seconds spent inside its kernel,
//! summed over threads that called it (the kernels themselves run on rayon's threads, which
//! the caller waits for, so the figure is wall time of the calling thread). Time outside
//! these kernels — candle's own ops (matrix products of `Tensor::matmul`, element-wise
//! ops, the zero-fill and `add` of every gradient that candle's autograd sums) — is the
//! step time minus their total. `xfer-bench WORKLOAD --profile` prints the table that
//! `docs/benchmarks.md` shows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Option<HashMap<&'static str, (u64, Duration)>>> = Mutex::new(None);

/// Starts recording kernel times.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// Stops recording (the totals stay until [`take`]).
pub fn disable() {
    ENABLED.store(false, Ordering::SeqCst);
}

/// The totals since the last call, `(op, calls, seconds)`, the slowest first; clears them.
pub fn take() -> Vec<(&'static str, u64, f64)> {
    let map = TOTALS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    let mut v: Vec<_> = map
        .into_iter()
        .map(|(k, (n, d))| (k, n, d.as_secs_f64()))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
    v
}

/// Times the kernel of op `name` until the guard drops (nothing when recording is off).
pub(crate) fn scope(name: &'static str) -> Option<Scope> {
    ENABLED.load(Ordering::Relaxed).then(|| Scope {
        name,
        start: Instant::now(),
    })
}

/// A kernel being timed (see [`Scope::start`]).
pub struct Scope {
    name: &'static str,
    start: Instant,
}

impl Scope {
    /// Times the kernel of op `name` (for kernels outside this crate, e.g. fused optimiser
    /// updates); `None` when recording is off.
    pub fn start(name: &'static str) -> Option<Self> {
        scope(name)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let d = self.start.elapsed();
        let mut g = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        let e = g
            .get_or_insert_with(HashMap::new)
            .entry(self.name)
            .or_default();
        e.0 += 1;
        e.1 += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_record_only_while_enabled() {
        drop(scope("xfer-test-op"));
        assert!(take().iter().all(|(k, _, _)| *k != "xfer-test-op"));
        enable();
        drop(scope("xfer-test-op"));
        drop(Scope::start("xfer-test-op"));
        disable();
        drop(scope("xfer-test-op"));
        let t = take();
        let (_, n, s) = t
            .iter()
            .find(|(k, _, _)| *k == "xfer-test-op")
            .copied()
            .unwrap();
        assert_eq!(n, 2);
        assert!(s >= 0.0);
    }
}
