//! The process's memory as the system sees it: glibc's allocator tuned for large buffers that
//! come and go (`fix_mmap_threshold`), freed pages handed back after a model version is
//! released (`release_freed`), the container's limit and the resident size (for the check
//! before a load, `models::room`).
//!
//! glibc keeps what threads freed in their arenas for reuse, so after a retired version's
//! sessions and weights are dropped, tens to hundreds of MiB can stay resident although nothing
//! uses them; `malloc_trim(0)` returns the free pages of every arena. Elsewhere (musl, other
//! systems) both calls do nothing: those allocators return large blocks themselves or have no
//! such settings.

/// Buffers of this size and more get mappings of their own, returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Fixes glibc's mmap threshold at 4 MiB, unless `MALLOC_MMAP_THRESHOLD_` sets one. By default
/// glibc raises the threshold (up to 32 MiB) after the first large free; from then on the large
/// buffers of fusion and graph optimisation come from the heap, and after a start or a load they
/// stay resident, fragmented. Measured (2-core EPYC): B3 held 730 MiB after a cold start instead
/// of 497 (docs/footprint.md); A0 unloaded and loaded ten times moved between 122 and 241 MiB
/// after 112, and with the fixed threshold stays at 94-98 MiB after 94. The price: fusion gets
/// fresh pages for every large buffer (B3 cold start 7.7 s instead of 6.1). Call it first thing
/// in `main`, before threads allocate.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn fix_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return; // the operator's choice (glibc read it already)
    }
    // SAFETY: mallopt takes two integers and changes one setting of glibc's allocator under
    // its own lock; it touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}

/// Returns freed allocator pages to the system; whether glibc released anything. Call it after
/// a large release, not on a hot path: glibc locks each arena in turn while it walks them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_freed() -> bool {
    // SAFETY: malloc_trim takes no pointers and only reorganises glibc's own free lists, under
    // the arenas' locks; it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed() -> bool {
    false
}

/// The container's memory limit (cgroup v2, or v1), when there is one.
pub(crate) fn container_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let v2 = read("/sys/fs/cgroup/memory.max").and_then(|s| s.trim().parse::<u64>().ok());
    let v1 = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&limit| limit < 1 << 60); // "unlimited" is a huge number there
    v2.or(v1)
}

/// This process's resident size now (`VmRSS`), when the system says.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
