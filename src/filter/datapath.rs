//! The data path: FilterSendNetBufferLists, FilterSendNetBufferListsComplete,
//! FilterReceiveNetBufferLists, FilterReturnNetBufferLists. All run at IRQL <= DISPATCH_LEVEL.
//!
//! Every NBL passes through unchanged: the same chain, port and flags go on to the next driver.
//! All walking and counting happens before the hand-off; after it, the chain is never touched
//! again (only the module's own counters are). No allocation, no lock, no panic.
//!
//! Walk rules (docs/architecture.md, "The walk"):
//! * receive: `SharedMemoryInfo` is walked only when the indication carries
//!   `NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID` (otherwise the union slot may hold a
//!   scatter-gather list or anything else);
//! * send: walked in FilterSendNetBufferLists, before the chain goes below, when the
//!   `SendPathWalk` configuration switch is on; never on send-complete.

use tracelogging::Level;

use super::module::FilterModule;
use crate::config::CONFIG;
use crate::etw;
use crate::shmem::{
    AnomalyKind, SegmentWalker, net_buffer_data_length, net_buffer_first_shared_mem_info,
    net_buffer_list_first_nb, net_buffer_list_next_nbl, net_buffer_next_nb,
};
use crate::stats::{BatchCounts, Direction, HandleRun, HandleRuns};
use crate::sys::{
    NDIS_HANDLE, NDIS_PORT_NUMBER, NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID,
    NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL, NDIS_STATUS_PAUSED,
    NDIS_TEST_RECEIVE_AT_DISPATCH_LEVEL, NDIS_TEST_RECEIVE_CANNOT_PEND, NDIS_TEST_SEND_AT_DISPATCH_LEVEL,
    NdisFIndicateReceiveNetBufferLists, NdisFPauseComplete, NdisFReturnNetBufferLists,
    NdisFSendNetBufferLists, NdisFSendNetBufferListsComplete, PNET_BUFFER_LIST,
};

/// Which per-packet events a callback writes (decided once per callback).
#[derive(Clone, Copy, Debug, Default)]
struct EventMask {
    segments: bool,
    net_buffers: bool,
    anomalies: bool,
}

impl EventMask {
    #[inline]
    fn current() -> Self {
        // The common case first: one check when nobody listens to any per-packet keyword.
        if !etw::enabled(Level::Warning, etw::KW_ANOMALY | etw::KW_SEGMENT | etw::KW_NETBUFFER) {
            return Self::default();
        }
        Self {
            segments: CONFIG.verbose_segments() && etw::enabled(Level::Verbose, etw::KW_SEGMENT),
            net_buffers: etw::enabled(Level::Verbose, etw::KW_NETBUFFER),
            anomalies: etw::enabled(Level::Warning, etw::KW_ANOMALY),
        }
    }

    /// Whether per-segment or per-NET_BUFFER (verbose) events are wanted: only then does the
    /// walk run its instrumented copy. Anomaly events alone cost nothing per segment: they come
    /// from a second, cold walk of the rare chain that has an anomaly.
    #[inline]
    const fn verbose(self) -> bool {
        self.segments || self.net_buffers
    }
}

