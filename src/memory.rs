//! Handing freed memory back to the system. glibc's allocator keeps what threads freed in their
//! arenas for reuse, so after a retired model version's sessions and weights are dropped, tens
//! to hundreds of MiB stay resident although nothing uses them (measured: A0 reloaded again and
//! again moved between +20 and +150 MiB of its first resident size). `malloc_trim(0)` returns
//! the free pages of every arena. Elsewhere (musl, other systems) this does nothing: those
//! allocators return large blocks themselves or have no such call.

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
