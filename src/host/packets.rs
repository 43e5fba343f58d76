//! NBLs, NET_BUFFERs and VMQ-style shared-memory chains built in host memory, each NBL carrying
//! the model's ownership record, plus an independent reference walk that says what the driver
//! must count for them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, Ordering};

use crate::stats::Direction;
use crate::sys::{NET_BUFFER, NET_BUFFER_LIST, NET_BUFFER_SHARED_MEMORY};

use super::violations::violation;

/// One segment of a chain to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpec {
    /// `SharedMemoryHandle` (0 = NULL).
    pub handle: usize,
    /// `SharedMemoryOffset`.
    pub offset: u32,
    /// `SharedMemoryLength`.
    pub length: u32,
    /// `SharedMemoryFlags`.
    pub flags: u32,
}

/// What a NET_BUFFER's `SharedMemoryInfo` slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainSpec {
    /// NULL: no shared memory.
    None,
    /// A NULL-terminated chain.
    List(Vec<SegmentSpec>),
    /// A chain whose last segment links back to segment `back_to` (a cycle).
    Cycle {
        /// The segments.
        segments: Vec<SegmentSpec>,
        /// Index the last segment points back to.
        back_to: usize,
    },
    /// A chain whose last segment links to a raw address that cannot be a segment (misaligned
    /// or in the NULL page).
    Broken {
        /// The segments.
        segments: Vec<SegmentSpec>,
        /// The bad link.
        link: usize,
    },
    /// The slot holds an arbitrary value that is not a chain (for receives without
    /// `NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID`, or a scatter-gather list pointer).
    Raw(usize),
}

/// What the driver must count for one walked chain (computed without the driver's code).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainExpect {
    /// Segments walked.
    pub segments: u32,
    /// Bytes of the walked segments.
    pub shared_bytes: u64,
    /// Anomaly kinds (bit per `AnomalyKind` index).
    pub anomalies: u8,
}

impl ChainSpec {
    /// The segments stored for this chain.
    #[must_use]
    pub fn segments(&self) -> &[SegmentSpec] {
        match self {
            Self::None | Self::Raw(_) => &[],
            Self::List(s) | Self::Cycle { segments: s, .. } | Self::Broken { segments: s, .. } => s,
        }
    }

    /// The reference walk with the given bound: plain index arithmetic over the spec.
    /// Calls `on_segment` for every segment a correct walker visits.
    pub fn reference_walk(&self, bound: u32, mut on_segment: impl FnMut(&SegmentSpec)) -> ChainExpect {
        const OVERLONG: u8 = 1 << 0;
        const OFFSET_OVERFLOW: u8 = 1 << 1;
        const NULL_HANDLE: u8 = 1 << 2;
        const ZERO_LENGTH: u8 = 1 << 3;
        const BAD_POINTER: u8 = 1 << 4;
        let (segs, after_last): (&[SegmentSpec], Option<Result<usize, ()>>) = match self {
            Self::None | Self::Raw(_) => return ChainExpect::default(),
            Self::List(s) => (s, None),
            Self::Cycle { segments, back_to } => (segments, Some(Ok(*back_to))),
            Self::Broken { segments, .. } => (segments, Some(Err(()))),
        };
        let mut e = ChainExpect::default();
        if segs.is_empty() {
            if matches!(after_last, Some(Err(()))) {
                e.anomalies |= if bound == 0 { OVERLONG } else { BAD_POINTER };
            }
            return e;
        }
        let mut i = 0usize;
        loop {
            if e.segments == bound {
                e.anomalies |= OVERLONG;
                return e;
            }
            let s = &segs[i];
            on_segment(s);
            e.segments += 1;
            e.shared_bytes += u64::from(s.length);
            if s.handle == 0 {
                e.anomalies |= NULL_HANDLE;
            }
            if s.length == 0 {
                e.anomalies |= ZERO_LENGTH;
            }
            if u64::from(s.offset) + u64::from(s.length) > u64::from(u32::MAX) {
                e.anomalies |= OFFSET_OVERFLOW;
            }
            if i + 1 < segs.len() {
                i += 1;
                continue;
            }
            match after_last {
                None => return e,
                Some(Ok(back)) => i = back,
                Some(Err(())) => {
                    if e.segments == bound {
                        e.anomalies |= OVERLONG;
                    } else {
                        e.anomalies |= BAD_POINTER;
                    }
                    return e;
                }
            }
        }
    }
}

