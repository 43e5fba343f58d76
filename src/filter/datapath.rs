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
use crate::stats::{BatchCounts, Direction, HandleRun};
use crate::sys::{
    NDIS_HANDLE, NDIS_PORT_NUMBER, NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID,
    NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL, NDIS_STATUS_PAUSED,
    NDIS_TEST_RECEIVE_AT_DISPATCH_LEVEL, NDIS_TEST_RECEIVE_CANNOT_PEND, NDIS_TEST_SEND_AT_DISPATCH_LEVEL,
    NdisFIndicateReceiveNetBufferLists, NdisFPauseComplete, NdisFReturnNetBufferLists,
    NdisFSendNetBufferLists, NdisFSendNetBufferListsComplete, PNET_BUFFER_LIST,
};

/// Which per-NET_BUFFER events a callback writes (decided once per callback).
#[derive(Clone, Copy, Debug, Default)]
struct EventMask {
    segments: bool,
    net_buffers: bool,
    anomalies: bool,
}

impl EventMask {
    #[inline]
    fn current() -> Self {
        // The cheap common case first: one check when nobody listens at all.
        if !etw::enabled(Level::Warning, etw::KW_ANOMALY | etw::KW_SEGMENT | etw::KW_NETBUFFER) {
            return Self::default();
        }
        Self {
            segments: CONFIG.verbose_segments() && etw::enabled(Level::Verbose, etw::KW_SEGMENT),
            net_buffers: etw::enabled(Level::Verbose, etw::KW_NETBUFFER),
            anomalies: etw::enabled(Level::Warning, etw::KW_ANOMALY),
        }
    }

    #[inline]
    const fn any(self) -> bool {
        self.segments || self.net_buffers || self.anomalies
    }
}

/// Counts (and, if `walk`, walks) every NET_BUFFER of the chain; returns the NBL count.
///
/// # Safety
/// `nbls` must be a NULL-terminated NBL chain owned by this driver for the duration of the call
/// (NBLs with NULL-terminated NET_BUFFER lists). If `walk`, each NET_BUFFER's `SharedMemoryInfo`
/// slot must hold a shared-memory chain satisfying [`SegmentWalker::new`]'s contract.
#[inline]
unsafe fn account(m: &FilterModule, dir: Direction, nbls: PNET_BUFFER_LIST, walk: bool) -> u64 {
    let bound = CONFIG.max_segments();
    let events = if walk { EventMask::current() } else { EventMask::default() };
    let mut batch = BatchCounts::default();
    let mut run = HandleRun::default();
    let mut nbl = nbls;
    while !nbl.is_null() {
        batch.nbls += 1;
        // SAFETY: `nbl` is a live NBL of the chain we own (caller's guarantee).
        let mut nb = unsafe { net_buffer_list_first_nb(nbl) };
        let mut nb_index = 0u32;
        while !nb.is_null() {
            batch.net_buffers += 1;
            if walk {
                // SAFETY: `nb` is a live NET_BUFFER of that NBL.
                let first = unsafe { net_buffer_first_shared_mem_info(nb) };
                // SAFETY: walking is allowed for this slot (caller's guarantee).
                let mut walker = unsafe { SegmentWalker::new(first, bound) };
                let mut shared_bytes = 0u64;
                for seg in walker.by_ref() {
                    shared_bytes += u64::from(seg.length);
                    if seg.handle != 0
                        && let Some(prev) = run.add(seg.handle, seg.offset, seg.length)
                    {
                        m.handles.record(dir, &prev);
                    }
                    if events.any() {
                        segment_events(m, dir, events, nbl.addr(), nb_index, &seg);
                    }
                }
                let segments = walker.walked();
                let anomalies = walker.anomalies();
                batch.add_chain(segments, shared_bytes, anomalies);
                if events.net_buffers && segments > 0 {
                    // SAFETY: `nb` is still ours.
                    let data_length = unsafe { net_buffer_data_length(nb) };
                    etw::net_buffer_shared_memory(
                        dir.name(),
                        m.id,
                        m.if_index,
                        nbl.addr(),
                        nb_index,
                        data_length,
                        segments,
                        shared_bytes,
                    );
                }
                if events.anomalies {
                    // Chain-level anomalies (reported where the walk stopped).
                    for kind in [AnomalyKind::Overlong, AnomalyKind::BadPointer] {
                        if anomalies.contains(kind) {
                            etw::chain_anomaly(
                                dir.name(),
                                m.id,
                                m.if_index,
                                nbl.addr(),
                                nb_index,
                                segments,
                                kind.name(),
                            );
                        }
                    }
                }
            }
            // SAFETY: `nb` is a live NET_BUFFER of the chain we own.
            nb = unsafe { net_buffer_next_nb(nb) };
            nb_index = nb_index.wrapping_add(1);
        }
        // SAFETY: `nbl` is a live NBL of the chain we own.
        nbl = unsafe { net_buffer_list_next_nbl(nbl) };
    }
    if let Some(last) = run.take() {
        m.handles.record(dir, &last);
    }
    if let Some(d) = m.current_cpu_stats().dir.get(dir.index()) {
        d.add_batch(&batch);
    }
    batch.nbls
}

/// Per-segment events: the segment itself, and the first segment of each segment-level
/// anomaly kind in this NET_BUFFER (the walker's per-NET_BUFFER set says "once"; tracking the
/// first index here keeps the event's SegmentIndex exact).
#[cold]
#[inline(never)]
fn segment_events(
    m: &FilterModule,
    dir: Direction,
    events: EventMask,
    nbl: usize,
    nb_index: u32,
    seg: &crate::shmem::Segment,
) {
    if events.segments {
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
    if events.anomalies {
        let kinds = [
            (seg.offset.checked_add(seg.length).is_none(), AnomalyKind::OffsetOverflow),
            (seg.handle == 0, AnomalyKind::NullHandle),
            (seg.length == 0, AnomalyKind::ZeroLength),
        ];
        for (hit, kind) in kinds {
            if hit {
                etw::chain_anomaly(dir.name(), m.id, m.if_index, nbl, nb_index, seg.index, kind.name());
            }
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
    let n = unsafe { account(m, Direction::Send, nbls, CONFIG.send_path_walk()) };
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
    let n = unsafe { account(m, Direction::Receive, nbls, walk) };
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
