//! The NDIS functions the driver imports from ndis.sys, implemented by the model, each checking
//! the documented contract before doing what ndis.sys would (docs/architecture.md, "The
//! user-mode NDIS model", lists the reading taken where the docs are ambiguous).

#![allow(non_snake_case, reason = "ndis.sys's exported names")]

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use crate::stats::Direction;
use crate::sys::{
    DISPATCH_LEVEL, DRIVER_OBJECT, NDIS_FILTER_ATTRIBUTES, NDIS_FILTER_ATTRIBUTES_REVISION_1,
    NDIS_FILTER_CHARACTERISTICS_REVISION_1, NDIS_FILTER_CHARACTERISTICS_REVISION_2,
    NDIS_FILTER_CHARACTERISTICS_REVISION_3, NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_HANDLE,
    NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES, NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS,
    NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS, NDIS_PORT_NUMBER, NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
    NDIS_RECEIVE_FLAGS_RESOURCES, NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
    NDIS_SEND_FLAGS_DISPATCH_LEVEL, NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1,
    NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1,
    NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
    NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_3, NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1,
    NDIS_STATUS, NDIS_STATUS_BAD_CHARACTERISTICS, NDIS_STATUS_BAD_VERSION, NDIS_STATUS_FAILURE,
    NDIS_STATUS_PAUSED, NDIS_STATUS_SUCCESS, NDIS_TIMER_CHARACTERISTICS, NET_BUFFER_LIST, PASSIVE_LEVEL,
    PNDIS_HANDLE, PNET_BUFFER_LIST, UNICODE_STRING,
};

use super::kernel::current_irql;
use super::model::{Handlers, Miniport, MpState, shared};
use super::packets::{self, ModelNbl, Owner};
use super::violations::violation;

fn unicode(s: &UNICODE_STRING) -> Option<String> {
    if s.Buffer.is_null() || !s.Length.is_multiple_of(2) || s.Length > s.MaximumLength {
        return None;
    }
    // SAFETY: Buffer holds Length bytes (checked shape; the driver's own static strings).
    let w = unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length / 2)) };
    String::from_utf16(w).ok()
}