/// One NET_BUFFER to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbSpec {
    /// `DataLength`.
    pub data_length: u32,
    /// The shared-memory slot.
    pub chain: ChainSpec,
}

/// One NBL to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NblSpec {
    /// Its NET_BUFFERs, in order.
    pub nbs: Vec<NbSpec>,
}

/// Who holds an NBL (the model's view of the ownership rules).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Built, not yet handed to the filter.
    Model = 0,
    /// The filter owns it (inside a callback, or queued by it).
    Filter = 1,
    /// Passed down by the filter; the miniport side of the model holds it.
    Below = 2,
    /// Indicated up by the filter; the protocol side of the model holds it.
    Above = 3,
    /// Back with its originator (send completed / receive returned): finished.
    Home = 4,
}

impl Owner {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Model,
            1 => Self::Filter,
            2 => Self::Below,
            3 => Self::Above,
            _ => Self::Home,
        }
    }
}

/// Marks a live model NBL.
pub const NBL_MAGIC: u64 = 0x4E42_5348_4E42_4C21; // "NBSHNBL!"

/// The model's record of one NBL.
#[derive(Debug)]
pub struct Track {
    magic: u64,
    /// Unique id.
    pub id: u64,
    /// Miniport index.
    pub miniport: usize,
    /// Direction it travels.
    pub dir: Direction,
    owner: AtomicU8,
    /// Flags the filter received it with.
    pub flags_in: AtomicU32,
    /// Port the filter received it on.
    pub port_in: AtomicU32,
    /// Indicated with `NDIS_RECEIVE_FLAGS_RESOURCES`.
    pub resources: AtomicBool,
    /// The filter passed it on (down or up) at least once.
    pub forwarded: AtomicBool,
    /// `FirstNetBuffer` saved while the model holds the NBL with a trap pointer in its place.
    saved_first: AtomicPtr<NET_BUFFER>,
    fingerprint: u64,
    /// What it was built from.
    pub spec: NblSpec,
}

/// An NBL with its NET_BUFFERs and chains, all in one allocation tree with stable addresses.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct ModelNbl {
    /// The NBL handed to the driver (first: an NBL pointer is a `ModelNbl` pointer).
    pub nbl: NET_BUFFER_LIST,
    /// The model's record.
    pub track: Track,
    nbs: Box<[ModelNb]>,
}

#[repr(C, align(16))]
#[derive(Debug)]
struct ModelNb {
    nb: NET_BUFFER,
    segments: Box<[NET_BUFFER_SHARED_MEMORY]>,
}

