//! The shared-memory walk in C (c/walk.c), for benchmarks: the floor nbshm's Rust data path is
//! compared with. Its counts use the same fields as `nbshm::stats::BatchCounts`.

use core::ffi::c_void;

/// Counts the C walk produces (layout shared with c/walk.c).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CCounts {
    /// NBLs.
    pub nbls: u64,
    /// NET_BUFFERs.
    pub net_buffers: u64,
    /// NET_BUFFERs walked.
    pub walked: u64,
    /// Walked NET_BUFFERs with segments.
    pub with_shared_memory: u64,
    /// Segments.
    pub segments: u64,
    /// Bytes.
    pub shared_bytes: u64,
    /// Longest chain.
    pub max_chain: u32,
    /// Padding.
    pub pad: u32,
    /// Anomalies by kind (nbshm's order).
    pub anomalies: [u64; 5],
}

unsafe extern "C" {
    fn nbshm_c_walk(nbls: *const c_void, bound: u32, floor: usize, walk: i32, counts: *mut CCounts) -> u64;
}

/// Walks the chain `nbls` with the C code; returns the NBL count and adds into `counts`.
///
/// # Safety
/// `nbls` must be a NULL-terminated NBL chain (WDK layout) readable for the call, and with
/// `walk` every `SharedMemoryInfo` must be a readable chain for every pointer at or above
/// `floor` that is 8-byte aligned, within `bound` links.
pub unsafe fn c_walk(nbls: *const c_void, bound: u32, floor: usize, walk: bool, counts: &mut CCounts) -> u64 {
    // SAFETY: forwarded contract; `counts` is a valid, exclusive struct of the C layout.
    unsafe { nbshm_c_walk(nbls, bound, floor, i32::from(walk), counts) }
}