/// Validates the characteristics as NDIS documents them; returns the handlers or the status
/// NDIS would fail the registration with.
fn validate_characteristics(c: &NDIS_FILTER_DRIVER_CHARACTERISTICS) -> Result<Handlers, NDIS_STATUS> {
    let sh = shared();
    let api = "NdisFRegisterFilterDriver";
    let bad = |msg: String| violation(api, msg);
    let h = c.Header;
    if h.Type != NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS {
        bad(format!("Header.Type {:#x}, expected NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS", h.Type));
        return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
    }
    let size_ok = match h.Revision {
        NDIS_FILTER_CHARACTERISTICS_REVISION_1 => {
            h.Size >= NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1
        }
        NDIS_FILTER_CHARACTERISTICS_REVISION_2 => {
            h.Size >= NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2
        }
        NDIS_FILTER_CHARACTERISTICS_REVISION_3 => {
            h.Size >= NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_3
        }
        _ => false,
    };
    if !size_ok {
        bad(format!(
            "Header revision {} with size {:#x}: not a documented revision/size pair",
            h.Revision, h.Size
        ));
        return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
    }
    // Version: NDIS 6.x up to what the emulated OS supports; the architecture minimum (6.30 on
    // ARM64, which the model enforces for every build); revision consistent with the version.
    let (major, minor) = (c.MajorNdisVersion, c.MinorNdisVersion);
    if major != 6 || minor > sh.opts.max_ndis_minor || minor < sh.opts.min_ndis_minor {
        bad(format!(
            "NDIS version {major}.{minor} outside {}.{}..=6.{}",
            6, sh.opts.min_ndis_minor, sh.opts.max_ndis_minor
        ));
        return Err(NDIS_STATUS_BAD_VERSION);
    }
    let rev_needed = match minor {
        0 => NDIS_FILTER_CHARACTERISTICS_REVISION_1,
        1..80 => NDIS_FILTER_CHARACTERISTICS_REVISION_2,
        _ => NDIS_FILTER_CHARACTERISTICS_REVISION_3,
    };
    if h.Revision != rev_needed {
        bad(format!("NDIS 6.{minor} filters use characteristics revision {rev_needed}, not {}", h.Revision));
        return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
    }
    if c.Flags != 0 {
        bad(format!("Flags {:#x}: reserved, must be 0", c.Flags));
    }
    let (Some(attach), Some(detach), Some(restart), Some(pause)) =
        (c.AttachHandler, c.DetachHandler, c.RestartHandler, c.PauseHandler)
    else {
        bad("a mandatory handler (Attach, Detach, Restart, Pause) is NULL".into());
        return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
    };
    if c.SendNetBufferListsHandler.is_some() && c.SendNetBufferListsCompleteHandler.is_none() {
        bad("SendNetBufferListsHandler without SendNetBufferListsCompleteHandler".into());
        return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
    }
    if (c.ReceiveNetBufferListsHandler.is_some() || c.ReturnNetBufferListsHandler.is_some())
        && c.StatusHandler.is_none()
    {
        bad("receive/return handlers without a FilterStatus handler (the DDI pages require it)".into());
        return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
    }
    let names =
        [("FriendlyName", &c.FriendlyName), ("UniqueName", &c.UniqueName), ("ServiceName", &c.ServiceName)];
    let mut got = Vec::new();
    for (what, s) in names {
        match unicode(s) {
            Some(v) if !v.is_empty() => got.push(v),
            _ => {
                bad(format!("{what} is not a valid non-empty NDIS_STRING"));
                return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
            }
        }
    }
    if !got[1].eq_ignore_ascii_case(&sh.opts.inf_unique_name) {
        bad(format!(
            "UniqueName {} differs from the INF's NetCfgInstanceId {}",
            got[1], sh.opts.inf_unique_name
        ));
        return Err(NDIS_STATUS_FAILURE);
    }
    if !got[2].eq_ignore_ascii_case(&sh.opts.inf_service_name) {
        bad(format!("ServiceName {} differs from the INF's AddService {}", got[2], sh.opts.inf_service_name));
        return Err(NDIS_STATUS_FAILURE);
    }
    Ok(Handlers {
        attach,
        detach,
        restart,
        pause,
        send: c.SendNetBufferListsHandler,
        send_complete: c.SendNetBufferListsCompleteHandler,
        receive: c.ReceiveNetBufferListsHandler,
        return_: c.ReturnNetBufferListsHandler,
        status: c.StatusHandler,
        revision: h.Revision,
        ndis_minor: minor,
    })
}

