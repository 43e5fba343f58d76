//! The control device `\Device\Nbshm` (`\\.\Nbshm`): registration with `NdisRegisterDeviceEx`,
//! and the dispatch routines behind it. The protocol (codes, types, structural validation) is
//! the `nbshm-proto` crate; docs/ioctl.md is the contract.
//!
//! Rules every request follows:
//! * every IRP is completed exactly once, with `IO_NO_INCREMENT`, and `IoStatus.Information` =
//!   the bytes written to the output (0 on an error);
//! * `METHOD_BUFFERED`: input and output share the system buffer, so the request is decoded into
//!   a local copy, completely validated, and only then is output written;
//! * nothing is written past `OutputBufferLength`: every write goes through a slice of exactly
//!   that length, with checked ranges.
//!
//! Access: the I/O manager checks the access bits of a control code against the handle before
//! the IRP exists (a query needs `FILE_READ_DATA`, a change `FILE_WRITE_DATA`), and the SDDL
//! admits only SYSTEM and Administrators to open the device at all.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use nbshm_proto::ioctl::ALL as IOCTLS;
use nbshm_proto::status::{
    STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
};
use nbshm_proto::{
    ALL_MODULES, CONFIG_FLAG_RUNTIME, ConfigResponse, ConfigValue, DirStats, HandleListHeader, HandleRecord,
    Header, KEYWORD_COUNT, ModuleListHeader, ModuleRecord, PROTOCOL_VERSION, Request, ResetResponse,
    SetConfigResponse, VersionResponse, Wire, decode_request, output,
};

use crate::config::{CONFIG, KEYWORDS, Keyword};
use crate::filter::module::{FilterModule, ModuleState};
use crate::filter::{self, DRIVER_MAJOR, DRIVER_MINOR, DRIVER_VERSION};
use crate::stats::{DirSnapshot, Direction};

const _: () = assert!(Direction::Receive as usize == 0 && Direction::Send as usize == 1);
use crate::sys::{
    DEVICE_OBJECT, DRIVER_DISPATCH, IO_NO_INCREMENT, IRP, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE,
    IRP_MJ_DEVICE_CONTROL, IRP_MJ_FUNCTION_COUNT, IofCompleteRequest, NDIS_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_FILTER_MAJOR_VERSION, NDIS_FILTER_MINOR_VERSION,
    NDIS_HANDLE, NDIS_OBJECT_HEADER, NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_STATUS, NDIS_STATUS_SUCCESS, NDIS_STRING, NTSTATUS,
    NdisDeregisterDeviceEx, NdisRegisterDeviceEx, UNICODE_STRING,
};

// --- The protocol and the driver agree (compile time) ----------------------------------------------

#[allow(clippy::indexing_slicing, reason = "const evaluation: an out-of-range index is a compile error")]
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[allow(clippy::indexing_slicing, reason = "const evaluation: an out-of-range index is a compile error")]
const fn keyword_names_agree() -> bool {
    let mut i = 0;
    while i < KEYWORD_COUNT {
        if !str_eq(KEYWORDS[i].name, nbshm_proto::KEYWORD_NAMES[i]) || KEYWORDS[i].keyword as usize != i {
            return false;
        }
        i += 1;
    }
    true
}

