//! A counting allocator for the network-facing targets: each input's peak heap use above what
//! was live before it must stay within a small multiple of the input's size, so a parser that
//! amplifies (a few bytes on the wire, hundreds in memory) fails the run as a crash would.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap bytes one input may take beyond its own size times `factor`.
const SLACK: usize = 256 * 1024;

/// Runs `parse` on `data` and panics when its peak heap use passes `factor` x the input.
pub fn bounded(data: &[u8], factor: usize, parse: impl FnOnce(&[u8])) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    parse(data);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let bound = factor * data.len() + SLACK;
    assert!(
        peak <= bound,
        "{} input bytes took {peak} heap bytes at the peak (bound {bound})",
        data.len()
    );
}