/// `NdisFRegisterFilterDriver`.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFRegisterFilterDriver(
    DriverObject: *mut DRIVER_OBJECT,
    FilterDriverContext: NDIS_HANDLE,
    FilterDriverCharacteristics: *mut NDIS_FILTER_DRIVER_CHARACTERISTICS,
    NdisFilterDriverHandle: PNDIS_HANDLE,
) -> NDIS_STATUS {
    let _scope = super::kernel::ModelScope::enter();
    let sh = shared();
    let api = "NdisFRegisterFilterDriver";
    if current_irql() != PASSIVE_LEVEL {
        violation(api, "not at PASSIVE_LEVEL".into());
    }
    if !sh.in_driver_entry.load(Ordering::Acquire) {
        violation(api, "called outside DriverEntry".into());
    }
    if DriverObject != sh.driver_object_ptr() {
        violation(api, "DriverObject is not the one passed to DriverEntry".into());
        return NDIS_STATUS_FAILURE;
    }
    if FilterDriverCharacteristics.is_null() || NdisFilterDriverHandle.is_null() {
        violation(api, "NULL characteristics or handle pointer".into());
        return NDIS_STATUS_FAILURE;
    }
    if sh.registered.load(Ordering::Acquire) {
        violation(api, "the driver is already registered".into());
        return NDIS_STATUS_FAILURE;
    }
    // SAFETY: non-NULL, points to the driver's characteristics for the call.
    let chars = unsafe { &*FilterDriverCharacteristics };
    match validate_characteristics(chars) {
        Ok(h) => {
            *sh.handlers.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(h);
            sh.driver_context.store(FilterDriverContext, Ordering::Release);
            sh.registered.store(true, Ordering::Release);
            // SAFETY: non-NULL out pointer.
            unsafe { NdisFilterDriverHandle.write(sh.driver_handle()) };
            NDIS_STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

/// `NdisFDeregisterFilterDriver`: pauses and detaches every module still attached, as NDIS does.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFDeregisterFilterDriver(NdisFilterDriverHandle: NDIS_HANDLE) {
    let _scope = super::kernel::ModelScope::enter();
    let sh = shared();
    let api = "NdisFDeregisterFilterDriver";
    if NdisFilterDriverHandle != sh.driver_handle() || !sh.registered.load(Ordering::Acquire) {
        violation(api, "not our registered filter driver handle".into());
        return;
    }
    if current_irql() != PASSIVE_LEVEL {
        violation(api, "not at PASSIVE_LEVEL".into());
    }
    if !sh.in_unload.load(Ordering::Acquire) && !sh.in_driver_entry.load(Ordering::Acquire) {
        violation(api, "called outside DriverUnload (or a failing DriverEntry)".into());
    }
    if sh.device.is_registered() {
        violation(api, "the control device is still registered: NdisDeregisterDeviceEx comes first".into());
    }
    for mp in sh.miniport_list() {
        sh.teardown_miniport(&mp);
    }
    sh.registered.store(false, Ordering::Release);
    *sh.handlers.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// `NdisFSetAttributes`: only during the module's FilterAttach.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFSetAttributes(
    NdisFilterHandle: NDIS_HANDLE,
    FilterModuleContext: NDIS_HANDLE,
    FilterAttributes: *mut NDIS_FILTER_ATTRIBUTES,
) -> NDIS_STATUS {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisFSetAttributes";
    let Some(mp) = shared().miniport_by_handle(NdisFilterHandle, api) else { return NDIS_STATUS_FAILURE };
    if mp.state() != MpState::Attaching {
        violation(api, format!("miniport {} is {:?}, not attaching", mp.index, mp.state()));
        return NDIS_STATUS_FAILURE;
    }
    if FilterModuleContext.is_null() || FilterAttributes.is_null() {
        violation(api, "NULL context or attributes".into());
        return NDIS_STATUS_FAILURE;
    }
    // SAFETY: non-NULL attributes of the caller.
    let a = unsafe { &*FilterAttributes };
    if a.Header.Type != NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES
        || a.Header.Revision != NDIS_FILTER_ATTRIBUTES_REVISION_1
        || a.Header.Size < NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1
        || a.Flags != 0
    {
        violation(api, format!("bad attributes header {:?} / flags {:#x}", a.Header, a.Flags));
        return NDIS_STATUS_BAD_CHARACTERISTICS;
    }
    if !mp.context.swap(FilterModuleContext, Ordering::AcqRel).is_null() {
        violation(api, "called twice in one attach".into());
    }
    NDIS_STATUS_SUCCESS
}

/// Checks a hand-off's dispatch flag against the calling thread's IRQL.
fn check_dispatch_flag(api: &'static str, flag_set: bool) {
    if flag_set && current_irql() != DISPATCH_LEVEL {
        violation(api, "DISPATCH_LEVEL flag set while not at DISPATCH_LEVEL".into());
    }
}

/// Takes one NBL the filter passes on (down with a send, up with a receive): it must be a model
/// NBL of direction `dir` from miniport `mp`'s own traffic, the filter's to give, passed on with the
/// port and flags it arrived with. Records what the driver must have counted for it. None (after
/// recording the violation) if it cannot be taken.
fn take_passed_on<'a>(
    api: &'static str,
    mp: &Miniport,
    p: PNET_BUFFER_LIST,
    dir: Direction,
    flags: u32,
    port: NDIS_PORT_NUMBER,
) -> Option<&'a mut ModelNbl> {
    let (made, elsewhere, to) = match dir {
        Direction::Send => ("sent", "did not come from this miniport's protocol", Owner::Below),
        Direction::Receive => ("indicated", "was not indicated by this miniport", Owner::Above),
    };
    // SAFETY: model NBLs (checked by magic).
    let Some(m) = (unsafe { ModelNbl::from_nbl(p) }) else {
        violation(api, format!("{p:p} is not an NBL the model {made}"));
        return None;
    };
    if m.track.dir != dir || m.track.miniport != mp.index {
        violation(api, format!("NBL #{} {elsewhere}", m.track.id));
        return None;
    }
    if !m.transfer(Owner::Filter, to, api) {
        return None;
    }
    let (flags_in, port_in) =
        (m.track.flags_in.load(Ordering::Relaxed), m.track.port_in.load(Ordering::Relaxed));
    if flags_in != flags || port_in != port {
        violation(
            api,
            format!(
                "NBL #{} passed on with flags {flags:#x} port {port}, received with {flags_in:#x} / {port_in}",
                m.track.id
            ),
        );
    }
    m.track.forwarded.store(true, Ordering::Release);
    mp.expect_forwarded(m);
    super::model::note_forwarded(m.track.id);
    Some(m)
}