fn zeroed_nbl() -> NET_BUFFER_LIST {
    // SAFETY: NET_BUFFER_LIST is plain data (pointers, integers); all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn zeroed_nb() -> NET_BUFFER {
    // SAFETY: NET_BUFFER is plain data; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

impl ModelNbl {
    /// Builds an NBL from `spec`. Fields the filter must leave alone (reserved areas, pool
    /// handles, NBL info) get recognisable values so that a change shows in the fingerprint.
    #[must_use]
    pub fn build(id: u64, miniport: usize, dir: Direction, spec: NblSpec) -> Box<Self> {
        let mut nbs: Box<[ModelNb]> = spec
            .nbs
            .iter()
            .map(|s| ModelNb {
                nb: zeroed_nb(),
                segments: s
                    .chain
                    .segments()
                    .iter()
                    .map(|g| NET_BUFFER_SHARED_MEMORY {
                        NextSharedMemorySegment: ptr::null_mut(),
                        SharedMemoryFlags: g.flags,
                        SharedMemoryHandle: ptr::without_provenance_mut(g.handle),
                        SharedMemoryOffset: g.offset,
                        SharedMemoryLength: g.length,
                    })
                    .collect(),
            })
            .collect();
        // Link segments and NET_BUFFERs in place (the boxes never move again).
        let count = nbs.len();
        let base: *mut ModelNb = nbs.as_mut_ptr();
        for (i, s) in spec.nbs.iter().enumerate() {
            let elem = base.wrapping_add(i);
            // SAFETY: `i < count`; each element is accessed through its own raw pointer.
            let mnb = unsafe { &mut *elem };
            let segs: *mut NET_BUFFER_SHARED_MEMORY = mnb.segments.as_mut_ptr();
            let n = mnb.segments.len();
            for j in 0..n.saturating_sub(1) {
                let (cur, next) = (segs.wrapping_add(j), segs.wrapping_add(j + 1));
                // SAFETY: `j + 1 < n`: both are elements of the segment slice.
                unsafe { (*cur).NextSharedMemorySegment = next };
            }
            if n > 0 {
                let last = segs.wrapping_add(n - 1);
                // SAFETY: `n - 1 < n`.
                let last = unsafe { &mut *last };
                last.NextSharedMemorySegment = match &s.chain {
                    ChainSpec::Cycle { back_to, .. } => segs.wrapping_add(*back_to),
                    ChainSpec::Broken { link, .. } => ptr::without_provenance_mut(*link),
                    _ => ptr::null_mut(),
                };
            }
            mnb.nb.DataLength = s.data_length;
            mnb.nb.DataOffset = 64;
            mnb.nb.NdisPoolHandle = ptr::without_provenance_mut(0x5EED_0000 + i);
            mnb.nb.ProtocolReserved = [ptr::without_provenance_mut(0x9E0_0000 + i); 6];
            mnb.nb.MiniportReserved = [ptr::without_provenance_mut(0x1111_0000 + i); 4];
            mnb.nb.SharedMemoryInfo = match &s.chain {
                ChainSpec::None => ptr::null_mut(),
                ChainSpec::Raw(v) => ptr::without_provenance_mut(*v),
                ChainSpec::Broken { segments, link } if segments.is_empty() => {
                    ptr::without_provenance_mut(*link)
                }
                // An empty list is no chain at all (the empty slice's pointer is dangling).
                _ if n == 0 => ptr::null_mut(),
                _ => segs,
            };
            mnb.nb.Next = if i + 1 < count { base.wrapping_add(i + 1).cast() } else { ptr::null_mut() };
        }
        let mut nbl = zeroed_nbl();
        nbl.FirstNetBuffer = if count == 0 { ptr::null_mut() } else { base.cast() };
        nbl.NdisPoolHandle = ptr::without_provenance_mut(0x900D_0000);
        nbl.SourceHandle = ptr::without_provenance_mut(0x50C0_0000 + miniport);
        nbl.ProtocolReserved = [ptr::without_provenance_mut(0x0BAD_CAFE); 4];
        nbl.NblFlags = 0x10;
        nbl.NetBufferListInfo[8] = ptr::without_provenance_mut(0x0000_4A5B); // HashValue
        let mut this = Box::new(Self {
            nbl,
            track: Track {
                magic: NBL_MAGIC,
                id,
                miniport,
                dir,
                owner: AtomicU8::new(Owner::Model as u8),
                flags_in: AtomicU32::new(0),
                port_in: AtomicU32::new(0),
                resources: AtomicBool::new(false),
                forwarded: AtomicBool::new(false),
                saved_first: AtomicPtr::new(ptr::null_mut()),
                fingerprint: 0,
                spec,
            },
            nbs,
        });
        this.track.fingerprint = this.fingerprint();
        this
    }

    /// Hash of everything the filter must not change: every NET_BUFFER and segment field and
    /// every NBL field except `Next` (relinked by whoever holds the NBL) and `Status` (set by
    /// whoever completes it).
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        let n = &self.nbl;
        (n.FirstNetBuffer.addr(), n.Context.addr(), n.ParentNetBufferList.addr(), n.NdisPoolHandle.addr())
            .hash(&mut h);
        n.NdisReserved.map(<*mut _>::addr).hash(&mut h);
        n.ProtocolReserved.map(<*mut _>::addr).hash(&mut h);
        n.MiniportReserved.map(<*mut _>::addr).hash(&mut h);
        (n.Scratch.addr(), n.SourceHandle.addr(), n.NblFlags, n.ChildRefCount, n.Flags).hash(&mut h);
        n.NetBufferListInfo.map(<*mut _>::addr).hash(&mut h);
        for mnb in &self.nbs {
            let b = &mnb.nb;
            (b.Next.addr(), b.CurrentMdl.addr(), b.CurrentMdlOffset, b.DataLength, b.stDataLengthHigh)
                .hash(&mut h);
            (b.MdlChain.addr(), b.DataOffset, b.ChecksumBias, b.Reserved, b.NdisPoolHandle.addr())
                .hash(&mut h);
            b.NdisReserved.map(<*mut _>::addr).hash(&mut h);
            b.ProtocolReserved.map(<*mut _>::addr).hash(&mut h);
            b.MiniportReserved.map(<*mut _>::addr).hash(&mut h);
            (b.DataPhysicalAddress, b.SharedMemoryInfo.addr()).hash(&mut h);
            for s in &mnb.segments {
                (s.NextSharedMemorySegment.addr(), s.SharedMemoryFlags, s.SharedMemoryHandle.addr())
                    .hash(&mut h);
                (s.SharedMemoryOffset, s.SharedMemoryLength).hash(&mut h);
            }
        }
        h.finish()
    }

    /// Whether the filter left everything it must not change untouched.
    #[must_use]
    pub fn unchanged(&self) -> bool {
        self.fingerprint() == self.track.fingerprint
    }

    /// The NBL pointer handed to the driver.
    #[must_use]
    pub fn as_nbl(&mut self) -> *mut NET_BUFFER_LIST {
        &raw mut self.nbl
    }

    /// The model NBL behind an NBL pointer, if it is one (checks the magic).
    ///
    /// # Safety
    /// `nbl` must be NULL or point to readable memory of at least a `ModelNbl`'s size if it is
    /// a model NBL (the model only ever hands out model NBLs).
    #[must_use]
    pub unsafe fn from_nbl<'a>(nbl: *mut NET_BUFFER_LIST) -> Option<&'a mut Self> {
        if nbl.is_null() {
            return None;
        }
        // SAFETY: every NBL the model hands out is the first field of a live ModelNbl.
        let m = unsafe { &mut *nbl.cast::<Self>() };
        (m.track.magic == NBL_MAGIC).then_some(m)
    }

    /// Current owner.
    #[must_use]
    pub fn owner(&self) -> Owner {
        Owner::from_u8(self.track.owner.load(Ordering::Acquire))
    }

    /// Moves ownership `from` -> `to`; records a violation (naming `api`) if it was not `from`.
    pub fn transfer(&self, from: Owner, to: Owner, api: &'static str) -> bool {
        match self.track.owner.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(now) => {
                violation(
                    api,
                    format!(
                        "NBL #{} ({:?}) is held by {:?}, expected {:?}",
                        self.track.id,
                        self.track.dir,
                        Owner::from_u8(now),
                        from
                    ),
                );
                false
            }
        }
    }

    /// The model takes the NBL: replaces `FirstNetBuffer` with a trap so that a filter that
    /// touches the NBL after handing it off walks the trap (and is caught by the counts and the
    /// trap handle) instead of the real NET_BUFFERs.
    pub fn poison(&mut self) {
        let first = std::mem::replace(&mut self.nbl.FirstNetBuffer, trap_nb());
        self.track.saved_first.store(first, Ordering::Release);
        self.nbl.Next = ptr::null_mut();
    }

    /// Undoes [`poison`](Self::poison) before the model hands the NBL back.
    pub fn unpoison(&mut self) {
        let first = self.track.saved_first.swap(ptr::null_mut(), Ordering::AcqRel);
        if !first.is_null() {
            self.nbl.FirstNetBuffer = first;
        }
    }
}

