//! DriverEntry, unload, registration with NDIS, and the driver-wide module list.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::module::{FilterModule, ModuleSummary};
use super::{datapath, lifecycle};
use crate::config::CONFIG;
use crate::etw;
use crate::names::{FRIENDLY_NAME_W, SERVICE_NAME_W, UNIQUE_NAME_W};
use crate::sync::SpinLock;
use crate::sys::{
    ALL_PROCESSOR_GROUPS, DPFLTR_ERROR_LEVEL, DRIVER_OBJECT, KeQueryMaximumProcessorCountEx,
    NDIS_FILTER_CHARACTERISTICS_REVISION_2, NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_FILTER_MAJOR_VERSION,
    NDIS_FILTER_MINOR_VERSION, NDIS_HANDLE, NDIS_OBJECT_HEADER,
    NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS, NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
    NDIS_STRING, NT_SUCCESS, NTSTATUS, NdisFDeregisterFilterDriver, NdisFRegisterFilterDriver,
    STATUS_SUCCESS, UNICODE_STRING,
};

/// The driver's own version (DriverVer and the DriverLoaded event).
pub const DRIVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `MajorDriverVersion` at registration.
pub const DRIVER_MAJOR: u8 = 0;
/// `MinorDriverVersion` at registration.
pub const DRIVER_MINOR: u8 = 1;

/// Attached modules, linked through `FilterModule::next`.
#[derive(Debug)]
pub(crate) struct ModuleList {
    head: *mut FilterModule,
}

// SAFETY: the list is only reached under its spin lock; modules are pool memory.
unsafe impl Send for ModuleList {}

/// Driver-wide state.
#[derive(Debug)]
pub(crate) struct DriverState {
    driver_object: AtomicPtr<DRIVER_OBJECT>,
    filter_driver_handle: AtomicPtr<c_void>,
    modules: SpinLock<ModuleList>,
    /// Next module id (ids start at 1 and are never reused while the driver is loaded).
    pub(crate) next_module_id: AtomicU32,
}

pub(crate) static DRIVER: DriverState = DriverState {
    driver_object: AtomicPtr::new(ptr::null_mut()),
    filter_driver_handle: AtomicPtr::new(ptr::null_mut()),
    modules: SpinLock::new(ModuleList { head: ptr::null_mut() }),
    next_module_id: AtomicU32::new(1),
};

impl DriverState {
    pub(crate) fn driver_object(&self) -> *mut DRIVER_OBJECT {
        self.driver_object.load(Ordering::Acquire)
    }

    pub(crate) fn insert_module(&self, module: NonNull<FilterModule>) {
        let mut list = self.modules.lock();
        // SAFETY: the module is live and not in the list; the lock protects `next`.
        unsafe { (*module.as_ptr()).next = list.head };
        list.head = module.as_ptr();
    }

    pub(crate) fn remove_module(&self, module: NonNull<FilterModule>) {
        let mut list = self.modules.lock();
        let target = module.as_ptr();
        if list.head == target {
            // SAFETY: `target` is a live module in the list; the lock protects `next`.
            list.head = unsafe { (*target).next };
        } else {
            let mut m = list.head;
            while !m.is_null() {
                // SAFETY: every pointer in the list is a live module; the lock protects the links.
                let cur = unsafe { &mut *m };
                if cur.next == target {
                    // SAFETY: as above.
                    cur.next = unsafe { (*target).next };
                    break;
                }
                m = cur.next;
            }
        }
        // SAFETY: `target` is live; it is out of the list now.
        unsafe { (*target).next = ptr::null_mut() };
    }

    /// Calls `f` for every attached module, under the list lock (so at DISPATCH_LEVEL: `f`
    /// must not block or touch pageable memory).
    pub(crate) fn for_each_module(&self, mut f: impl FnMut(&FilterModule)) {
        let list = self.modules.lock();
        let mut m = list.head;
        while !m.is_null() {
            // SAFETY: modules stay in the list, and alive, while the lock is held.
            let module = unsafe { &*m };
            f(module);
            m = module.next;
        }
    }
}