#[allow(clippy::indexing_slicing, reason = "const evaluation: an out-of-range index is a compile error")]
const fn anomaly_names_agree() -> bool {
    let mut i = 0;
    while i < crate::shmem::ANOMALY_KINDS {
        if !str_eq(crate::shmem::AnomalyKind::ALL[i].name(), nbshm_proto::ANOMALY_NAMES[i]) {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(KEYWORDS.len() == KEYWORD_COUNT);
const _: () = assert!(keyword_names_agree(), "config::KEYWORDS and nbshm_proto::KEYWORD_NAMES differ");
const _: () = assert!(crate::shmem::ANOMALY_KINDS == nbshm_proto::ANOMALY_KINDS);
const _: () = assert!(anomaly_names_agree(), "shmem::AnomalyKind and nbshm_proto::ANOMALY_NAMES differ");
const _: () = assert!(crate::filter::module::NAME_CAPACITY == nbshm_proto::NAME_UNITS);
const _: () = assert!(ModuleState::Attaching as u32 == nbshm_proto::state::ATTACHING);
const _: () = assert!(ModuleState::Paused as u32 == nbshm_proto::state::PAUSED);
const _: () = assert!(ModuleState::Restarting as u32 == nbshm_proto::state::RESTARTING);
const _: () = assert!(ModuleState::Running as u32 == nbshm_proto::state::RUNNING);
const _: () = assert!(ModuleState::Pausing as u32 == nbshm_proto::state::PAUSING);
const _: () = assert!(ModuleState::Detaching as u32 == nbshm_proto::state::DETACHING);

// --- Registration -------------------------------------------------------------------------------

static DEVICE_NAME_W: [u16; nbshm_proto::DEVICE_NAME.len()] = crate::utf16!(nbshm_proto::DEVICE_NAME);
static SYMBOLIC_NAME_W: [u16; nbshm_proto::SYMBOLIC_NAME.len()] = crate::utf16!(nbshm_proto::SYMBOLIC_NAME);
static SDDL_W: [u16; nbshm_proto::SDDL.len()] = crate::utf16!(nbshm_proto::SDDL);

/// The dispatch table handed to NDIS (`IRP_MJ_MAXIMUM_FUNCTION + 1` entries): CREATE, CLEANUP
/// and CLOSE succeed, DEVICE_CONTROL carries the protocol, nothing else (in particular no PnP
/// or power handler, which the DDI forbids for NDIS devices).
#[allow(clippy::indexing_slicing, reason = "const evaluation: an out-of-range index is a compile error")]
static MAJOR_FUNCTIONS: [Option<DRIVER_DISPATCH>; IRP_MJ_FUNCTION_COUNT] = {
    let mut t: [Option<DRIVER_DISPATCH>; IRP_MJ_FUNCTION_COUNT] = [None; IRP_MJ_FUNCTION_COUNT];
    t[IRP_MJ_CREATE as usize] = Some(dispatch_create_close as DRIVER_DISPATCH);
    t[IRP_MJ_CLEANUP as usize] = Some(dispatch_create_close as DRIVER_DISPATCH);
    t[IRP_MJ_CLOSE as usize] = Some(dispatch_create_close as DRIVER_DISPATCH);
    t[IRP_MJ_DEVICE_CONTROL as usize] = Some(dispatch_device_control as DRIVER_DISPATCH);
    t
};

static DEVICE_OBJECT_PTR: AtomicPtr<DEVICE_OBJECT> = AtomicPtr::new(ptr::null_mut());
static DEVICE_HANDLE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

fn string(w: &'static [u16]) -> UNICODE_STRING {
    let bytes = u16::try_from(core::mem::size_of_val(w)).unwrap_or(u16::MAX);
    UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: w.as_ptr().cast_mut() }
}

/// Creates the control device (DriverEntry, PASSIVE_LEVEL, after the filter registered).
pub(crate) fn register(filter_driver_handle: NDIS_HANDLE) -> NDIS_STATUS {
    let mut device_name: NDIS_STRING = string(&DEVICE_NAME_W);
    let mut symbolic_name: NDIS_STRING = string(&SYMBOLIC_NAME_W);
    let sddl = string(&SDDL_W);
    let mut attributes = NDIS_DEVICE_OBJECT_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
            Revision: NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
            Size: NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
        },
        DeviceName: &raw mut device_name,
        SymbolicName: &raw mut symbolic_name,
        // NDIS reads the table; it is a static, so it outlives the device whatever NDIS keeps.
        MajorFunctions: MAJOR_FUNCTIONS.as_ptr().cast_mut(),
        ExtensionSize: 0,
        DefaultSDDLString: &raw const sddl,
        DeviceClassGuid: ptr::null(),
    };
    let mut device: *mut DEVICE_OBJECT = ptr::null_mut();
    let mut handle: NDIS_HANDLE = ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; the filter driver handle; attributes, strings and out pointers on
    // our stack for the call (the I/O manager copies the names and the security descriptor).
    let status = unsafe {
        NdisRegisterDeviceEx(filter_driver_handle, &raw mut attributes, &raw mut device, &raw mut handle)
    };
    if status == NDIS_STATUS_SUCCESS {
        DEVICE_OBJECT_PTR.store(device, Ordering::Release);
        DEVICE_HANDLE.store(handle, Ordering::Release);
    }
    status
}

/// Deletes the control device (DriverUnload, PASSIVE_LEVEL, before the filter deregisters).
pub(crate) fn deregister() {
    let handle = DEVICE_HANDLE.swap(ptr::null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        // SAFETY: the handle NdisRegisterDeviceEx gave us; PASSIVE_LEVEL.
        unsafe { NdisDeregisterDeviceEx(handle) };
    }
    DEVICE_OBJECT_PTR.store(ptr::null_mut(), Ordering::Release);
}