/// Handle value of the trap segment: seeing it in the driver's statistics or events means the
/// driver read an NBL it had already handed off.
pub const TRAP_HANDLE: usize = 0x7EA9_7EA9_0000;

struct Trap {
    nb: NET_BUFFER,
    seg: NET_BUFFER_SHARED_MEMORY,
}

// SAFETY: the trap is written once, then only read.
unsafe impl Send for Trap {}
// SAFETY: as above.
unsafe impl Sync for Trap {}

fn trap_nb() -> *mut NET_BUFFER {
    static TRAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let addr = *TRAP.get_or_init(|| {
        let trap = Box::leak(Box::new(Trap {
            nb: zeroed_nb(),
            seg: NET_BUFFER_SHARED_MEMORY {
                NextSharedMemorySegment: ptr::null_mut(),
                SharedMemoryFlags: 0,
                SharedMemoryHandle: ptr::without_provenance_mut(TRAP_HANDLE),
                SharedMemoryOffset: 0,
                SharedMemoryLength: 0x7EA9,
            },
        }));
        trap.nb.DataLength = 0x7EA9;
        trap.nb.SharedMemoryInfo = &raw mut trap.seg;
        (&raw mut trap.nb).expose_provenance()
    });
    ptr::with_exposed_provenance_mut(addr)
}