/// The characteristics this driver registers: NDIS 6.30, revision 2 (its size, 0xE0, is the
/// revision-2 size), and only the handlers a pass-through observer needs (docs/architecture.md,
/// "Registration").
#[must_use]
pub fn characteristics() -> NDIS_FILTER_DRIVER_CHARACTERISTICS {
    let name = |w: &'static [u16]| {
        let bytes = u16::try_from(core::mem::size_of_val(w)).unwrap_or(u16::MAX);
        NDIS_STRING { Length: bytes, MaximumLength: bytes, Buffer: w.as_ptr().cast_mut() }
    };
    NDIS_FILTER_DRIVER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS,
            Revision: NDIS_FILTER_CHARACTERISTICS_REVISION_2,
            Size: NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
        },
        MajorNdisVersion: NDIS_FILTER_MAJOR_VERSION,
        MinorNdisVersion: NDIS_FILTER_MINOR_VERSION,
        MajorDriverVersion: DRIVER_MAJOR,
        MinorDriverVersion: DRIVER_MINOR,
        Flags: 0,
        FriendlyName: name(&FRIENDLY_NAME_W),
        UniqueName: name(&UNIQUE_NAME_W),
        ServiceName: name(&SERVICE_NAME_W),
        SetOptionsHandler: None,
        SetFilterModuleOptionsHandler: None,
        AttachHandler: Some(lifecycle::filter_attach),
        DetachHandler: Some(lifecycle::filter_detach),
        RestartHandler: Some(lifecycle::filter_restart),
        PauseHandler: Some(lifecycle::filter_pause),
        SendNetBufferListsHandler: Some(datapath::filter_send_net_buffer_lists),
        SendNetBufferListsCompleteHandler: Some(datapath::filter_send_net_buffer_lists_complete),
        CancelSendNetBufferListsHandler: None,
        ReceiveNetBufferListsHandler: Some(datapath::filter_receive_net_buffer_lists),
        ReturnNetBufferListsHandler: Some(datapath::filter_return_net_buffer_lists),
        OidRequestHandler: None,
        OidRequestCompleteHandler: None,
        CancelOidRequestHandler: None,
        DevicePnPEventNotifyHandler: None,
        NetPnPEventHandler: None,
        StatusHandler: Some(lifecycle::filter_status),
        DirectOidRequestHandler: None,
        DirectOidRequestCompleteHandler: None,
        CancelDirectOidRequestHandler: None,
        SynchronousOidRequestHandler: None,
        SynchronousOidRequestCompleteHandler: None,
    }
}

/// DriverEntry: register the ETW provider, then the filter with NDIS, read the registry, then
/// register the control device. A failure after the filter registered undoes it (deregister the
/// filter, unregister ETW) and returns the status.
///
/// # Safety
/// Called once by the I/O manager (or the host model) at PASSIVE_LEVEL with a valid driver
/// object and registry path.
pub unsafe fn driver_entry(driver: *mut DRIVER_OBJECT, registry_path: *const UNICODE_STRING) -> NTSTATUS {
    let _ = registry_path;
    CONFIG.reset();
    // SAFETY: every path below that fails, and unload, unregisters.
    let etw_status = unsafe { etw::register() };
    if etw_status != 0 {
        crate::dbgprint::print(DPFLTR_ERROR_LEVEL, format_args!("nbshm: EtwRegister failed: {etw_status}\n"));
    }
    DRIVER.driver_object.store(driver, Ordering::Release);
    // SAFETY: the I/O manager passes a valid driver object; we own DriverUnload.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    let mut chars = characteristics();
    let mut handle: NDIS_HANDLE = ptr::null_mut();
    // SAFETY: valid driver object, characteristics on our stack (NDIS copies them), out pointer.
    let status = unsafe { NdisFRegisterFilterDriver(driver, driver.cast(), &raw mut chars, &raw mut handle) };
    if !NT_SUCCESS(status) {
        crate::dbgprint::print(
            DPFLTR_ERROR_LEVEL,
            format_args!("nbshm: NdisFRegisterFilterDriver failed: {:#010x}\n", status.cast_unsigned()),
        );
        DRIVER.driver_object.store(ptr::null_mut(), Ordering::Release);
        etw::unregister();
        return status;
    }
    DRIVER.filter_driver_handle.store(handle, Ordering::Release);
    // HandleTableSize applies at attach: a module NDIS attaches before this read returns (NDIS
    // may start attaching as soon as the registration returns) gets the default capacity.
    super::registry::read(handle);
    let status = crate::device::register(handle);
    if !NT_SUCCESS(status) {
        crate::dbgprint::print(
            DPFLTR_ERROR_LEVEL,
            format_args!("nbshm: NdisRegisterDeviceEx failed: {:#010x}\n", status.cast_unsigned()),
        );
        DRIVER.filter_driver_handle.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: the handle NdisFRegisterFilterDriver gave us; PASSIVE_LEVEL. NDIS detaches any
        // module it attached meanwhile.
        unsafe { NdisFDeregisterFilterDriver(handle) };
        DRIVER.driver_object.store(ptr::null_mut(), Ordering::Release);
        etw::unregister();
        return status;
    }
    // SAFETY: callable at PASSIVE.
    let cpus = unsafe { KeQueryMaximumProcessorCountEx(ALL_PROCESSOR_GROUPS) };
    etw::driver_loaded(DRIVER_VERSION, NDIS_FILTER_MAJOR_VERSION, NDIS_FILTER_MINOR_VERSION, cpus);
    STATUS_SUCCESS
}