/// `NdisFSendNetBufferLists`: the filter passes sends down.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFSendNetBufferLists(
    NdisFilterHandle: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    PortNumber: NDIS_PORT_NUMBER,
    SendFlags: u32,
) {
    let _scope = super::kernel::ModelScope::enter();
    if super::model::lean_note(NetBufferLists) {
        return;
    }
    let api = "NdisFSendNetBufferLists";
    let sh = shared();
    let Some(mp) = sh.miniport_by_handle(NdisFilterHandle, api) else { return };
    check_dispatch_flag(api, SendFlags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0);
    if !matches!(mp.state(), MpState::Running | MpState::Pausing) {
        violation(
            api,
            format!("miniport {} is {:?}: a filter must not send unless running", mp.index, mp.state()),
        );
    }
    // SAFETY: the filter passes a chain of model NBLs.
    let members = unsafe { packets::chain_members(NetBufferLists) };
    if members.is_empty() {
        violation(api, "empty chain".into());
        return;
    }
    let mut taken = Vec::with_capacity(members.len());
    for p in members {
        let Some(m) = take_passed_on(api, &mp, p, Direction::Send, SendFlags, PortNumber) else { continue };
        if sh.opts.poison {
            m.poison();
        }
        taken.push(p.expose_provenance());
    }
    sh.below_receives(&mp, taken);
}

/// `NdisFSendNetBufferListsComplete`: the filter completes sends up.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFSendNetBufferListsComplete(
    NdisFilterHandle: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    SendCompleteFlags: u32,
) {
    let _scope = super::kernel::ModelScope::enter();
    if super::model::lean_note(std::ptr::null_mut()) {
        return;
    }
    let api = "NdisFSendNetBufferListsComplete";
    let sh = shared();
    let Some(mp) = sh.miniport_by_handle(NdisFilterHandle, api) else { return };
    let dispatch = SendCompleteFlags & NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL != 0;
    check_dispatch_flag(api, dispatch);
    // SAFETY: the filter passes a chain of model NBLs.
    let members = unsafe { packets::chain_members(NetBufferLists) };
    for p in members {
        // SAFETY: model NBLs (checked by magic).
        let Some(m) = (unsafe { ModelNbl::from_nbl(p) }) else {
            violation(api, format!("{p:p} is not an NBL the model sent"));
            continue;
        };
        if m.track.dir != crate::stats::Direction::Send || m.track.miniport != mp.index {
            violation(api, format!("NBL #{} did not come from this miniport's protocol", m.track.id));
            continue;
        }
        if !m.transfer(Owner::Filter, Owner::Home, api) {
            continue;
        }
        let forwarded = m.track.forwarded.load(Ordering::Acquire);
        if forwarded {
            // Pass-through of a completion from below: same status and flags.
            if m.nbl.Status != NDIS_STATUS_SUCCESS {
                violation(api, format!("NBL #{} status changed to {:#x}", m.track.id, m.nbl.Status));
            }
        } else {
            // Completed by the filter itself (not running): NDIS_STATUS_PAUSED at the send's IRQL.
            if m.nbl.Status != NDIS_STATUS_PAUSED {
                violation(
                    api,
                    format!("NBL #{} rejected with status {:#x}, not PAUSED", m.track.id, m.nbl.Status),
                );
            }
            let was_dispatch = m.track.flags_in.load(Ordering::Relaxed) & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0;
            if was_dispatch != dispatch {
                violation(
                    api,
                    format!("NBL #{}: DISPATCH flag {dispatch}, the send's was {was_dispatch}", m.track.id),
                );
            }
            mp.expect_rejected(crate::stats::Direction::Send);
        }
        sh.came_home(&mp, p);
    }
}

