//! The WDK's NET_BUFFER and shared-memory accessor macros, and a bounded shared-memory walker.
//!
//! The accessors read exactly the field the WDK macro of the same name reads (ndis-reference.md
//! C.11, from the nblaccessors DDI pages and the header text), take and return raw pointers like
//! the macros, and are `#[inline(always)]`: a call compiles to the single load the macro is.
//!
//! [`SegmentWalker`] is the safe layer over them: one safety contract at its constructor, then an
//! iterator of [`Segment`]s that never follows more than the configured bound of links, never
//! dereferences a NULL or misaligned pointer, never allocates and never panics. It classifies
//! what it sees into [`Anomalies`], each kind at most once per NET_BUFFER.

use core::mem::align_of;

use crate::sys::{NDIS_HANDLE, NET_BUFFER, NET_BUFFER_LIST, NET_BUFFER_SHARED_MEMORY};

// --- Traversal accessors -----------------------------------------------------------------------

/// `NET_BUFFER_LIST_NEXT_NBL(nbl)`: `nbl->Next`.
///
/// # Safety
/// `nbl` must point to a readable `NET_BUFFER_LIST`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_list_next_nbl(nbl: *const NET_BUFFER_LIST) -> *mut NET_BUFFER_LIST {
    // SAFETY: the caller guarantees `nbl` is readable.
    unsafe { (*nbl).Next }
}

/// `NET_BUFFER_LIST_FIRST_NB(nbl)`: `nbl->FirstNetBuffer`.
///
/// # Safety
/// `nbl` must point to a readable `NET_BUFFER_LIST`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_list_first_nb(nbl: *const NET_BUFFER_LIST) -> *mut NET_BUFFER {
    // SAFETY: the caller guarantees `nbl` is readable.
    unsafe { (*nbl).FirstNetBuffer }
}

/// `NET_BUFFER_NEXT_NB(nb)`: `nb->Next`.
///
/// # Safety
/// `nb` must point to a readable `NET_BUFFER`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_next_nb(nb: *const NET_BUFFER) -> *mut NET_BUFFER {
    // SAFETY: the caller guarantees `nb` is readable.
    unsafe { (*nb).Next }
}

/// `NET_BUFFER_DATA_LENGTH(nb)`: `nb->DataLength` (the `ULONG` view of the length union).
///
/// # Safety
/// `nb` must point to a readable `NET_BUFFER`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_data_length(nb: *const NET_BUFFER) -> u32 {
    // SAFETY: the caller guarantees `nb` is readable.
    unsafe { (*nb).DataLength }
}

// --- Shared-memory accessors (NDIS 6.20+) ------------------------------------------------------

/// `NET_BUFFER_FIRST_SHARED_MEM_INFO(nb)`: `nb->SharedMemoryInfo`, the first segment or NULL.
///
/// The slot is a union with `ScatterGatherList`: it holds a shared-memory chain only where a
/// rule says so (on receive, `NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID`). No DDI page
/// exists for this macro; the header defines it as this plain field read.
///
/// # Safety
/// `nb` must point to a readable `NET_BUFFER`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_first_shared_mem_info(nb: *const NET_BUFFER) -> *mut NET_BUFFER_SHARED_MEMORY {
    // SAFETY: the caller guarantees `nb` is readable.
    unsafe { (*nb).SharedMemoryInfo }
}

/// `NET_BUFFER_SHARED_MEM_NEXT_SEGMENT(shi)`: `shi->NextSharedMemorySegment`, or NULL at the end.
///
/// # Safety
/// `shi` must point to a readable `NET_BUFFER_SHARED_MEMORY`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_shared_mem_next_segment(
    shi: *const NET_BUFFER_SHARED_MEMORY,
) -> *mut NET_BUFFER_SHARED_MEMORY {
    // SAFETY: the caller guarantees `shi` is readable.
    unsafe { (*shi).NextSharedMemorySegment }
}

/// `NET_BUFFER_SHARED_MEM_FLAGS(shi)`: `shi->SharedMemoryFlags` (reserved by the docs).
///
/// # Safety
/// `shi` must point to a readable `NET_BUFFER_SHARED_MEMORY`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_shared_mem_flags(shi: *const NET_BUFFER_SHARED_MEMORY) -> u32 {
    // SAFETY: the caller guarantees `shi` is readable.
    unsafe { (*shi).SharedMemoryFlags }
}