// --- Dispatch ---------------------------------------------------------------------------------------

/// Completes `irp` with `status` and `information` bytes, once; returns `status` (what the
/// dispatch routine must return).
///
/// # Safety
/// `irp` must be an IRP this driver owns and has not completed; it is not touched afterwards.
unsafe fn complete(irp: *mut IRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the caller owns the IRP.
    unsafe { (*irp).IoStatus.Status = status };
    // SAFETY: as above.
    unsafe { (*irp).IoStatus.Information = information };
    // SAFETY: completed exactly once, here; the IRP is not used after this call.
    unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT) };
    status
}

/// IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE: nothing per handle to set up or tear down.
unsafe extern "system" fn dispatch_create_close(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the I/O manager hands us the IRP to complete.
    unsafe { complete(irp, STATUS_SUCCESS, 0) }
}

/// IRP_MJ_DEVICE_CONTROL (PASSIVE_LEVEL).
unsafe extern "system" fn dispatch_device_control(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    if device != DEVICE_OBJECT_PTR.load(Ordering::Acquire) {
        // SAFETY: the I/O manager hands us the IRP to complete.
        return unsafe { complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0) };
    }
    // SAFETY: a valid IRP with one stack location for us (`IoGetCurrentIrpStackLocation`).
    let stack = unsafe { (*irp).CurrentStackLocation };
    // SAFETY: as above; the I/O manager filled it in for this request.
    let stack = unsafe { &*stack };
    // SAFETY: the major function is DEVICE_CONTROL, so `DeviceIoControl` is the live member.
    let params = unsafe { stack.Parameters.DeviceIoControl };
    // SAFETY: a valid IRP.
    let system_buffer = unsafe { (*irp).SystemBuffer };
    let code = params.IoControlCode;
    let in_len = params.InputBufferLength as usize;
    let out_len = params.OutputBufferLength as usize;
    let len = in_len.max(out_len);
    // Unknown codes (including ours with another method) are refused before anything looks at
    // the buffers, whose shape depends on the method.
    let (status, information) = if !IOCTLS.iter().any(|(c, _)| *c == code) {
        (STATUS_INVALID_DEVICE_REQUEST, 0)
    } else if len == 0 {
        handle(code, &mut [], 0, 0)
    } else if system_buffer.is_null() {
        (STATUS_INVALID_PARAMETER, 0)
    } else {
        // SAFETY: METHOD_BUFFERED: the system buffer is nonpaged memory of
        // max(InputBufferLength, OutputBufferLength) bytes, ours until completion; no other
        // reference to it exists while this slice lives.
        let buffer = unsafe { core::slice::from_raw_parts_mut(system_buffer.cast::<u8>(), len) };
        handle(code, buffer, in_len, out_len)
    };
    // SAFETY: the IRP is ours and not completed; `buffer` is no longer borrowed.
    unsafe { complete(irp, status, information) }
}

/// One control request over its system buffer (`buffer.len() == max(in_len, out_len)`):
/// returns `(status, bytes written)`. The request is decoded (copied) and validated before the
/// first byte of output is written; output goes only to `buffer[..out_len]`.
#[must_use]
pub fn handle(code: u32, buffer: &mut [u8], in_len: usize, out_len: usize) -> (NTSTATUS, usize) {
    let Some(input) = buffer.get(..in_len) else { return (STATUS_INVALID_PARAMETER, 0) };
    let request = match decode_request(code, input) {
        Ok(r) => r,
        Err(status) => return (status, 0),
    };
    // From here on the buffer is output only.
    let Some(out) = buffer.get_mut(..out_len) else { return (STATUS_INVALID_PARAMETER, 0) };
    if out.len() < output::minimum(&request) {
        return (STATUS_BUFFER_TOO_SMALL, 0);
    }
    match request {
        Request::QueryVersion => write(out, &version()),
        Request::ListModules => list_modules(out),
        Request::QueryHandles { module_id, start_index } => query_handles(out, module_id, start_index),
        Request::Reset { module_id } => reset(out, module_id),
        Request::GetConfig => write(out, &config()),
        Request::SetConfig { keyword, value } => set_config(out, keyword, value),
    }
}