/// `NdisFIndicateReceiveNetBufferLists`: the filter indicates receives up.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFIndicateReceiveNetBufferLists(
    NdisFilterHandle: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    PortNumber: NDIS_PORT_NUMBER,
    NumberOfNetBufferLists: u32,
    ReceiveFlags: u32,
) {
    let _scope = super::kernel::ModelScope::enter();
    if super::model::lean_note(NetBufferLists) {
        return;
    }
    let api = "NdisFIndicateReceiveNetBufferLists";
    let sh = shared();
    let Some(mp) = sh.miniport_by_handle(NdisFilterHandle, api) else { return };
    check_dispatch_flag(api, ReceiveFlags & NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL != 0);
    match mp.state() {
        MpState::Running | MpState::Pausing => {}
        MpState::Restarting if !super::model::in_filter_restart(mp.index) => {
            // Another processor, after FilterRestart opened the data path but before it returned
            // (see `MpCounters::restart_window_indications`).
            mp.counters
                .restart_window_indications
                .fetch_add(u64::from(NumberOfNetBufferLists), Ordering::Relaxed);
        }
        state => violation(
            api,
            format!("miniport {} is {state:?}: a filter must not indicate unless running", mp.index),
        ),
    }
    // SAFETY: the filter passes a chain of model NBLs.
    let members = unsafe { packets::chain_members(NetBufferLists) };
    if members.len() != NumberOfNetBufferLists as usize {
        violation(
            api,
            format!("NumberOfNetBufferLists {NumberOfNetBufferLists} but the chain has {}", members.len()),
        );
    }
    let resources = ReceiveFlags & NDIS_RECEIVE_FLAGS_RESOURCES != 0;
    let mut held = Vec::with_capacity(members.len());
    for &p in &members {
        if take_passed_on(api, &mp, p, Direction::Receive, ReceiveFlags, PortNumber).is_some() {
            held.push(p.expose_provenance());
        }
    }
    if resources {
        // The protocol may only look at the NBLs during the indication: they are the filter's
        // again when this returns (and the miniport's when the filter's callback returns).
        for a in held {
            // SAFETY: model NBLs, just checked.
            if let Some(m) = unsafe { ModelNbl::from_nbl(std::ptr::with_exposed_provenance_mut(a)) } {
                m.transfer(Owner::Above, Owner::Filter, api);
            }
        }
        // Relink the chain as it came (the filter must find it as it left it).
        let _ = members;
    } else {
        for a in &held {
            // SAFETY: model NBLs, just checked.
            if let Some(m) = unsafe { ModelNbl::from_nbl(std::ptr::with_exposed_provenance_mut(*a)) }
                && sh.opts.poison
            {
                m.poison();
            }
        }
        sh.above_receives(&mp, held);
    }
}

/// `NdisFReturnNetBufferLists`: the filter returns receives down.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFReturnNetBufferLists(
    NdisFilterHandle: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    ReturnFlags: u32,
) {
    let _scope = super::kernel::ModelScope::enter();
    if super::model::lean_note(std::ptr::null_mut()) {
        return;
    }
    let api = "NdisFReturnNetBufferLists";
    let sh = shared();
    let Some(mp) = sh.miniport_by_handle(NdisFilterHandle, api) else { return };
    let dispatch = ReturnFlags & NDIS_RETURN_FLAGS_DISPATCH_LEVEL != 0;
    check_dispatch_flag(api, dispatch);
    // SAFETY: the filter passes a chain of model NBLs.
    let members = unsafe { packets::chain_members(NetBufferLists) };
    for p in members {
        // SAFETY: model NBLs (checked by magic).
        let Some(m) = (unsafe { ModelNbl::from_nbl(p) }) else {
            violation(api, format!("{p:p} is not an NBL the model indicated"));
            continue;
        };
        if m.track.dir != crate::stats::Direction::Receive || m.track.miniport != mp.index {
            violation(api, format!("NBL #{} was not indicated by this miniport", m.track.id));
            continue;
        }
        if m.track.resources.load(Ordering::Acquire) {
            violation(
                api,
                format!("NBL #{} was indicated with RESOURCES: it must not be returned", m.track.id),
            );
            continue;
        }
        if !m.transfer(Owner::Filter, Owner::Home, api) {
            continue;
        }
        if !m.track.forwarded.load(Ordering::Acquire) {
            let was_dispatch =
                m.track.flags_in.load(Ordering::Relaxed) & NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL != 0;
            if was_dispatch != dispatch {
                violation(
                    api,
                    format!(
                        "NBL #{}: DISPATCH flag {dispatch}, the receive's was {was_dispatch}",
                        m.track.id
                    ),
                );
            }
            mp.expect_rejected(crate::stats::Direction::Receive);
        }
        sh.came_home(&mp, p);
    }
}

