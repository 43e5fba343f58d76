//! Module lifecycle: FilterAttach, FilterDetach, FilterRestart, FilterPause, FilterStatus.
//! All but FilterStatus run at PASSIVE_LEVEL.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use super::driver::DRIVER;
use super::module::{FilterModule, ModuleState, WideName};
use crate::config::{CONFIG, Keyword};
use crate::etw;
use crate::stats::Direction;
use crate::sys::{
    ALL_PROCESSOR_GROUPS, KeQueryMaximumProcessorCountEx, NDIS_FILTER_ATTACH_PARAMETERS,
    NDIS_FILTER_ATTRIBUTES, NDIS_FILTER_ATTRIBUTES_REVISION_1, NDIS_FILTER_PAUSE_PARAMETERS,
    NDIS_FILTER_RESTART_PARAMETERS, NDIS_HANDLE, NDIS_OBJECT_HEADER,
    NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS, NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES,
    NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_1, NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1, NDIS_STATUS,
    NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_PENDING, NDIS_STATUS_RESOURCES, NDIS_STATUS_SUCCESS,
    NdisFIndicateStatus, NdisFSetAttributes, NdisMedium802_3,
};

/// FilterAttach: allocate the module, register it as the module context, leave it Paused.
///
/// # Safety
/// Called by NDIS only, with its filter handle, our driver context and attach parameters.
pub(crate) unsafe extern "system" fn filter_attach(
    ndis_filter_handle: NDIS_HANDLE,
    filter_driver_context: NDIS_HANDLE,
    attach_parameters: *mut NDIS_FILTER_ATTACH_PARAMETERS,
) -> NDIS_STATUS {
    if filter_driver_context.cast::<crate::sys::DRIVER_OBJECT>() != DRIVER.driver_object()
        || attach_parameters.is_null()
    {
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    // SAFETY: NDIS passes valid attach parameters for the duration of the call.
    let params = unsafe { &*attach_parameters };
    if params.Header.Type != NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS
        || params.Header.Size < NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_1
    {
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    // The INF binds Ethernet only (FilterMediaTypes = ethernet); refuse anything else rather
    // than guess. The filter is optional, so a refusal never takes the adapter down.
    if params.MiniportMediaType != NdisMedium802_3 {
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    // SAFETY: callable at PASSIVE; counts the processors that can ever run our callbacks.
    let cpus = unsafe { KeQueryMaximumProcessorCountEx(ALL_PROCESSOR_GROUPS) };
    let capacity = CONFIG.get(Keyword::HandleTableSize) as usize;
    let id = DRIVER.next_module_id.fetch_add(1, Ordering::Relaxed);
    let Some(module) = FilterModule::allocate(id, ndis_filter_handle, cpus as usize, capacity) else {
        return NDIS_STATUS_RESOURCES;
    };
    {
        // SAFETY: freshly allocated and not yet visible to anyone else.
        let m = unsafe { &mut *module.as_ptr() };
        m.if_index = params.IfIndex;
        m.base_if_index = params.BaseMiniportIfIndex;
        m.media_type = params.MiniportMediaType;
        // SAFETY: revision-1 field, covered by the size checked above; NDIS keeps the string
        // valid during the call.
        m.name = unsafe { WideName::from_unicode_string(params.BaseMiniportInstanceName) };
    }
    {
        // SAFETY: live and still private to this call.
        let m = unsafe { module.as_ref() };
        let status = super::timer::allocate(m);
        if status != NDIS_STATUS_SUCCESS {
            // SAFETY: nothing else knows the module.
            unsafe { FilterModule::free(module) };
            return status;
        }
    }
    let mut attributes = NDIS_FILTER_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES,
            Revision: NDIS_FILTER_ATTRIBUTES_REVISION_1,
            Size: NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1,
        },
        Flags: 0,
    };
    // SAFETY: inside FilterAttach with NDIS's handle; the context stays valid until detach.
    let status =
        unsafe { NdisFSetAttributes(ndis_filter_handle, module.as_ptr().cast(), &raw mut attributes) };
    if status != NDIS_STATUS_SUCCESS {
        // SAFETY: the timer is not armed; NDIS did not take the context; nothing else knows
        // the module.
        unsafe {
            super::timer::free(module.as_ref());
        }
        // SAFETY: as above.
        unsafe { FilterModule::free(module) };
        return status;
    }
    // SAFETY: the module is live until detach.
    let m = unsafe { module.as_ref() };
    m.set_state(ModuleState::Paused);
    DRIVER.insert_module(module);
    etw::filter_attached(
        m.id,
        m.if_index,
        m.base_if_index,
        m.name.as_slice(),
        m.media_type.cast_unsigned(),
        u32::try_from(capacity).unwrap_or(u32::MAX),
        m.state() as u32,
    );
    NDIS_STATUS_SUCCESS
}

/// FilterDetach: the module is Paused; take it out of the list and free it. Cannot fail.
///
/// # Safety
/// Called by NDIS only, once, with a module context of ours.
pub(crate) unsafe extern "system" fn filter_detach(ctx: NDIS_HANDLE) {
    let Some(module) = NonNull::new(ctx.cast::<FilterModule>()) else { return };
    {
        // SAFETY: NDIS passes a live module; no data-path callback runs after the pause.
        let m = unsafe { module.as_ref() };
        m.set_state(ModuleState::Detaching);
        DRIVER.remove_module(module);
        let (rx, tx) = (m.stats.snapshot(Direction::Receive), m.stats.snapshot(Direction::Send));
        etw::filter_detached(
            m.id,
            m.if_index,
            m.name.as_slice(),
            rx.net_buffers,
            tx.net_buffers,
            rx.segments + tx.segments,
            rx.shared_bytes + tx.shared_bytes,
            rx.anomalies_total() + tx.anomalies_total(),
            m.handles.distinct(),
        );
    }
    // SAFETY: the module is live until the free below.
    super::timer::free(unsafe { module.as_ref() });
    // SAFETY: out of the list, paused (nothing in flight), timer drained, and NDIS never uses
    // the context after FilterDetach returns.
    unsafe { FilterModule::free(module) };
}

/// FilterRestart: open the module to traffic. The restart attributes are left alone (an
/// observer changes nothing).
///
/// # Safety
/// Called by NDIS only, with a Paused module context of ours.
pub(crate) unsafe extern "system" fn filter_restart(
    ctx: NDIS_HANDLE,
    _restart_parameters: *mut NDIS_FILTER_RESTART_PARAMETERS,
) -> NDIS_STATUS {
    // SAFETY: NDIS passes the context we registered.
    let m = unsafe { FilterModule::from_context(ctx) };
    m.set_state(ModuleState::Restarting);
    m.io.open();
    m.set_state(ModuleState::Running);
    super::timer::start(m);
    etw::filter_restarted(m.id, m.if_index);
    NDIS_STATUS_SUCCESS
}

/// FilterPause: stop admitting traffic; complete now if nothing of this module is in flight,
/// otherwise return pending and let the last completion or return finish the pause
/// ([`pause_drained`] then `NdisFPauseComplete`).
///
/// # Safety
/// Called by NDIS only, with a Running module context of ours.
pub(crate) unsafe extern "system" fn filter_pause(
    ctx: NDIS_HANDLE,
    pause_parameters: *mut NDIS_FILTER_PAUSE_PARAMETERS,
) -> NDIS_STATUS {
    // SAFETY: NDIS passes the context we registered.
    let m = unsafe { FilterModule::from_context(ctx) };
    let reason = if pause_parameters.is_null() {
        0
    } else {
        // SAFETY: NDIS passes valid pause parameters for the duration of the call.
        unsafe { (*pause_parameters).PauseReason }
    };
    m.pause_reason.store(reason, Ordering::Relaxed);
    m.set_state(ModuleState::Pausing);
    super::timer::stop(m);
    if m.io.close() {
        m.set_state(ModuleState::Paused);
        etw::filter_paused(m.id, m.if_index, reason, 0);
        NDIS_STATUS_SUCCESS
    } else {
        NDIS_STATUS_PENDING
    }
}

/// The last in-flight unit of a pausing module came back: mark it Paused (the caller then calls
/// `NdisFPauseComplete`).
pub(crate) fn pause_drained(m: &FilterModule) {
    m.set_state(ModuleState::Paused);
    etw::filter_paused(m.id, m.if_index, m.pause_reason.load(Ordering::Relaxed), 1);
}

/// FilterStatus: pass the indication up untouched.
///
/// # Safety
/// Called by NDIS only.
pub(crate) unsafe extern "system" fn filter_status(
    ctx: NDIS_HANDLE,
    status_indication: *mut core::ffi::c_void,
) {
    // SAFETY: NDIS passes the context we registered.
    let m = unsafe { FilterModule::from_context(ctx) };
    // SAFETY: pass-through of NDIS's own indication with our filter handle.
    unsafe { NdisFIndicateStatus(m.filter_handle, status_indication) };
}