/// Writes a fixed-size response (its minimum length was checked).
fn write<T: Wire>(out: &mut [u8], v: &T) -> (NTSTATUS, usize) {
    match v.encode(out) {
        Some(n) => (STATUS_SUCCESS, n),
        None => (STATUS_BUFFER_TOO_SMALL, 0),
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn version() -> VersionResponse {
    let mut driver_version = [0u8; 32];
    for (d, s) in driver_version.iter_mut().zip(DRIVER_VERSION.bytes()) {
        *d = s;
    }
    VersionResponse {
        header: Header::of::<VersionResponse>(),
        protocol_version: PROTOCOL_VERSION,
        driver_major: u32::from(DRIVER_MAJOR),
        driver_minor: u32::from(DRIVER_MINOR),
        ndis_major: u32::from(NDIS_FILTER_MAJOR_VERSION),
        ndis_minor: u32::from(NDIS_FILTER_MINOR_VERSION),
        module_record_size: u32_of(ModuleRecord::SIZE),
        handle_record_size: u32_of(HandleRecord::SIZE),
        keyword_count: u32_of(KEYWORD_COUNT),
        modules_attached: filter::module_count(),
        reserved: 0,
        driver_version,
    }
}

fn dir_stats(d: &DirSnapshot) -> DirStats {
    DirStats {
        nbls: d.nbls,
        net_buffers: d.net_buffers,
        walked: d.walked,
        with_shared_memory: d.with_shared_memory,
        segments: d.segments,
        shared_bytes: d.shared_bytes,
        max_chain: d.max_chain,
        reserved: 0,
        anomalies: d.anomalies,
        rejected_nbls: d.rejected_nbls,
    }
}

/// Writes module `m`'s record into `out` (at least `ModuleRecord::SIZE` bytes). Built in place
/// from the module, one direction's snapshot at a time rather than through `summary()`: this
/// runs under the module-list spin lock on a kernel stack (frame limit: docs/cross-build.md).
fn write_module_record(m: &FilterModule, out: &mut [u8]) -> Option<usize> {
    let mut record = ModuleRecord::ZERO;
    let units = m.name.as_slice();
    for (d, u) in record.name.iter_mut().zip(units) {
        *d = *u;
    }
    record.id = m.id;
    record.if_index = m.if_index;
    record.base_if_index = m.base_if_index;
    record.media_type = m.media_type.cast_unsigned();
    record.state = m.state() as u32;
    record.name_length = u32_of(units.len());
    record.distinct_handles = m.handles.distinct();
    record.handle_capacity = u32_of(m.handles.capacity());
    record.handle_overflow_segments = m.handles.overflow_segments();
    record.in_flight = m.io.in_flight();
    record.resets = m.resets();
    record.receive = dir_stats(&m.stats.snapshot(Direction::Receive));
    record.send = dir_stats(&m.stats.snapshot(Direction::Send));
    record.encode(out)
}

/// `LIST_MODULES`: the header, then as many whole records as fit; `STATUS_BUFFER_OVERFLOW` if
/// some did not (the header says how many exist and how many bytes they need).
fn list_modules(out: &mut [u8]) -> (NTSTATUS, usize) {
    let room = output::records_that_fit(out.len(), ModuleListHeader::SIZE, ModuleRecord::SIZE);
    let mut total = 0usize;
    let mut returned = 0usize;
    filter::for_each_module(|m| {
        if returned < room {
            let offset = ModuleListHeader::SIZE + returned * ModuleRecord::SIZE;
            if out.get_mut(offset..).and_then(|dst| write_module_record(m, dst)).is_some() {
                returned += 1;
            }
        }
        total += 1;
    });
    let header = ModuleListHeader {
        header: Header::of::<ModuleListHeader>(),
        total: u32_of(total),
        returned: u32_of(returned),
        record_size: u32_of(ModuleRecord::SIZE),
        reserved: 0,
        required_bytes: (ModuleListHeader::SIZE + total * ModuleRecord::SIZE) as u64,
    };
    if header.encode(out).is_none() {
        return (STATUS_BUFFER_TOO_SMALL, 0);
    }
    let status = if returned < total { STATUS_BUFFER_OVERFLOW } else { STATUS_SUCCESS };
    (status, ModuleListHeader::SIZE + returned * ModuleRecord::SIZE)
}

/// `QUERY_HANDLES`: the used slots from `start` on, as many as fit; `next_index` says where to
/// go on (the capacity when the table is done).
fn query_handles(out: &mut [u8], module_id: u32, start: u32) -> (NTSTATUS, usize) {
    let room = output::records_that_fit(out.len(), HandleListHeader::SIZE, HandleRecord::SIZE);
    let result = filter::with_module(module_id, |m| {
        let capacity = m.handles.capacity();
        let start = start as usize;
        if start > capacity {
            return (STATUS_INVALID_PARAMETER, 0);
        }
        let mut slot = start;
        let mut returned = 0usize;
        while slot < capacity && returned < room {
            if let Some(h) = m.handles.get(slot) {
                // Counter order is `Direction::index`: receive, then send.
                let [receive_segments, send_segments] = h.segments;
                let [receive_bytes, send_bytes] = h.bytes;
                let record = HandleRecord {
                    handle: h.handle as u64,
                    receive_segments,
                    receive_bytes,
                    send_segments,
                    send_bytes,
                    max_end: h.max_end,
                    min_offset: h.min_offset,
                    slot: u32_of(slot),
                };
                let offset = HandleListHeader::SIZE + returned * HandleRecord::SIZE;
                if out.get_mut(offset..).and_then(|dst| record.encode(dst)).is_some() {
                    returned += 1;
                }
            }
            slot += 1;
        }
        // Skip trailing free slots, so that a page ending the table says so.
        while slot < capacity && m.handles.get(slot).is_none() {
            slot += 1;
        }
        let header = HandleListHeader {
            header: Header::of::<HandleListHeader>(),
            module_id,
            capacity: u32_of(capacity),
            distinct: m.handles.distinct(),
            start_index: u32_of(start),
            next_index: u32_of(slot),
            returned: u32_of(returned),
            record_size: u32_of(HandleRecord::SIZE),
            reserved: 0,
            overflow_segments: m.handles.overflow_segments(),
        };
        match header.encode(out) {
            Some(_) => (STATUS_SUCCESS, HandleListHeader::SIZE + returned * HandleRecord::SIZE),
            None => (STATUS_BUFFER_TOO_SMALL, 0),
        }
    });
    result.unwrap_or((STATUS_NOT_FOUND, 0))
}

/// `RESET_STATS`: one module, or all of them for [`ALL_MODULES`].
fn reset(out: &mut [u8], module_id: u32) -> (NTSTATUS, usize) {
    let modules_reset = if module_id == ALL_MODULES {
        let mut n = 0u32;
        filter::for_each_module(|m| {
            m.reset_stats();
            n = n.saturating_add(1);
        });
        n
    } else if filter::with_module(module_id, FilterModule::reset_stats).is_some() {
        1
    } else {
        return (STATUS_NOT_FOUND, 0);
    };
    write(out, &ResetResponse { header: Header::of::<ResetResponse>(), modules_reset, reserved: 0 })
}

fn config() -> ConfigResponse {
    let mut values = [ConfigValue::ZERO; KEYWORD_COUNT];
    for (v, info) in values.iter_mut().zip(KEYWORDS.iter()) {
        *v = ConfigValue {
            keyword: info.keyword as u32,
            value: CONFIG.get(info.keyword),
            default: info.default,
            min: info.min,
            max: info.max,
            flags: if info.runtime { CONFIG_FLAG_RUNTIME } else { 0 },
        };
    }
    ConfigResponse {
        header: Header::of::<ConfigResponse>(),
        count: u32_of(KEYWORD_COUNT),
        reserved: 0,
        values,
    }
}

/// `SET_CONFIG`: unknown keyword `STATUS_NOT_FOUND`; a keyword that only applies at load or
/// attach `STATUS_NOT_SUPPORTED`; a value out of range `STATUS_INVALID_PARAMETER` (refused, not
/// clamped). A new `UsageIntervalMs` re-arms the timers of the running modules at once.
fn set_config(out: &mut [u8], keyword: u32, value: u32) -> (NTSTATUS, usize) {
    let Some(k) = Keyword::from_id(keyword) else { return (STATUS_NOT_FOUND, 0) };
    if !k.info().runtime {
        return (STATUS_NOT_SUPPORTED, 0);
    }
    let old_value = CONFIG.get(k);
    if CONFIG.set(k, value).is_err() {
        return (STATUS_INVALID_PARAMETER, 0);
    }
    let timers_rearmed =
        if k == Keyword::UsageIntervalMs && old_value != value { filter::rearm_usage_timers() } else { 0 };
    write(
        out,
        &SetConfigResponse {
            header: Header::of::<SetConfigResponse>(),
            keyword,
            old_value,
            new_value: value,
            timers_rearmed,
        },
    )
}