/// `NdisFPauseComplete`: only for a pause the filter pended.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFPauseComplete(NdisFilterHandle: NDIS_HANDLE) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisFPauseComplete";
    let Some(mp) = shared().miniport_by_handle(NdisFilterHandle, api) else { return };
    if current_irql() > DISPATCH_LEVEL {
        violation(api, "above DISPATCH_LEVEL".into());
    }
    mp.pause_completed(api);
}

/// `NdisFIndicateStatus`: records the indication the filter passed up.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFIndicateStatus(
    NdisFilterHandle: NDIS_HANDLE,
    StatusIndication: *mut c_void,
) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisFIndicateStatus";
    let Some(mp) = shared().miniport_by_handle(NdisFilterHandle, api) else { return };
    mp.statuses_passed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(StatusIndication.addr());
}

// --- Timers ------------------------------------------------------------------------------------

/// `NdisAllocateTimerObject`.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisAllocateTimerObject(
    NdisHandle: NDIS_HANDLE,
    TimerCharacteristics: *mut NDIS_TIMER_CHARACTERISTICS,
    pTimerObject: PNDIS_HANDLE,
) -> NDIS_STATUS {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisAllocateTimerObject";
    let sh = shared();
    if NdisHandle != sh.driver_handle() && sh.miniport_by_handle(NdisHandle, api).is_none() {
        return NDIS_STATUS_FAILURE;
    }
    if TimerCharacteristics.is_null() || pTimerObject.is_null() {
        violation(api, "NULL characteristics or out pointer".into());
        return NDIS_STATUS_FAILURE;
    }
    // SAFETY: non-NULL.
    let c = unsafe { &*TimerCharacteristics };
    if c.Header.Type != NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS
        || c.Header.Revision < 1
        || c.Header.Size < NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1
        || c.TimerFunction.is_none()
        || c.AllocationTag == 0
    {
        violation(api, format!("bad timer characteristics {:?}, tag {:#x}", c.Header, c.AllocationTag));
        return NDIS_STATUS_BAD_CHARACTERISTICS;
    }
    let Some(function) = c.TimerFunction else { return NDIS_STATUS_BAD_CHARACTERISTICS };
    let handle = sh.timers.allocate(function, c.FunctionContext.addr());
    // SAFETY: non-NULL out pointer.
    unsafe { pTimerObject.write(handle) };
    NDIS_STATUS_SUCCESS
}

/// `NdisSetTimerObject`.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisSetTimerObject(
    TimerObject: NDIS_HANDLE,
    DueTime: i64,
    MillisecondsPeriod: i32,
    FunctionContext: *mut c_void,
) -> u8 {
    let _scope = super::kernel::ModelScope::enter();
    u8::from(shared().timers.set(TimerObject, DueTime, MillisecondsPeriod, FunctionContext.addr()))
}

/// `NdisCancelTimerObject`.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisCancelTimerObject(TimerObject: NDIS_HANDLE) -> u8 {
    let _scope = super::kernel::ModelScope::enter();
    u8::from(shared().timers.cancel(TimerObject))
}

/// `NdisFreeTimerObject`.
/// # Safety
/// Called by the driver with the arguments the DDI describes (model NBL chains, its handles).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisFreeTimerObject(TimerObject: NDIS_HANDLE) {
    let _scope = super::kernel::ModelScope::enter();
    shared().timers.free(TimerObject);
}

/// Waits for a timer callback in progress (`KeFlushQueuedDpcs`).
pub fn flush_timer_callbacks() {
    if let Some(sh) = super::model::try_shared() {
        sh.timers.flush();
    }
}

/// The NBL pointer type the workers pass around.
pub type NblPtr = *mut NET_BUFFER_LIST;