/// `NET_BUFFER_SHARED_MEM_HANDLE(shi)`: `shi->SharedMemoryHandle`, the opaque handle that
/// `NdisAllocateSharedMemory` returned.
///
/// # Safety
/// `shi` must point to a readable `NET_BUFFER_SHARED_MEMORY`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_shared_mem_handle(shi: *const NET_BUFFER_SHARED_MEMORY) -> NDIS_HANDLE {
    // SAFETY: the caller guarantees `shi` is readable.
    unsafe { (*shi).SharedMemoryHandle }
}

/// `NET_BUFFER_SHARED_MEM_OFFSET(shi)`: `shi->SharedMemoryOffset`, the byte offset of the data
/// from the start of the shared-memory buffer.
///
/// Documentation slip: the 2017 page for this macro (windows-driver-docs-pr,
/// `net-buffer-shared-mem-offset.md`) declares its parameter as a `PNET_BUFFER` and its remarks
/// name `NET_BUFFER_SHARED_MEM_HANDLE`; the parameter is a `PNET_BUFFER_SHARED_MEMORY` and the
/// macro reads the offset, as the current DDI page (`nf-nblaccessors-net_buffer_shared_mem_offset`)
/// and the header say.
///
/// # Safety
/// `shi` must point to a readable `NET_BUFFER_SHARED_MEMORY`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_shared_mem_offset(shi: *const NET_BUFFER_SHARED_MEMORY) -> u32 {
    // SAFETY: the caller guarantees `shi` is readable.
    unsafe { (*shi).SharedMemoryOffset }
}

/// `NET_BUFFER_SHARED_MEM_LENGTH(shi)`: `shi->SharedMemoryLength`, the length of this segment.
///
/// Documentation slip: the 2017 page (`net-buffer-shared-mem-length.md`) says the macro returns
/// the "offset"; it returns the length.
///
/// # Safety
/// `shi` must point to a readable `NET_BUFFER_SHARED_MEMORY`.
#[must_use]
#[inline(always)]
pub unsafe fn net_buffer_shared_mem_length(shi: *const NET_BUFFER_SHARED_MEMORY) -> u32 {
    // SAFETY: the caller guarantees `shi` is readable.
    unsafe { (*shi).SharedMemoryLength }
}

// --- The walker --------------------------------------------------------------------------------

/// Default bound on segments followed per NET_BUFFER (`MaxSegmentsPerNetBuffer`).
pub const DEFAULT_MAX_SEGMENTS: u32 = 64;

/// Kinds of chain anomaly. Each is counted at most once per NET_BUFFER.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// More segments than the bound; a cycle always ends up here.
    Overlong = 0,
    /// `offset + length` does not fit in 32 bits.
    OffsetOverflow = 1,
    /// A segment with a NULL `SharedMemoryHandle`.
    NullHandle = 2,
    /// A segment with `SharedMemoryLength == 0`.
    ZeroLength = 3,
    /// A segment pointer that cannot be a segment: misaligned, or below [`ADDRESS_FLOOR`]
    /// (NULL-page or, in kernel builds, user-space/non-canonical). The walk stops without
    /// reading it.
    BadPointer = 4,
}

impl AnomalyKind {
    /// Every kind, in counter order.
    pub const ALL: [Self; ANOMALY_KINDS] =
        [Self::Overlong, Self::OffsetOverflow, Self::NullHandle, Self::ZeroLength, Self::BadPointer];

    /// The name used in statistics, ETW and JSON (`snake_case`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Overlong => "overlong",
            Self::OffsetOverflow => "offset_overflow",
            Self::NullHandle => "null_handle",
            Self::ZeroLength => "zero_length",
            Self::BadPointer => "bad_pointer",
        }
    }

    /// Counter index of this kind.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Parses a [`name`](Self::name).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Lowest address a segment may live at. Kernel builds: the start of the upper (system) half
