//! Periodic usage reporting: one NDIS timer object per module, armed while the module runs,
//! writing UsageSnapshot and HandleUsage every `UsageIntervalMs` when a session listens.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::Ordering;

use tracelogging::Level;

use super::module::FilterModule;
use crate::config::{CONFIG, Keyword};
use crate::etw;
use crate::pool;
use crate::stats::Direction;
use crate::sys::{
    KeFlushQueuedDpcs, NDIS_HANDLE, NDIS_OBJECT_HEADER, NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS,
    NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1, NDIS_STATUS, NDIS_STATUS_SUCCESS,
    NDIS_TIMER_CHARACTERISTICS, NDIS_TIMER_CHARACTERISTICS_REVISION_1, NdisAllocateTimerObject,
    NdisCancelTimerObject, NdisFreeTimerObject, NdisSetTimerObject,
};

/// Pool tag NDIS uses for the timer object.
pub const TAG_TIMER: u32 = pool::tag(b"NbsT");

/// Allocates the module's timer (FilterAttach, PASSIVE_LEVEL).
pub(crate) fn allocate(m: &FilterModule) -> NDIS_STATUS {
    let mut chars = NDIS_TIMER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS,
            Revision: NDIS_TIMER_CHARACTERISTICS_REVISION_1,
            Size: NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1,
        },
        AllocationTag: TAG_TIMER,
        TimerFunction: Some(usage_timer),
        FunctionContext: ptr::from_ref(m).cast_mut().cast(),
    };
    let mut timer: NDIS_HANDLE = ptr::null_mut();
    // SAFETY: the module's filter handle, valid characteristics, an out pointer on our stack.
    let status = unsafe { NdisAllocateTimerObject(m.filter_handle, &raw mut chars, &raw mut timer) };
    if status == NDIS_STATUS_SUCCESS {
        m.timer.store(timer, Ordering::Release);
    }
    status
}

/// Arms the periodic timer (FilterRestart).
pub(crate) fn start(m: &FilterModule) {
    let mut armed = m.timer_armed.lock();
    *armed = true;
    arm(m);
}

/// Re-arms the timer with the current `UsageIntervalMs` if the module's timer runs (the
/// control device changed the interval); returns whether it did. `NdisSetTimerObject` on a
/// queued timer re-queues it with the new due time and period. Callable at <= DISPATCH_LEVEL.
pub(crate) fn rearm(m: &FilterModule) -> bool {
    let armed = m.timer_armed.lock();
    if *armed {
        arm(m);
    }
    *armed
}

fn arm(m: &FilterModule) {
    let timer = m.timer.load(Ordering::Acquire);
    if timer.is_null() {
        return;
    }
    let interval = CONFIG.get(Keyword::UsageIntervalMs);
    let due = -(i64::from(interval) * 10_000); // relative, in 100 ns units
    // SAFETY: a timer object of ours; the context is the module, alive until detach.
    let _ = unsafe {
        NdisSetTimerObject(
            timer,
            due,
            i32::try_from(interval).unwrap_or(i32::MAX),
            ptr::from_ref(m).cast_mut().cast(),
        )
    };
}

/// Disarms it (FilterPause, PASSIVE_LEVEL). A callback already running may still finish; it
/// only reads the module's counters, and the module lives until detach, which waits for it.
pub(crate) fn stop(m: &FilterModule) {
    *m.timer_armed.lock() = false;
    let timer = m.timer.load(Ordering::Acquire);
    if !timer.is_null() {
        // SAFETY: a timer object of ours; PASSIVE_LEVEL (a periodic timer's cancel waits).
        let _ = unsafe { NdisCancelTimerObject(timer) };
    }
}

/// Frees it (FilterDetach, PASSIVE_LEVEL): cancel, wait for a running callback, free.
pub(crate) fn free(m: &FilterModule) {
    let timer = m.timer.swap(ptr::null_mut(), Ordering::AcqRel);
    if timer.is_null() {
        return;
    }
    // SAFETY: a timer object of ours.
    let _ = unsafe { NdisCancelTimerObject(timer) };
    // SAFETY: PASSIVE_LEVEL; returns once every queued DPC (our timer callback) has run.
    unsafe { KeFlushQueuedDpcs() };
    // SAFETY: cancelled and drained; never used again.
    unsafe { NdisFreeTimerObject(timer) };
}

/// The timer callback (DISPATCH_LEVEL).
unsafe extern "system" fn usage_timer(
    _system_specific1: *mut c_void,
    function_context: *mut c_void,
    _system_specific2: *mut c_void,
    _system_specific3: *mut c_void,
) {
    if !etw::enabled(Level::Informational, etw::KW_USAGE) {
        return;
    }
    // SAFETY: the context is the module, which lives until detach frees the timer first.
    let m = unsafe { &*function_context.cast::<FilterModule>() };
    emit_usage(m, CONFIG.get(Keyword::UsageIntervalMs));
}

/// Writes UsageSnapshot (both directions) and HandleUsage (every handle) for a module.
pub(crate) fn emit_usage(m: &FilterModule, interval_ms: u32) {
    let distinct_handles = m.handles.distinct();
    for dir in Direction::ALL {
        let d = &m.stats.snapshot(dir);
        let a = &d.anomalies;
        etw::usage_snapshot(
            m.id,
            m.if_index,
            dir.name(),
            d.nbls,
            d.net_buffers,
            d.walked,
            d.with_shared_memory,
            d.segments,
            d.shared_bytes,
            distinct_handles,
            d.max_chain,
            d.anomalies_total(),
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            d.rejected_nbls,
            interval_ms,
        );
    }
    for h in m.handles.iter() {
        etw::handle_usage(
            m.id,
            m.if_index,
            h.handle,
            h.segments[0],
            h.bytes[0],
            h.segments[1],
            h.bytes[1],
            h.min_offset,
            h.max_end,
        );
    }
}