/// Counts (and, if `walk`, walks) every NET_BUFFER of the chain, accounts the callback's counts
/// per CPU and per handle, and writes the per-packet events a session asked for; returns the
/// NBL count.
///
/// # Safety
/// `nbls` must be a NULL-terminated NBL chain owned by this driver for the duration of the call
/// (NBLs with NULL-terminated NET_BUFFER lists). If `walk`, each NET_BUFFER's `SharedMemoryInfo`
/// slot must hold a shared-memory chain satisfying [`SegmentWalker::new`]'s contract.
#[inline]
pub(crate) unsafe fn account(
    m: &FilterModule,
    dir: Direction,
    nbls: PNET_BUFFER_LIST,
    walk: bool,
    at_dispatch: bool,
) -> u64 {
    let mut batch = BatchCounts::default();
    let mut runs = HandleRuns::default();
    if walk {
        let bound = CONFIG.max_segments();
        let events = EventMask::current();
        // Two copies of the loop: the usual one has no verbose-event code in it at all.
        let current = if events.verbose() {
            // SAFETY: forwarded contract.
            unsafe { walk_chain::<true>(m, dir, nbls, bound, events, &mut batch, &mut runs) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { walk_chain::<false>(m, dir, nbls, bound, events, &mut batch, &mut runs) }
        };
        runs.flush(&m.handles, dir, current);
    } else {
        // SAFETY: forwarded contract.
        unsafe { count_only(nbls, &mut batch) };
    }
    m.add_counts(dir, &batch, at_dispatch);
    batch.nbls
}

/// Counts NBLs and NET_BUFFERs without walking.
///
/// # Safety
/// As [`account`].
#[inline(always)]
unsafe fn count_only(nbls: PNET_BUFFER_LIST, batch: &mut BatchCounts) {
    let mut nbl = nbls;
    while !nbl.is_null() {
        batch.nbls += 1;
        // SAFETY: `nbl` is a live NBL of the chain we own (caller's guarantee).
        let mut nb = unsafe { net_buffer_list_first_nb(nbl) };
        while !nb.is_null() {
            batch.net_buffers += 1;
            // SAFETY: `nb` is a live NET_BUFFER of the chain we own.
            nb = unsafe { net_buffer_next_nb(nb) };
        }
        // SAFETY: `nbl` is a live NBL of the chain we own.
        nbl = unsafe { net_buffer_list_next_nbl(nbl) };
    }
}

/// Walks and counts every NET_BUFFER of the chain; with `VERBOSE`, also writes the per-segment
/// and per-NET_BUFFER events `events` asks for. Returns the current handle run (the caller
/// flushes it with `runs`).
///
/// # Safety
/// As [`account`] with `walk`.
#[inline(always)]
unsafe fn walk_chain<const VERBOSE: bool>(
    m: &FilterModule,
    dir: Direction,
    nbls: PNET_BUFFER_LIST,
    bound: u32,
    events: EventMask,
    batch: &mut BatchCounts,
    runs: &mut HandleRuns,
) -> HandleRun {
    let mut current = HandleRun::default();
    let mut nbl = nbls;
    while !nbl.is_null() {
        batch.nbls += 1;
        // SAFETY: `nbl` is a live NBL of the chain we own (caller's guarantee).
        let mut nb = unsafe { net_buffer_list_first_nb(nbl) };
        let mut nb_index = 0u32;
        while !nb.is_null() {
            batch.net_buffers += 1;
            // SAFETY: `nb` is a live NET_BUFFER of that NBL.
            let first = unsafe { net_buffer_first_shared_mem_info(nb) };
            // SAFETY: walking is allowed for this slot (caller's guarantee).
            let mut walker = unsafe { SegmentWalker::new(first, bound) };
            let mut shared_bytes = 0u64;
            for seg in walker.by_ref() {
                shared_bytes += u64::from(seg.length);
                if current.same(seg.handle) {
                    current.merge(seg.offset, seg.length);
                } else if seg.handle != 0 {
                    current = runs.switch(&m.handles, dir, current, seg.handle, seg.offset, seg.length);
                }
                if VERBOSE && events.segments {
                    segment_event(m, dir, nbl.addr(), nb_index, &seg);
                }
            }
            let segments = walker.walked();
            let anomalies = walker.anomalies();
            batch.add_chain(segments, shared_bytes, anomalies);
            if VERBOSE && events.net_buffers && segments > 0 {
                // SAFETY: `nb` is still ours.
                let data_length = unsafe { net_buffer_data_length(nb) };
                net_buffer_event(m, dir, nbl.addr(), nb_index, data_length, segments, shared_bytes);
            }
            if events.anomalies && !anomalies.is_empty() {
                // SAFETY: the same chain, still ours and valid for a walk.
                unsafe { anomaly_events(m, dir, first, bound, nbl.addr(), nb_index) };
            }
            // SAFETY: `nb` is a live NET_BUFFER of the chain we own.
            nb = unsafe { net_buffer_next_nb(nb) };
            nb_index = nb_index.wrapping_add(1);
        }
        // SAFETY: `nbl` is a live NBL of the chain we own.
        nbl = unsafe { net_buffer_list_next_nbl(nbl) };
    }
    current
}

/// One SharedMemorySegment event.
#[cold]
#[inline(never)]
fn segment_event(m: &FilterModule, dir: Direction, nbl: usize, nb_index: u32, seg: &crate::shmem::Segment) {
    etw::shared_memory_segment(
        dir.name(),
        m.id,
        m.if_index,
        nbl,
        nb_index,
        seg.index,
        seg.handle,
        seg.offset,
        seg.length,
        seg.flags,
    );
}

/// One NetBufferSharedMemory event.
#[cold]
#[inline(never)]
fn net_buffer_event(
    m: &FilterModule,
    dir: Direction,
    nbl: usize,
    nb_index: u32,
    data_length: u32,
    segments: u32,
    shared_bytes: u64,
) {
    etw::net_buffer_shared_memory(
        dir.name(),
        m.id,
        m.if_index,
        nbl,
        nb_index,
        data_length,
        segments,
        shared_bytes,
    );
}

/// ChainAnomaly events of one NET_BUFFER whose walk found anomalies: walks the chain again (it
/// is rare, and still ours) to report each kind once, at the first segment showing it; overlong
/// and bad_pointer at the index where the walk stopped.
///
/// # Safety
/// `first` is the chain just walked, valid for [`SegmentWalker::new`] with `bound`.
#[cold]
#[inline(never)]
unsafe fn anomaly_events(
    m: &FilterModule,
    dir: Direction,
    first: *const crate::sys::NET_BUFFER_SHARED_MEMORY,
    bound: u32,
    nbl: usize,
    nb_index: u32,
) {
    let mut reported = crate::shmem::Anomalies::NONE;
    // SAFETY: forwarded contract.
    let mut walker = unsafe { SegmentWalker::new(first, bound) };
    for seg in walker.by_ref() {
        let kinds = [
            (seg.offset.checked_add(seg.length).is_none(), AnomalyKind::OffsetOverflow),
            (seg.handle == 0, AnomalyKind::NullHandle),
            (seg.length == 0, AnomalyKind::ZeroLength),
        ];
        for (hit, kind) in kinds {
            if hit && !reported.contains(kind) {
                reported.insert(kind);
                etw::chain_anomaly(dir.name(), m.id, m.if_index, nbl, nb_index, seg.index, kind.name());
            }
        }
    }
    let stopped = walker.walked();
    for kind in [AnomalyKind::Overlong, AnomalyKind::BadPointer] {
        if walker.anomalies().contains(kind) {
            etw::chain_anomaly(dir.name(), m.id, m.if_index, nbl, nb_index, stopped, kind.name());
        }
    }
}

/// Counts the NBLs of a chain.
///
/// # Safety
/// `nbls` must be a NULL-terminated NBL chain owned by this driver for the duration of the call.
#[inline]
unsafe fn count_nbls(nbls: PNET_BUFFER_LIST) -> u64 {
    let mut n = 0;
    let mut nbl = nbls;
    while !nbl.is_null() {
        n += 1;
        // SAFETY: `nbl` is a live NBL of the chain we own.
        nbl = unsafe { net_buffer_list_next_nbl(nbl) };
    }
    n
}

/// Releases `n` in-flight units and completes a pending pause if that was the last.
#[inline]
fn release(m: &FilterModule, n: u64) {
    if m.io.release(n) {
        super::lifecycle::pause_drained(m);
        // SAFETY: the module's filter handle; the pause was pended by our FilterPause.
        unsafe { NdisFPauseComplete(m.filter_handle) };
    }
}

/// FilterSendNetBufferLists.
///
/// # Safety
/// Called by NDIS only: `ctx` is a live module context and `nbls` a chain NDIS hands over.
pub(crate) unsafe extern "system" fn filter_send_net_buffer_lists(
    ctx: NDIS_HANDLE,
    nbls: PNET_BUFFER_LIST,
    port: NDIS_PORT_NUMBER,
    send_flags: u32,
) {
    // SAFETY: NDIS passes the context we registered in FilterAttach.
    let m = unsafe { FilterModule::from_context(ctx) };
    if !m.io.try_enter() {
        // Not running: complete every NBL with NDIS_STATUS_PAUSED, at the caller's IRQL.
        let mut n = 0;
        let mut nbl = nbls;
        while !nbl.is_null() {
            // SAFETY: the chain is ours until we complete it; completing it ourselves is the one
            // case where a filter sets the NBL status.
            unsafe { (*nbl).Status = NDIS_STATUS_PAUSED };
            n += 1;
            // SAFETY: as above.
            nbl = unsafe { net_buffer_list_next_nbl(nbl) };
        }
        m.count_rejected(Direction::Send, n);
        let complete_flags = if NDIS_TEST_SEND_AT_DISPATCH_LEVEL(send_flags) {
            NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: our filter handle; the NBLs came from above and go back up.
        unsafe { NdisFSendNetBufferListsComplete(m.filter_handle, nbls, complete_flags) };
        return;
    }
    // SAFETY: the chain is ours until NdisFSendNetBufferLists. With SendPathWalk on, our reading
    // is that the slot belongs to the sender at this point (docs/architecture.md, "The walk").
    let n = unsafe {
        account(
            m,
            Direction::Send,
            nbls,
            CONFIG.send_path_walk(),
            NDIS_TEST_SEND_AT_DISPATCH_LEVEL(send_flags),
        )
    };
    m.io.add(n);
    // SAFETY: pass-through: the same chain, port and flags go down. Not touched afterwards.
    unsafe { NdisFSendNetBufferLists(m.filter_handle, nbls, port, send_flags) };
    release(m, 1);
}

/// FilterSendNetBufferListsComplete.
///
/// # Safety
/// Called by NDIS only, with sends this module passed down.
pub(crate) unsafe extern "system" fn filter_send_net_buffer_lists_complete(
    ctx: NDIS_HANDLE,
    nbls: PNET_BUFFER_LIST,
    send_complete_flags: u32,
) {
    // SAFETY: NDIS passes the context we registered in FilterAttach.
    let m = unsafe { FilterModule::from_context(ctx) };
    // SAFETY: the completed chain is ours until we complete it upward.
    let n = unsafe { count_nbls(nbls) };
    // SAFETY: every NBL came from above through this module; complete it up unchanged.
    unsafe { NdisFSendNetBufferListsComplete(m.filter_handle, nbls, send_complete_flags) };
    release(m, n);
}

/// FilterReceiveNetBufferLists.
///
/// # Safety
/// Called by NDIS only: `ctx` is a live module context and `nbls` an indicated chain.
pub(crate) unsafe extern "system" fn filter_receive_net_buffer_lists(
    ctx: NDIS_HANDLE,
    nbls: PNET_BUFFER_LIST,
    port: NDIS_PORT_NUMBER,
    number_of_nbls: u32,
    receive_flags: u32,
) {
    // SAFETY: NDIS passes the context we registered in FilterAttach.
    let m = unsafe { FilterModule::from_context(ctx) };
    let resources = NDIS_TEST_RECEIVE_CANNOT_PEND(receive_flags);
    if !m.io.try_enter() {
        // SAFETY: the chain is ours for the duration of the call.
        let n = unsafe { count_nbls(nbls) };
        m.count_rejected(Direction::Receive, n);
        if !resources {
            let return_flags = if NDIS_TEST_RECEIVE_AT_DISPATCH_LEVEL(receive_flags) {
                NDIS_RETURN_FLAGS_DISPATCH_LEVEL
            } else {
                0
            };
            // SAFETY: not RESOURCES, so we own the NBLs and may return them at once.
            unsafe { NdisFReturnNetBufferLists(m.filter_handle, nbls, return_flags) };
        }
        // With RESOURCES set, NDIS takes the NBLs back when we return: drop them by returning.
        return;
    }
    let walk = receive_flags & NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID != 0 && CONFIG.receive_path_walk();
    // SAFETY: the chain is ours until the indication; the flag says SharedMemoryInfo is valid.
    let n = unsafe {
        account(m, Direction::Receive, nbls, walk, NDIS_TEST_RECEIVE_AT_DISPATCH_LEVEL(receive_flags))
    };
    if !resources {
        m.io.add(n);
    }
    // SAFETY: pass-through: the same chain, port, count and flags go up. With RESOURCES set the
    // NBLs return to the miniport when this call returns; we never touch them again either way.
    unsafe {
        NdisFIndicateReceiveNetBufferLists(m.filter_handle, nbls, port, number_of_nbls, receive_flags);
    }
    release(m, 1);
}

/// FilterReturnNetBufferLists.
///
/// # Safety
/// Called by NDIS only, with receives this module indicated up.
pub(crate) unsafe extern "system" fn filter_return_net_buffer_lists(
    ctx: NDIS_HANDLE,
    nbls: PNET_BUFFER_LIST,
    return_flags: u32,
) {
    // SAFETY: NDIS passes the context we registered in FilterAttach.
    let m = unsafe { FilterModule::from_context(ctx) };
    // SAFETY: the returned chain is ours until we return it down.
    let n = unsafe { count_nbls(nbls) };
    // SAFETY: every NBL came from below through this module; return it down unchanged.
    unsafe { NdisFReturnNetBufferLists(m.filter_handle, nbls, return_flags) };
    release(m, n);
}