/// of the address space on x64 and ARM64, so a user-mode or non-canonical pointer (which would
/// fault at DISPATCH_LEVEL) is reported instead of dereferenced. Host builds: above the NULL
/// page.
#[cfg(feature = "kernel")]
pub const ADDRESS_FLOOR: usize = 0xFFFF_8000_0000_0000;
/// Lowest address a segment may live at (host build: above the NULL page).
#[cfg(not(feature = "kernel"))]
pub const ADDRESS_FLOOR: usize = 0x1000;

/// Number of [`AnomalyKind`]s.
pub const ANOMALY_KINDS: usize = 5;

/// A set of [`AnomalyKind`]s (a bit per kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(u8);

impl Anomalies {
    /// The empty set.
    pub const NONE: Self = Self(0);

    /// Whether `kind` is in the set.
    #[must_use]
    #[inline]
    pub const fn contains(self, kind: AnomalyKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    /// Adds `kind`.
    #[inline]
    pub fn insert(&mut self, kind: AnomalyKind) {
        self.0 |= 1 << kind as u8;
    }

    /// Whether the set is empty.
    #[must_use]
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of kinds in the set.
    #[must_use]
    #[inline]
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The raw bits (bit `n` = kind with index `n`).
    #[must_use]
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Iterates the kinds in the set.
    pub fn iter(self) -> impl Iterator<Item = AnomalyKind> {
        AnomalyKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// One segment of a shared-memory chain, as read through the accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Position in the chain, from 0.
    pub index: u32,
    /// `NET_BUFFER_SHARED_MEM_HANDLE`, as an integer (the handle is opaque).
    pub handle: usize,
    /// `NET_BUFFER_SHARED_MEM_OFFSET`.
    pub offset: u32,
    /// `NET_BUFFER_SHARED_MEM_LENGTH`.
    pub length: u32,
    /// `NET_BUFFER_SHARED_MEM_FLAGS`.
    pub flags: u32,
}

impl Segment {
    /// `offset + length`, exact (it may exceed 32 bits: see [`AnomalyKind::OffsetOverflow`]).
    #[must_use]
    #[inline]
    pub const fn end(&self) -> u64 {
        self.offset as u64 + self.length as u64
    }
}

/// Iterator over the shared-memory segments of one NET_BUFFER, bounded and anomaly-aware.
///
/// Yields at most `bound` segments. Afterwards, [`anomalies`](Self::anomalies) tells what was
/// wrong with the chain: a chain with more than `bound` links (including any cycle) is
/// [`AnomalyKind::Overlong`]; a link that cannot be a segment (misaligned, or below
/// [`ADDRESS_FLOOR`]) stops the walk and is [`AnomalyKind::BadPointer`]; segment defects are
/// flagged as they are yielded.
#[derive(Debug)]
pub struct SegmentWalker {
    next: *const NET_BUFFER_SHARED_MEMORY,
    index: u32,
    bound: u32,
    anomalies: Anomalies,
}

impl SegmentWalker {
    /// Walks the chain that starts at `first` (NULL: an empty chain).
    ///
    /// # Safety
    /// Every pointer reachable from `first` by following `NextSharedMemorySegment` at most
    /// `bound` times that is non-NULL, 8-byte aligned and at or above [`ADDRESS_FLOOR`] must
    /// point to memory readable as a `NET_BUFFER_SHARED_MEMORY` for the life of the walker.
    /// Nothing else is assumed: NULL ends the walk, any other pointer is reported and never
    /// read, and no link past the bound is ever read.
    #[must_use]
    #[inline]
    pub unsafe fn new(first: *const NET_BUFFER_SHARED_MEMORY, bound: u32) -> Self {
        Self { next: first, index: 0, bound, anomalies: Anomalies::NONE }
    }

    /// Walks the chain of `nb` (`NET_BUFFER_FIRST_SHARED_MEM_INFO(nb)`).
    ///
    /// # Safety
    /// `nb` must be readable as a `NET_BUFFER`, its `SharedMemoryInfo` slot must hold a
    /// shared-memory chain (not a scatter-gather list), and that chain must satisfy the contract
    /// of [`SegmentWalker::new`].
    #[must_use]
    #[inline]
    pub unsafe fn for_net_buffer(nb: *const NET_BUFFER, bound: u32) -> Self {
        // SAFETY: the caller guarantees `nb` is readable.
        let first = unsafe { net_buffer_first_shared_mem_info(nb) };
        // SAFETY: the caller guarantees the chain satisfies `new`'s contract.
        unsafe { Self::new(first, bound) }
    }

    /// Anomalies seen so far (complete once the iterator has returned `None`).
    #[must_use]
    #[inline]
    pub const fn anomalies(&self) -> Anomalies {
        self.anomalies
    }

    /// Segments yielded so far.
    #[must_use]
    #[inline]
    pub const fn walked(&self) -> u32 {
        self.index
    }
}

impl Iterator for SegmentWalker {
    type Item = Segment;

    #[inline]
    fn next(&mut self) -> Option<Segment> {
        let shi = self.next;
        if shi.is_null() {
            return None;
        }
        if self.index >= self.bound {
            // A non-NULL link beyond the bound: the chain is longer than allowed (or cyclic).
            self.anomalies.insert(AnomalyKind::Overlong);
            self.next = core::ptr::null();
            return None;
        }
        if !shi.addr().is_multiple_of(align_of::<NET_BUFFER_SHARED_MEMORY>()) || shi.addr() < ADDRESS_FLOOR {
            self.anomalies.insert(AnomalyKind::BadPointer);
            self.next = core::ptr::null();
            return None;
        }
        // `shi` is non-NULL, aligned and within `bound` links of the first segment, so the
        // constructor's contract makes it readable: that is the SAFETY argument of each read.
        let seg = Segment {
            index: self.index,
            // SAFETY: `shi` is readable (above).
            handle: unsafe { net_buffer_shared_mem_handle(shi) }.addr(),
            // SAFETY: `shi` is readable (above).
            offset: unsafe { net_buffer_shared_mem_offset(shi) },
            // SAFETY: `shi` is readable (above).
            length: unsafe { net_buffer_shared_mem_length(shi) },
            // SAFETY: `shi` is readable (above).
            flags: unsafe { net_buffer_shared_mem_flags(shi) },
        };
        // SAFETY: as above.
        self.next = unsafe { net_buffer_shared_mem_next_segment(shi) };
        self.index += 1;
        if seg.handle == 0 {
            self.anomalies.insert(AnomalyKind::NullHandle);
        }
        if seg.length == 0 {
            self.anomalies.insert(AnomalyKind::ZeroLength);
        }
        if seg.offset.checked_add(seg.length).is_none() {
            self.anomalies.insert(AnomalyKind::OffsetOverflow);
        }
        Some(seg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.bound.saturating_sub(self.index) as usize;
        (0, Some(if self.next.is_null() { 0 } else { left }))
    }
}

/// What one NET_BUFFER's chain amounts to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainSummary {
    /// Segments walked (at most the bound).
    pub segments: u32,
    /// Sum of the segments' lengths.
    pub shared_bytes: u64,
    /// Anomalies of the chain.
    pub anomalies: Anomalies,
}

/// Walks a whole chain, calling `on_segment` for each segment, and summarizes it.
///
/// # Safety
/// As [`SegmentWalker::new`].
#[inline]
pub unsafe fn walk_chain(
    first: *const NET_BUFFER_SHARED_MEMORY,
    bound: u32,
    mut on_segment: impl FnMut(&Segment),
) -> ChainSummary {
    // SAFETY: forwarded contract.
    let mut walker = unsafe { SegmentWalker::new(first, bound) };
    let mut shared_bytes = 0u64;
    for seg in walker.by_ref() {
        shared_bytes += u64::from(seg.length);
        on_segment(&seg);
    }
    ChainSummary { segments: walker.walked(), shared_bytes, anomalies: walker.anomalies() }
}

#[cfg(test)]
mod tests {
    use core::ptr;

    use super::*;

    fn seg(handle: usize, offset: u32, length: u32) -> NET_BUFFER_SHARED_MEMORY {
        NET_BUFFER_SHARED_MEMORY {
            NextSharedMemorySegment: ptr::null_mut(),
            SharedMemoryFlags: 0,
            SharedMemoryHandle: ptr::without_provenance_mut(handle),
            SharedMemoryOffset: offset,
            SharedMemoryLength: length,
        }
    }

    #[test]
    fn empty_chain_yields_nothing() {
        // SAFETY: NULL is an empty chain.
        let mut w = unsafe { SegmentWalker::new(ptr::null(), 64) };
        assert_eq!(w.next(), None);
        assert!(w.anomalies().is_empty());
    }

    #[test]
    fn two_segments_in_order() {
        let mut b = seg(0x2000, 100, 50);
        let mut a = seg(0x1000, 0, 1500);
        a.NextSharedMemorySegment = &raw mut b;
        // SAFETY: both segments live on this stack frame.
        let s = unsafe { walk_chain(&raw const a, 64, |_| {}) };
        assert_eq!(s, ChainSummary { segments: 2, shared_bytes: 1550, anomalies: Anomalies::NONE });
    }

    #[test]
    fn self_loop_is_overlong_and_bounded() {
        let mut a = seg(0x1000, 0, 10);
        a.NextSharedMemorySegment = &raw mut a;
        let mut n = 0;
        // SAFETY: the one segment lives on this stack frame.
        let s = unsafe { walk_chain(&raw const a, 7, |_| n += 1) };
        assert_eq!(n, 7);
        assert_eq!(s.segments, 7);
        assert!(s.anomalies.contains(AnomalyKind::Overlong));
        assert_eq!(s.anomalies.len(), 1);
    }

    #[test]
    fn exactly_bound_segments_is_not_overlong() {
        let mut b = seg(0x1000, 0, 10);
        let mut a = seg(0x1000, 0, 10);
        a.NextSharedMemorySegment = &raw mut b;
        // SAFETY: both segments live on this stack frame.
        let s = unsafe { walk_chain(&raw const a, 2, |_| {}) };
        assert_eq!(s.segments, 2);
        assert!(s.anomalies.is_empty());
    }

    #[test]
    fn segment_defects_flagged_once() {
        let mut c = seg(0, 0, 0);
        let mut b = seg(0, u32::MAX, 1);
        let mut a = seg(0x1000, 0, 0);
        b.NextSharedMemorySegment = &raw mut c;
        a.NextSharedMemorySegment = &raw mut b;
        // SAFETY: all segments live on this stack frame.
        let s = unsafe { walk_chain(&raw const a, 64, |_| {}) };
        assert_eq!(s.segments, 3);
        let kinds: Vec<_> = s.anomalies.iter().collect();
        assert_eq!(kinds, [AnomalyKind::OffsetOverflow, AnomalyKind::NullHandle, AnomalyKind::ZeroLength]);
    }

    #[test]
    fn misaligned_link_is_not_read() {
        let mut a = seg(0x1000, 0, 10);
        a.NextSharedMemorySegment = ptr::without_provenance_mut(0x1003);
        // SAFETY: `a` lives here; the misaligned link must never be dereferenced.
        let s = unsafe { walk_chain(&raw const a, 64, |_| {}) };
        assert_eq!(s.segments, 1);
        assert!(s.anomalies.contains(AnomalyKind::BadPointer));
    }

    #[test]
    fn null_page_link_is_not_read() {
        let mut a = seg(0x1000, 0, 10);
        a.NextSharedMemorySegment = ptr::without_provenance_mut(0x10);
        // SAFETY: `a` lives here; the low link must never be dereferenced.
        let s = unsafe { walk_chain(&raw const a, 64, |_| {}) };
        assert_eq!(s.segments, 1);
        assert!(s.anomalies.contains(AnomalyKind::BadPointer));
    }

    #[test]
    fn zero_bound_with_a_chain_is_overlong() {
        let a = seg(0x1000, 0, 10);
        // SAFETY: with bound 0 nothing is read.
        let s = unsafe { walk_chain(&raw const a, 0, |_| {}) };
        assert_eq!(s.segments, 0);
        assert!(s.anomalies.contains(AnomalyKind::Overlong));
    }

    #[test]
    fn anomaly_names_round_trip() {
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::from_name(k.name()), Some(k));
            assert_eq!(AnomalyKind::ALL[k.index()], k);
        }
        assert_eq!(AnomalyKind::from_name("cycle"), None);
    }
}