/// Links boxed NBLs into a chain (in order) and returns its head; ownership moves into the
/// chain (reclaim with [`unchain`]).
#[must_use]
pub fn chain(nbls: Vec<Box<ModelNbl>>) -> *mut NET_BUFFER_LIST {
    let mut head: *mut NET_BUFFER_LIST = ptr::null_mut();
    for mut b in nbls.into_iter().rev() {
        b.nbl.Next = head;
        head = Box::into_raw(b).cast();
    }
    head
}

/// Splits a chain into its NBL pointers (does not free anything).
///
/// # Safety
/// `head` must be a NULL-terminated chain of live NBLs.
#[must_use]
pub unsafe fn chain_members(head: *mut NET_BUFFER_LIST) -> Vec<*mut NET_BUFFER_LIST> {
    let mut v = Vec::new();
    let mut p = head;
    while !p.is_null() {
        v.push(p);
        // SAFETY: live NBL (caller's guarantee).
        p = unsafe { (*p).Next };
        if v.len() > 1_000_000 {
            violation("NBL chain", "more than a million NBLs in one chain (cycle?)".into());
            break;
        }
    }
    v
}

/// Frees a model NBL that came home.
///
/// # Safety
/// `nbl` must be a model NBL (from [`chain`]) that nothing refers to any more.
pub unsafe fn free(nbl: *mut NET_BUFFER_LIST) {
    // SAFETY: it came from Box::into_raw in `chain`.
    drop(unsafe { Box::from_raw(nbl.cast::<ModelNbl>()) });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(handle: usize, length: u32) -> SegmentSpec {
        SegmentSpec { handle, offset: 0, length, flags: 0 }
    }

    #[test]
    fn reference_walk_kinds() {
        let list = ChainSpec::List(vec![seg(1, 10), seg(2, 20)]);
        assert_eq!(
            list.reference_walk(64, |_| {}),
            ChainExpect { segments: 2, shared_bytes: 30, anomalies: 0 }
        );
        assert_eq!(list.reference_walk(1, |_| {}).anomalies, 1);
        let cyc = ChainSpec::Cycle { segments: vec![seg(1, 1), seg(1, 1)], back_to: 0 };
        assert_eq!(cyc.reference_walk(5, |_| {}), ChainExpect { segments: 5, shared_bytes: 5, anomalies: 1 });
        let broken = ChainSpec::Broken { segments: vec![seg(1, 1)], link: 3 };
        assert_eq!(broken.reference_walk(5, |_| {}).anomalies, 1 << 4);
        assert_eq!(broken.reference_walk(1, |_| {}).anomalies, 1, "the bound is reached before the bad link");
        let nul = ChainSpec::List(vec![seg(0, 1), seg(0, 0)]);
        assert_eq!(nul.reference_walk(64, |_| {}).anomalies, (1 << 2) | (1 << 3));
    }

    #[test]
    fn built_nbl_matches_spec_and_detects_changes() {
        let spec = NblSpec {
            nbs: vec![
                NbSpec { data_length: 100, chain: ChainSpec::List(vec![seg(0x1000, 100)]) },
                NbSpec { data_length: 60, chain: ChainSpec::None },
            ],
        };
        let mut b = ModelNbl::build(1, 0, Direction::Receive, spec);
        assert!(b.unchanged());
        let nbl = b.as_nbl();
        // SAFETY: just built.
        unsafe {
            let nb = (*nbl).FirstNetBuffer;
            assert_eq!((*nb).DataLength, 100);
            let shm = (*nb).SharedMemoryInfo;
            assert_eq!((*shm).SharedMemoryHandle.addr(), 0x1000);
            assert!((*(*nb).Next).SharedMemoryInfo.is_null());
            (*(*nb).Next).ProtocolReserved[0] = ptr::null_mut();
        }
        assert!(!b.unchanged());
    }
}
