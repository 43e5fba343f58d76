//! Non-paged pool allocations with the driver's pool tags (`ExAllocatePool2` /
//! `ExFreePoolWithTag`). The filter allocates only at PASSIVE (attach, DriverEntry), never in
//! the data path. The host model implements both functions and checks every allocation is freed
//! with its tag.

use core::ffi::c_void;
use core::ptr::NonNull;

use crate::sys::{ExAllocatePool2, ExFreePoolWithTag, POOL_FLAG_NON_PAGED};

/// Builds a pool tag from its four characters as they appear in pool dumps (poolmon, `!pool`).
#[must_use]
pub const fn tag(name: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*name)
}

/// Filter module contexts.
pub const TAG_MODULE: u32 = tag(b"NbsM");
/// Per-CPU statistics.
pub const TAG_STATS: u32 = tag(b"NbsC");
/// Handle tables.
pub const TAG_HANDLES: u32 = tag(b"NbsH");
/// The global allocator of kernel builds (nothing in the driver uses it today).
pub const TAG_ALLOC: u32 = tag(b"NbsA");

/// Pool allocations are aligned to `MEMORY_ALLOCATION_ALIGNMENT` (16) on 64-bit Windows; larger
/// alignments are obtained by over-allocating (see [`alloc_aligned`]).
pub const POOL_ALIGNMENT: usize = 16;

/// Allocates `bytes` of zeroed non-paged pool.
#[must_use]
pub fn alloc_zeroed(bytes: usize, tag: u32) -> Option<NonNull<u8>> {
    if bytes == 0 {
        return None;
    }
    // SAFETY: a plain pool allocation; non-paged pool may be allocated at <= DISPATCH_LEVEL.
    // ExAllocatePool2 zeroes the memory unless POOL_FLAG_UNINITIALIZED is given.
    NonNull::new(unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, tag) }.cast())
}

/// Frees memory from [`alloc_zeroed`].
///
/// # Safety
/// `p` must come from [`alloc_zeroed`] with the same `tag` and not have been freed.
pub unsafe fn free(p: NonNull<u8>, tag: u32) {
    // SAFETY: the caller guarantees `p` is a live allocation with `tag`.
    unsafe { ExFreePoolWithTag(p.as_ptr().cast::<c_void>(), tag) }
}

/// An over-allocated block whose usable part is aligned to `align`.
#[derive(Debug)]
pub struct AlignedBlock {
    base: NonNull<u8>,
    aligned: NonNull<u8>,
    tag: u32,
}

impl AlignedBlock {
    /// The aligned, zeroed memory.
    #[must_use]
    pub const fn as_ptr(&self) -> *mut u8 {
        self.aligned.as_ptr()
    }

    /// Frees the block.
    ///
    /// # Safety
    /// No reference into the block may outlive this call.
    pub unsafe fn free(self) {
        // SAFETY: `base` came from `alloc_zeroed` with `tag`.
        unsafe { free(self.base, self.tag) }
    }
}

/// Allocates `bytes` of zeroed non-paged pool aligned to `align` (a power of two).
#[must_use]
pub fn alloc_aligned(bytes: usize, align: usize, tag: u32) -> Option<AlignedBlock> {
    let extra = align.saturating_sub(POOL_ALIGNMENT);
    let base = alloc_zeroed(bytes.checked_add(extra)?, tag)?;
    let offset = base.as_ptr().align_offset(align);
    if offset > extra {
        // SAFETY: just allocated with `tag`, nothing refers to it.
        unsafe { free(base, tag) };
        return None;
    }
    // `offset <= extra`, so the aligned pointer and `bytes` after it are inside the allocation.
    let aligned = NonNull::new(base.as_ptr().wrapping_add(offset))?;
    Some(AlignedBlock { base, aligned, tag })
}
