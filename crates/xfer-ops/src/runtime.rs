//! Process settings that decide how fast a training step runs on the CPU: how the C
//! allocator keeps memory, and where candle runs its own element-wise kernels.
//!
//! **The allocator.** A training step allocates and frees the same few hundred buffers every
//! step: candle makes a fresh output for every op and a zeroed tensor plus an `add` for every
//! gradient it sums, and most of those buffers are megabytes. glibc's `malloc` serves every
//! block above its *mmap threshold* (128 KiB at start, raised dynamically to at most 32 MiB)
//! with a fresh `mmap`, gives it back with `munmap` when freed, and returns the top of its
//! heap to the system above its *trim threshold*: each step then pays a page fault on first
//! touch of every page it had a moment ago. [`configure`] raises the mmap threshold to
//! [`KEEP_BYTES`] and the trim threshold to [`KEEP_TOP_BYTES`] through glibc's `mallopt` (what
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=…:glibc.malloc.trim_threshold=…` does, as a
//! library call), so freed buffers stay in the process and the next step reuses them.
//!
//! **candle's element-wise pool.** candle 0.11 runs element-wise ops of ≥ 64 Ki elements (in
//! a training step: the gradient sums of its autograd) on a pool of its own beside rayon's,
//! whose worker spins for about a millisecond after each op and whose caller busy-waits for
//! it. On a machine with few cores the spinning worker takes a core from the rayon kernels
//! of xfer-ops and `gemm` that run next. [`configure`] makes that pool empty (candle runs the
//! op on the calling thread) by setting `CANDLE_NUM_THREADS=1` before candle reads it, unless
//! the program set `CANDLE_NUM_THREADS` itself. xfer's own kernels and the matrix products use
//! rayon's threads (`RAYON_NUM_THREADS`) either way.
//!
//! xfer calls [`configure`] once, on its own, when the first model parameter is created
//! (every model and text encoder of `xfer-models` does): a program gets these settings
//! without doing anything. A program that manages its allocator or candle's threads itself
//! opts out by calling [`keep_process_settings`] before building its first model, or by
//! setting `XFER_KEEP_PROCESS_SETTINGS=1`. `docs/benchmarks.md` has what each setting is
//! worth, measured.
//!
//! On other C libraries (musl, macOS, Windows), or under a global allocator of the
//! program's own (mimalloc, jemalloc: Rust then does not call `malloc`), the allocator
//! setting changes nothing.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// The block size up to which allocations come from the heap rather than a fresh `mmap`
/// (256 MiB: larger than any one activation of the supported backbones at training batch
/// sizes).
pub const KEEP_BYTES: usize = 256 << 20;

/// How much free memory at the top of the heap stays in the process rather than going back
/// to the system (2 GiB − 1, the largest `mallopt` takes): a step frees all its activations
/// at its end, often more than [`KEEP_BYTES`] together, and the next step needs them again.
/// The peak resident memory is the step's own peak either way.
pub const KEEP_TOP_BYTES: usize = (1 << 31) - 1;

/// The environment variable that opts out of [`configure`] (any value but `0`).
pub const OPT_OUT_VAR: &str = "XFER_KEEP_PROCESS_SETTINGS";

static OPTED_OUT: AtomicBool = AtomicBool::new(false);
static CONFIGURED: Once = Once::new();
static ALLOCATOR_TUNED: AtomicBool = AtomicBool::new(false);

/// What [`configure`] changed in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSettings {
    /// glibc's mmap and trim thresholds are [`KEEP_BYTES`] and [`KEEP_TOP_BYTES`].
    pub allocator_tuned: bool,
    /// candle's element-wise kernels run on the calling thread (`CANDLE_NUM_THREADS` is 1).
    pub candle_serial: bool,
}

/// Keeps the process as the program set it: call before building the first model to stop
/// xfer from changing the allocator's thresholds or candle's thread count. No effect once
/// [`configure`] has run.
pub fn keep_process_settings() {
    OPTED_OUT.store(true, Ordering::SeqCst);
}

/// Applies xfer's process settings (once per process; later calls only report): glibc's
/// thresholds at [`KEEP_BYTES`] and [`KEEP_TOP_BYTES`], and `CANDLE_NUM_THREADS=1` unless the program set it —
/// unless [`keep_process_settings`] was called or [`OPT_OUT_VAR`] is set.
pub fn configure() -> ProcessSettings {
    CONFIGURED.call_once(|| {
        if OPTED_OUT.load(Ordering::SeqCst)
            || std::env::var_os(OPT_OUT_VAR).is_some_and(|v| v != "0")
        {
            return;
        }
        ALLOCATOR_TUNED.store(set_malloc_thresholds(), Ordering::SeqCst);
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            // SAFETY: std's environment functions hold one lock, so this cannot race with
            // another Rust thread reading or writing the environment (candle and rayon read
            // it through `std::env::var`). It runs once, when the first model is built.
            unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
        }
    });
    ProcessSettings {
        allocator_tuned: ALLOCATOR_TUNED.load(Ordering::SeqCst),
        candle_serial: std::env::var("CANDLE_NUM_THREADS").is_ok_and(|v| v.trim() == "1"),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_thresholds() -> bool {
    let (Ok(mmap), Ok(top)) = (
        libc::c_int::try_from(KEEP_BYTES),
        libc::c_int::try_from(KEEP_TOP_BYTES),
    ) else {
        return false;
    };
    // SAFETY: mallopt only sets allocator parameters, under glibc's own arena locks; it may
    // be called at any time from any thread.
    let (mmap, trim) = unsafe {
        (
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap),
            libc::mallopt(libc::M_TRIM_THRESHOLD, top),
        )
    };
    mmap == 1 && trim == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_is_idempotent_and_applies_both_settings() {
        let first = configure();
        assert_eq!(configure(), first, "a second call changes nothing");
        if std::env::var_os(OPT_OUT_VAR).is_none() {
            // glibc accepts both thresholds; candle's pool is serial unless the test runner
            // set its own thread count.
            if cfg!(all(target_os = "linux", target_env = "gnu")) {
                assert!(first.allocator_tuned, "glibc refused the thresholds");
            }
            assert_eq!(
                std::env::var("CANDLE_NUM_THREADS").is_ok_and(|v| v.trim() == "1"),
                first.candle_serial
            );
        }
    }
}