/// DriverUnload (FilterDriverUnload): remove the control device (so no IOCTL can reach a
/// module any more), deregister from NDIS (which detaches any module still attached), then the
/// ETW provider, last.
///
/// # Safety
/// Called once by the I/O manager (or the host model) at PASSIVE_LEVEL after DriverEntry
/// succeeded.
pub unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    etw::driver_unloading(DRIVER_VERSION, NDIS_FILTER_MAJOR_VERSION, NDIS_FILTER_MINOR_VERSION);
    crate::device::deregister();
    let handle = DRIVER.filter_driver_handle.swap(ptr::null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        // SAFETY: the handle NdisFRegisterFilterDriver gave us; PASSIVE_LEVEL.
        unsafe { NdisFDeregisterFilterDriver(handle) };
    }
    DRIVER.driver_object.store(ptr::null_mut(), Ordering::Release);
    etw::unregister();
}

/// Writes the state of every module (FilterAttached + usage), for a session that just enabled
/// the provider.
pub fn rundown() {
    DRIVER.for_each_module(|m| {
        etw::filter_attached(
            m.id,
            m.if_index,
            m.base_if_index,
            m.name.as_slice(),
            m.media_type.cast_unsigned(),
            u32::try_from(m.handles.capacity()).unwrap_or(u32::MAX),
            m.state() as u32,
        );
        super::timer::emit_usage(m, 0);
    });
}

/// Summaries of every attached module (rundown, tests).
pub fn for_each_module_summary(mut f: impl FnMut(&ModuleSummary)) {
    DRIVER.for_each_module(|m| f(&m.summary()));
}

/// Calls `f` for every attached module under the module-list spin lock (DISPATCH_LEVEL: `f`
/// must not block, allocate or touch pageable memory).
pub fn for_each_module(f: impl FnMut(&FilterModule)) {
    DRIVER.for_each_module(f);
}

/// Modules attached now.
#[must_use]
pub fn module_count() -> u32 {
    let mut n = 0u32;
    DRIVER.for_each_module(|_| n = n.saturating_add(1));
    n
}

/// Re-arms the usage timer of every running module with the current `UsageIntervalMs`;
/// returns how many were re-armed (control device, <= DISPATCH_LEVEL).
pub fn rearm_usage_timers() -> u32 {
    let mut n = 0u32;
    DRIVER.for_each_module(|m| {
        if super::timer::rearm(m) {
            n = n.saturating_add(1);
        }
    });
    n
}

/// Runs `f` on module `id` under the list lock; None if no such module.
pub fn with_module<R>(id: u32, f: impl FnOnce(&FilterModule) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    DRIVER.for_each_module(|m| {
        if m.id == id
            && let Some(f) = f.take()
        {
            out = Some(f(m));
        }
    });
    out
}
