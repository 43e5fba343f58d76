//! The control-device half of the model: `NdisRegisterDeviceEx`/`NdisDeregisterDeviceEx` (as
//! ndis.sys), and the I/O manager's side of a handle to the device: the access check against
//! the device's SDDL at open, the access bits of a control code against the handle, real
//! `IRP`/`IO_STACK_LOCATION`s in the documented x64 layout, `METHOD_BUFFERED` system buffers with
//! guard bytes, and `IofCompleteRequest` (as ntoskrnl.exe) checking that every IRP is completed
//! exactly once, with `IO_NO_INCREMENT` and `Information <= OutputBufferLength`.
//!
//! Readings the model takes (docs/ioctl.md repeats them):
//! * How NDIS routes IRPs of a device it created to the `MajorFunctions` table is not documented;
//!   the model calls the table's entry for the IRP's major function directly, at PASSIVE_LEVEL,
//!   on the calling thread. A major function without an entry completes with
//!   `STATUS_INVALID_DEVICE_REQUEST` without reaching the driver (the I/O manager's default).
//! * The access bits of a control code are checked by the I/O manager against the handle's
//!   granted access before an IRP is built; a mismatch is `STATUS_ACCESS_DENIED` (abi-facts 2.6:
//!   ReactOS does exactly this; the Windows status is not confirmed). The driver never sees it.
//! * A request completed with an error status returns no data, and the model also expects
//!   `Information == 0` then (the driver's own rule: Information = bytes written).
//! * The I/O manager does not call DriverUnload while a handle to one of the driver's devices is
//!   open; a [`DeviceHandle`] borrows the [`Model`](super::model::Model), so a test cannot
//!   unload with one open.

#![allow(non_snake_case, reason = "the exported names")]

use std::collections::HashMap;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nbshm_proto::ioctl::{FILE_READ_ACCESS, FILE_WRITE_ACCESS, METHOD_BUFFERED, access, method};
use nbshm_proto::status::{STATUS_ACCESS_DENIED, STATUS_OBJECT_NAME_NOT_FOUND, is_error};

use crate::sys::{
    DEVICE_OBJECT, DISPATCH_LEVEL, DRIVER_DISPATCH, IO_NO_INCREMENT, IO_STACK_LOCATION,
    IO_STACK_LOCATION_CREATE, IO_STACK_LOCATION_DEVICE_IO_CONTROL, IO_STACK_LOCATION_PARAMETERS,
    IO_STATUS_BLOCK, IRP, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL,
    IRP_MJ_FUNCTION_COUNT, IRP_MJ_PNP, IRP_MJ_POWER, NDIS_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_HANDLE, NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_STATUS, NDIS_STATUS_FAILURE,
    NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_SUCCESS, NTSTATUS, PASSIVE_LEVEL, PNDIS_HANDLE,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_OBJECT_NAME_COLLISION, STATUS_SUCCESS, UNICODE_STRING,
};

use super::kernel::{at_irql, current_irql};
use super::model::{Model, shared};
use super::violations::violation;

/// `FILE_READ_DATA`: the handle right `FILE_READ_ACCESS` control codes need.
pub const FILE_READ_DATA: u32 = 0x1;
/// `FILE_WRITE_DATA`: the handle right `FILE_WRITE_ACCESS` control codes need.
pub const FILE_WRITE_DATA: u32 = 0x2;

/// Bytes of guard pattern after every system buffer.
pub const GUARD_BYTES: usize = 64;
const GUARD: u8 = 0xA5;
const FILL: u8 = 0xCD;
const STATUS_SENTINEL: NTSTATUS = 0x0BAD_0001;
const INFORMATION_SENTINEL: usize = 0xDEAD_0000_BEEF;

/// Who opens the device: the groups of its token that the SDDL can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A LocalSystem service (`SY`, and member of `BA`).
    System,
    /// An elevated administrator (`BA`, `BU`, `AU`, `WD`, `IU`).
    Administrator,
    /// A standard user (`BU`, `AU`, `WD`, `IU`).
    User,
}

impl Caller {
    fn sids(self) -> &'static [&'static str] {
        match self {
            Self::System => &["SY", "BA", "AU", "WD"],
            Self::Administrator => &["BA", "BU", "AU", "WD", "IU"],
            Self::User => &["BU", "AU", "WD", "IU"],
        }
    }
}

/// One ACE of a DACL in SDDL form.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ace {
    rights: u32,
    trustee: String,
}

/// A DACL-only SDDL string as the model understands it: `D:` + flags + allow ACEs with
/// generic rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sddl {
    protected: bool,
    aces: Vec<Ace>,
}

const RIGHTS_ALL: u32 = FILE_READ_DATA | FILE_WRITE_DATA;

impl Sddl {
    /// Parses `text`; the error says what the model does not understand.
    ///
    /// # Errors
    /// Anything but a DACL of allow ACEs with `GA`/`GR`/`GW` rights and no ACE flags.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("D:").ok_or("no DACL (D:)")?;
        let open = rest.find('(').ok_or("no ACE")?;
        let (flags, mut aces_text) = rest.split_at(open);
        let protected = flags.contains('P');
        if !flags.chars().all(|c| matches!(c, 'P' | 'A' | 'I' | 'R')) {
            return Err(format!("DACL flags {flags:?}"));
        }
        let mut aces = Vec::new();
        while !aces_text.is_empty() {
            let body = aces_text.strip_prefix('(').ok_or("expected '('")?;
            let close = body.find(')').ok_or("unterminated ACE")?;
            let fields: Vec<&str> = body[..close].split(';').collect();
            aces_text = &body[close + 1..];
            let [kind, ace_flags, rights, object, inherit, trustee] = fields[..] else {
                return Err(format!("ACE {:?} has {} fields", &body[..close], fields.len()));
            };
            if kind != "A" || !ace_flags.is_empty() || !object.is_empty() || !inherit.is_empty() {
                return Err(format!("ACE {:?}: only plain allow ACEs are modeled", &body[..close]));
            }
            let mut mask = 0;
            for i in (0..rights.len()).step_by(2) {
                mask |= match rights.get(i..i + 2) {
                    Some("GA") => RIGHTS_ALL,
                    Some("GR") => FILE_READ_DATA,
                    Some("GW") => FILE_WRITE_DATA,
                    _ => return Err(format!("rights {rights:?}")),
                };
            }
            aces.push(Ace { rights: mask, trustee: trustee.to_owned() });
        }
        Ok(Self { protected, aces })
    }

    /// The rights `caller` gets.
    #[must_use]
    pub fn granted(&self, caller: Caller) -> u32 {
        self.aces.iter().filter(|a| caller.sids().contains(&a.trustee.as_str())).fold(0, |m, a| m | a.rights)
    }

    /// Whether the DACL is protected and admits exactly LocalSystem and Administrators.
    #[must_use]
    pub fn admits_only_system_and_administrators(&self) -> bool {
        let mut trustees: Vec<&str> = self.aces.iter().map(|a| a.trustee.as_str()).collect();
        trustees.sort_unstable();
        trustees.dedup();
        self.protected && trustees == ["BA", "SY"]
    }
}

#[repr(C, align(16))]
struct ObjectMemory<const N: usize>([u8; N]);

/// A device the driver registered.
struct Registered {
    object: Box<ObjectMemory<0x150>>,
    handle_marker: Box<u64>,
    device_name: String,
    symbolic_name: String,
    major: [Option<DRIVER_DISPATCH>; IRP_MJ_FUNCTION_COUNT],
    sddl: Sddl,
    open_handles: AtomicUsize,
}

impl Registered {
    fn object_ptr(&self) -> *mut DEVICE_OBJECT {
        ptr::from_ref(&*self.object).cast_mut().cast()
    }
    fn handle(&self) -> NDIS_HANDLE {
        ptr::from_ref(&*self.handle_marker).cast_mut().cast()
    }
}

// SAFETY: the raw pointers it hands out point into boxes it owns; the rest is plain data and an
// atomic.
unsafe impl Send for Registered {}
// SAFETY: as above.
unsafe impl Sync for Registered {}

#[derive(Debug)]
struct IrpRecord {
    major: u8,
    output_len: usize,
    completions: u32,
    completed: Option<(NTSTATUS, usize)>,
}

/// The device registrations and the IRPs in flight.
#[derive(Default)]
pub struct DeviceState {
    registered: Mutex<Vec<Arc<Registered>>>,
    irps: Mutex<HashMap<usize, IrpRecord>>,
    registrations: AtomicUsize,
    irps_sent: AtomicUsize,
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState").field("registrations", &self.registrations).finish_non_exhaustive()
    }
}

impl DeviceState {
    fn list(&self) -> Vec<Arc<Registered>> {
        self.registered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether any device is registered now.
    pub fn is_registered(&self) -> bool {
        !self.list().is_empty()
    }

    /// IRPs sent to the driver so far.
    pub fn irps_sent(&self) -> usize {
        self.irps_sent.load(Ordering::Relaxed)
    }
}

fn unicode(s: *const UNICODE_STRING) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-NULL, a string of the caller valid for the call.
    let s = unsafe { &*s };
    if s.Buffer.is_null() || !s.Length.is_multiple_of(2) || s.Length > s.MaximumLength {
        return None;
    }
    // SAFETY: Buffer holds Length bytes (checked shape).
    let w = unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length / 2)) };
    String::from_utf16(w).ok()
}

/// Validates the attributes; returns the registration or the status NDIS would fail with.
fn validate(a: &NDIS_DEVICE_OBJECT_ATTRIBUTES) -> Result<Registered, NDIS_STATUS> {
    let api = "NdisRegisterDeviceEx";
    let bad = |msg: String| {
        violation(api, msg);
        Err(NDIS_STATUS_INVALID_PARAMETER)
    };
    if a.Header.Type != NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES
        || a.Header.Revision != NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1
        || a.Header.Size < NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1
    {
        return bad(format!(
            "bad attributes header {:?} (expected type 0x85, revision 1, size 0x38)",
            a.Header
        ));
    }
    let Some(device_name) = unicode(a.DeviceName).filter(|n| n.len() > 8 && n.starts_with("\\Device\\"))
    else {
        return bad("DeviceName is not a valid \\Device\\<name> NDIS_STRING".into());
    };
    let Some(symbolic_name) = unicode(a.SymbolicName).filter(|n| {
        n.strip_prefix("\\DosDevices\\").or_else(|| n.strip_prefix("\\??\\")).is_some_and(|r| !r.is_empty())
    }) else {
        return bad("SymbolicName is not a valid \\DosDevices\\<name> NDIS_STRING".into());
    };
    if a.MajorFunctions.is_null() {
        return bad("MajorFunctions is NULL".into());
    }
    // SAFETY: the DDI asks for a table of IRP_MJ_MAXIMUM_FUNCTION + 1 entries.
    let major = unsafe { a.MajorFunctions.cast::<[Option<DRIVER_DISPATCH>; IRP_MJ_FUNCTION_COUNT]>().read() };
    for (mj, name) in [
        (IRP_MJ_CREATE, "CREATE"),
        (IRP_MJ_CLOSE, "CLOSE"),
        (IRP_MJ_CLEANUP, "CLEANUP"),
        (IRP_MJ_DEVICE_CONTROL, "DEVICE_CONTROL"),
    ] {
        if major[usize::from(mj)].is_none() {
            return bad(format!("no IRP_MJ_{name} handler"));
        }
    }
    for (mj, name) in [(IRP_MJ_PNP, "PNP"), (IRP_MJ_POWER, "POWER")] {
        if major[usize::from(mj)].is_some() {
            return bad(format!("an IRP_MJ_{name} handler: the DDI says NDIS devices must not have one"));
        }
    }
    let Some(sddl_text) = unicode(a.DefaultSDDLString) else {
        return bad("no DefaultSDDLString: the device would get NDIS's default security".into());
    };
    let sddl = match Sddl::parse(&sddl_text) {
        Ok(s) => s,
        Err(e) => return bad(format!("SDDL {sddl_text:?}: {e}")),
    };
    if !sddl.admits_only_system_and_administrators() {
        return bad(format!("SDDL {sddl_text:?} does not admit exactly SYSTEM and Administrators"));
    }
    if a.ExtensionSize != 0 {
        return bad(format!("ExtensionSize {}: the model provides no reserved extension", a.ExtensionSize));
    }
    Ok(Registered {
        object: Box::new(ObjectMemory([0; 0x150])),
        handle_marker: Box::new(0x4445_5649_4345),
        device_name,
        symbolic_name,
        major,
        sddl,
        open_handles: AtomicUsize::new(0),
    })
}

/// `NdisRegisterDeviceEx`.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisRegisterDeviceEx(
    NdisHandle: NDIS_HANDLE,
    DeviceObjectAttributes: *mut NDIS_DEVICE_OBJECT_ATTRIBUTES,
    pDeviceObject: *mut *mut DEVICE_OBJECT,
    NdisDeviceHandle: PNDIS_HANDLE,
) -> NDIS_STATUS {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisRegisterDeviceEx";
    let sh = shared();
    if current_irql() != PASSIVE_LEVEL {
        violation(api, "not at PASSIVE_LEVEL".into());
    }
    if NdisHandle != sh.driver_handle() || !sh.registered.load(Ordering::Acquire) {
        violation(api, "NdisHandle is not the registered filter driver handle".into());
        return NDIS_STATUS_FAILURE;
    }
    if DeviceObjectAttributes.is_null() || pDeviceObject.is_null() || NdisDeviceHandle.is_null() {
        violation(api, "NULL attributes or out pointer".into());
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    if let Some(status) = sh.opts.device_registration_failure {
        return status;
    }
    // SAFETY: non-NULL, the caller's attributes for the call.
    let reg = match validate(unsafe { &*DeviceObjectAttributes }) {
        Ok(r) => r,
        Err(status) => return status,
    };
    let mut list = sh.device.registered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if list.iter().any(|old| {
        old.device_name.eq_ignore_ascii_case(&reg.device_name)
            || old.symbolic_name.eq_ignore_ascii_case(&reg.symbolic_name)
    }) {
        violation(api, format!("{} or its symbolic link is already registered", reg.device_name));
        return STATUS_OBJECT_NAME_COLLISION;
    }
    let reg = Arc::new(reg);
    // SAFETY: non-NULL out pointers.
    unsafe { pDeviceObject.write(reg.object_ptr()) };
    // SAFETY: as above.
    unsafe { NdisDeviceHandle.write(reg.handle()) };
    list.push(reg);
    sh.device.registrations.fetch_add(1, Ordering::Relaxed);
    NDIS_STATUS_SUCCESS
}

/// `NdisDeregisterDeviceEx`.
///
/// # Safety
/// A handle from `NdisRegisterDeviceEx`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisDeregisterDeviceEx(NdisDeviceHandle: NDIS_HANDLE) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisDeregisterDeviceEx";
    let sh = shared();
    if current_irql() != PASSIVE_LEVEL {
        violation(api, "not at PASSIVE_LEVEL".into());
    }
    let mut list = sh.device.registered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match list.iter().position(|r| r.handle() == NdisDeviceHandle) {
        Some(i) => {
            if list[i].open_handles.load(Ordering::Acquire) != 0 {
                violation(api, "handles to the device are still open".into());
            }
            list.remove(i);
        }
        None => violation(api, format!("{NdisDeviceHandle:p} is not a registered device handle")),
    }
}

/// `IofCompleteRequest`.
///
/// # Safety
/// An IRP the model sent and the driver owns.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IofCompleteRequest(Irp: *mut IRP, PriorityBoost: i8) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "IofCompleteRequest";
    let sh = shared();
    if current_irql() > DISPATCH_LEVEL {
        violation(api, "above DISPATCH_LEVEL".into());
    }
    if PriorityBoost != IO_NO_INCREMENT {
        violation(
            api,
            format!("priority boost {PriorityBoost}: a request completed at once gets IO_NO_INCREMENT"),
        );
    }
    let mut irps = sh.device.irps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(rec) = irps.get_mut(&Irp.addr()) else {
        violation(api, format!("{Irp:p} is not an IRP in flight"));
        return;
    };
    rec.completions += 1;
    if rec.completions > 1 {
        violation(api, format!("IRP {Irp:p} (major {:#x}) completed twice", rec.major));
        return;
    }
    // SAFETY: an IRP of the model, alive until the dispatch call returns.
    let io = unsafe { (*Irp).IoStatus };
    if io.Status == STATUS_SENTINEL {
        violation(api, "IoStatus.Status was never set".into());
    }
    if io.Information == INFORMATION_SENTINEL {
        violation(api, "IoStatus.Information was never set".into());
    }
    if io.Status == crate::sys::NDIS_STATUS_PENDING {
        violation(api, "completed with STATUS_PENDING".into());
    }
    if rec.major == IRP_MJ_DEVICE_CONTROL && io.Information > rec.output_len {
        violation(
            api,
            format!("Information {} exceeds OutputBufferLength {}", io.Information, rec.output_len),
        );
    }
    if is_error(io.Status) && io.Information != 0 && io.Information != INFORMATION_SENTINEL {
        violation(
            api,
            format!("error {:#010x} with Information {}", io.Status.cast_unsigned(), io.Information),
        );
    }
    rec.completed = Some((io.Status, io.Information));
}

/// What a control request came back with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoctlResult {
    /// The final status (the I/O manager's, if it failed the request before the driver).
    pub status: NTSTATUS,
    /// `IoStatus.Information`.
    pub information: usize,
    /// The bytes copied back to the caller: `Information` bytes unless the status is an error.
    pub output: Vec<u8>,
}

impl IoctlResult {
    fn failed(status: NTSTATUS) -> Self {
        Self { status, information: 0, output: Vec::new() }
    }
}

/// Sends one IRP to the driver and checks its completion; returns (returned status, IoStatus).
fn send_irp(
    reg: &Registered,
    major: u8,
    file: *mut c_void,
    parameters: IO_STACK_LOCATION_PARAMETERS,
    system_buffer: *mut c_void,
    output_len: usize,
) -> (NTSTATUS, IO_STATUS_BLOCK) {
    let sh = shared();
    let Some(dispatch) = reg.major.get(usize::from(major)).copied().flatten() else {
        return (
            STATUS_INVALID_DEVICE_REQUEST,
            IO_STATUS_BLOCK { Status: STATUS_INVALID_DEVICE_REQUEST, ..Default::default() },
        );
    };
    let mut stack = Box::new(IO_STACK_LOCATION {
        MajorFunction: major,
        MinorFunction: 0,
        Flags: 0,
        Control: 0,
        Padding0: 0,
        Parameters: parameters,
        DeviceObject: reg.object_ptr(),
        FileObject: file,
        CompletionRoutine: ptr::null_mut(),
        Context: ptr::null_mut(),
    });
    // SAFETY: IRP is plain data; all-zero is a valid starting value.
    let mut irp: Box<IRP> = Box::new(unsafe { std::mem::zeroed() });
    irp.Type = 6; // IO_TYPE_IRP
    irp.Size = u16::try_from(size_of::<IRP>() + size_of::<IO_STACK_LOCATION>()).unwrap_or(u16::MAX);
    irp.StackCount = 1;
    irp.CurrentLocation = 1;
    irp.RequestorMode = 1; // UserMode
    irp.SystemBuffer = system_buffer;
    irp.IoStatus =
        IO_STATUS_BLOCK { Status: STATUS_SENTINEL, PointerHigh: 0, Information: INFORMATION_SENTINEL };
    irp.CurrentStackLocation = &raw mut *stack;
    irp.OriginalFileObject = file;
    let irp_ptr: *mut IRP = &raw mut *irp;
    sh.device
        .irps
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(irp_ptr.addr(), IrpRecord { major, output_len, completions: 0, completed: None });
    sh.device.irps_sent.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the driver's dispatch routine with its device object and an IRP built as the I/O
    // manager builds one; PASSIVE_LEVEL.
    let returned = at_irql(PASSIVE_LEVEL, || unsafe { dispatch(reg.object_ptr(), irp_ptr) });
    let rec =
        sh.device.irps.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&irp_ptr.addr());
    let api = "dispatch";
    let Some((status, information)) = rec.and_then(|r| r.completed) else {
        violation(api, format!("major {major:#x}: returned {returned:#x} without completing the IRP"));
        return (returned, IO_STATUS_BLOCK { Status: returned, ..Default::default() });
    };
    if returned != status {
        violation(api, format!("major {major:#x}: returned {returned:#x} but completed with {status:#x}"));
    }
    if irp.IoStatus.Status != status || irp.IoStatus.Information != information {
        violation(api, format!("major {major:#x}: IoStatus written after IofCompleteRequest"));
    }
    drop(stack);
    (returned, IO_STATUS_BLOCK { Status: status, PointerHigh: 0, Information: information })
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Chunk([u8; 16]);

/// An open handle to the control device. Closing it (drop) sends IRP_MJ_CLEANUP and
/// IRP_MJ_CLOSE.
pub struct DeviceHandle<'m> {
    reg: Arc<Registered>,
    file: Box<ObjectMemory<0xD8>>,
    granted: u32,
    _model: PhantomData<&'m Model>,
}

impl std::fmt::Debug for DeviceHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle").field("granted", &self.granted).finish_non_exhaustive()
    }
}

impl DeviceHandle<'_> {
    fn file_ptr(&self) -> *mut c_void {
        ptr::from_ref(&*self.file).cast_mut().cast()
    }

    /// The access the handle was granted (`FILE_READ_DATA`, `FILE_WRITE_DATA`).
    #[must_use]
    pub fn granted_access(&self) -> u32 {
        self.granted
    }

    /// `DeviceIoControl(code, input, output_len)`: the I/O manager's access check, then a
    /// `METHOD_BUFFERED` IRP whose system buffer holds `max(input, output)` bytes followed by
    /// [`GUARD_BYTES`] of guard pattern. Records a violation for any write past the output
    /// length or the buffer.
    #[must_use]
    pub fn ioctl(&self, code: u32, input: &[u8], output_len: usize) -> IoctlResult {
        let needed = match access(code) {
            FILE_READ_ACCESS => FILE_READ_DATA,
            FILE_WRITE_ACCESS => FILE_WRITE_DATA,
            3 => FILE_READ_DATA | FILE_WRITE_DATA,
            _ => 0,
        };
        if self.granted & needed != needed {
            return IoctlResult::failed(STATUS_ACCESS_DENIED);
        }
        let buffered = method(code) == METHOD_BUFFERED;
        let len = if buffered { input.len().max(output_len) } else { 0 };
        let chunks = (len + GUARD_BYTES).div_ceil(16);
        let mut mem = vec![Chunk([FILL; 16]); chunks];
        let base: *mut u8 = mem.as_mut_ptr().cast();
        // SAFETY: `mem` holds `chunks * 16 >= len + GUARD_BYTES` bytes, exclusively ours here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, chunks * 16) };
        bytes[..input.len().min(len)].copy_from_slice(&input[..input.len().min(len)]);
        bytes[len..].fill(GUARD);
        let before = bytes.to_vec();
        let system_buffer = if len == 0 { ptr::null_mut() } else { base.cast() };
        let parameters = IO_STACK_LOCATION_PARAMETERS {
            DeviceIoControl: IO_STACK_LOCATION_DEVICE_IO_CONTROL {
                OutputBufferLength: u32::try_from(output_len).unwrap_or(u32::MAX),
                Padding0: 0,
                InputBufferLength: u32::try_from(input.len()).unwrap_or(u32::MAX),
                Padding1: 0,
                IoControlCode: code,
                Padding2: 0,
                Type3InputBuffer: ptr::null_mut(),
            },
        };
        let (_, io) = send_irp(
            &self.reg,
            IRP_MJ_DEVICE_CONTROL,
            self.file_ptr(),
            parameters,
            system_buffer,
            output_len,
        );
        // SAFETY: as above; the driver is done with the buffer.
        let after = unsafe { std::slice::from_raw_parts(base.cast_const(), chunks * 16) };
        if after[len..] != before[len..] {
            violation("DeviceIoControl", format!("code {code:#x}: wrote past the {len}-byte system buffer"));
        }
        if output_len < len && after[output_len..len] != before[output_len..len] {
            violation(
                "DeviceIoControl",
                format!(
                    "code {code:#x}: wrote past OutputBufferLength {output_len} inside the system buffer"
                ),
            );
        }
        let output = if is_error(io.Status) {
            Vec::new()
        } else {
            after[..io.Information.min(output_len).min(len)].to_vec()
        };
        drop(mem);
        IoctlResult { status: io.Status, information: io.Information, output }
    }
}

impl Drop for DeviceHandle<'_> {
    fn drop(&mut self) {
        let others = IO_STACK_LOCATION_PARAMETERS { Others: [0; 4] };
        for major in [IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
            let (status, _) = send_irp(&self.reg, major, self.file_ptr(), others, ptr::null_mut(), 0);
            if status != STATUS_SUCCESS {
                violation("CloseHandle", format!("major {major:#x} completed with {status:#x}"));
            }
        }
        self.reg.open_handles.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Model {
    /// `CreateFileW(path, desired_access)` by `caller`: resolves `\\.\<name>` through the
    /// symbolic link the driver registered, checks the device's SDDL, sends IRP_MJ_CREATE.
    ///
    /// # Errors
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (no such device), `STATUS_ACCESS_DENIED` (the SDDL refuses
    /// `caller` the access), or the status the driver failed the create with.
    pub fn open_device(
        &self,
        path: &str,
        desired_access: u32,
        caller: Caller,
    ) -> Result<DeviceHandle<'_>, NTSTATUS> {
        let sh = shared();
        // `\\.\X` is `\??\X`, the symbolic link `\DosDevices\X`.
        let wanted = path.strip_prefix("\\\\.\\").unwrap_or("\u{0}");
        let Some(reg) = sh.device.list().into_iter().find(|r| {
            r.symbolic_name.rsplit('\\').next().is_some_and(|link| link.eq_ignore_ascii_case(wanted))
        }) else {
            return Err(STATUS_OBJECT_NAME_NOT_FOUND);
        };
        let granted = reg.sddl.granted(caller);
        if granted == 0 || desired_access & !granted != 0 {
            return Err(STATUS_ACCESS_DENIED);
        }
        let file = Box::new(ObjectMemory([0; 0xD8]));
        let file_ptr: *mut c_void = ptr::from_ref(&*file).cast_mut().cast();
        // IO_SECURITY_CONTEXT: SecurityQos, AccessState, DesiredAccess, FullCreateOptions.
        let mut security = [0u64; 3];
        security[2] = u64::from(desired_access);
        let parameters = IO_STACK_LOCATION_PARAMETERS {
            Create: IO_STACK_LOCATION_CREATE {
                SecurityContext: security.as_mut_ptr().cast(),
                Options: 1 << 24, // FILE_OPEN
                Padding0: 0,
                FileAttributes: 0,
                ShareAccess: 0,
                Padding1: 0,
                EaLength: 0,
                Padding2: 0,
            },
        };
        let (_, io) = send_irp(&reg, IRP_MJ_CREATE, file_ptr, parameters, ptr::null_mut(), 0);
        if is_error(io.Status) {
            // A failed create leaves no handle: the I/O manager sends no cleanup or close.
            return Err(io.Status);
        }
        reg.open_handles.fetch_add(1, Ordering::AcqRel);
        Ok(DeviceHandle { reg, file, granted: desired_access, _model: PhantomData })
    }

    /// One control request on a fresh handle opened by an administrator with `granted_access`
    /// (`FILE_READ_DATA` | `FILE_WRITE_DATA`): open, `DeviceIoControl`, close.
    #[must_use]
    pub fn ioctl(&self, code: u32, input: &[u8], output_len: usize, granted_access: u32) -> IoctlResult {
        match self.open_device(nbshm_proto::USER_PATH, granted_access, Caller::Administrator) {
            Ok(h) => h.ioctl(code, input, output_len),
            Err(status) => IoctlResult::failed(status),
        }
    }

    /// The (device name, symbolic link) of every device registered now.
    #[must_use]
    pub fn device_names(&self) -> Vec<(String, String)> {
        shared().device.list().iter().map(|r| (r.device_name.clone(), r.symbolic_name.clone())).collect()
    }

    /// IRPs the model has sent to the driver's dispatch routines so far.
    #[must_use]
    pub fn irps_sent(&self) -> usize {
        shared().device.irps_sent()
    }

    /// Devices registered since the model was created.
    #[must_use]
    pub fn device_registrations(&self) -> usize {
        shared().device.registrations.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::model::ModelOptions;
    use nbshm_proto::ioctl::{FILE_ANY_ACCESS, ctl_code};

    // A deliberately broken driver device, to prove the model catches each breach.
    const ROGUE_TYPE: u32 = 0x8001;
    const PAST_OUTPUT: u32 = ctl_code(ROGUE_TYPE, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS);
    const PAST_BUFFER: u32 = ctl_code(ROGUE_TYPE, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS);
    const NO_COMPLETE: u32 = ctl_code(ROGUE_TYPE, 0x802, METHOD_BUFFERED, FILE_ANY_ACCESS);
    const TWICE: u32 = ctl_code(ROGUE_TYPE, 0x803, METHOD_BUFFERED, FILE_ANY_ACCESS);
    const TOO_MUCH_INFORMATION: u32 = ctl_code(ROGUE_TYPE, 0x804, METHOD_BUFFERED, FILE_ANY_ACCESS);
    const BOOST: u32 = ctl_code(ROGUE_TYPE, 0x805, METHOD_BUFFERED, FILE_ANY_ACCESS);
    const WELL_BEHAVED: u32 = ctl_code(ROGUE_TYPE, 0x806, METHOD_BUFFERED, FILE_ANY_ACCESS);

    unsafe extern "system" fn rogue_create(_d: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
        // SAFETY: the model's IRP, completed once.
        unsafe {
            (*irp).IoStatus.Status = STATUS_SUCCESS;
            (*irp).IoStatus.Information = 0;
            IofCompleteRequest(irp, IO_NO_INCREMENT);
        }
        STATUS_SUCCESS
    }

    unsafe extern "system" fn rogue_control(_d: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
        // SAFETY: the model's IRP and stack location; writes sized to break the rules on purpose,
        // but within the model's allocation (buffer + guard bytes).
        unsafe {
            let p = (*(*irp).CurrentStackLocation).Parameters.DeviceIoControl;
            let out_len = p.OutputBufferLength as usize;
            let buf = (*irp).SystemBuffer.cast::<u8>();
            let mut info = 0;
            let mut boost = IO_NO_INCREMENT;
            match p.IoControlCode {
                PAST_OUTPUT => buf.add(out_len).write(0x11),
                PAST_BUFFER => buf.add(p.InputBufferLength.max(p.OutputBufferLength) as usize).write(0x22),
                NO_COMPLETE => return STATUS_SUCCESS,
                TOO_MUCH_INFORMATION => info = out_len + 1,
                BOOST => boost = 2,
                WELL_BEHAVED => {
                    buf.write_bytes(0x5A, out_len);
                    info = out_len;
                }
                _ => {}
            }
            (*irp).IoStatus.Status = STATUS_SUCCESS;
            (*irp).IoStatus.Information = info;
            IofCompleteRequest(irp, boost);
            if p.IoControlCode == TWICE {
                IofCompleteRequest(irp, IO_NO_INCREMENT);
            }
        }
        STATUS_SUCCESS
    }

    fn ustr(w: &mut Vec<u16>) -> UNICODE_STRING {
        let b = u16::try_from(w.len() * 2).unwrap();
        UNICODE_STRING { Length: b, MaximumLength: b, Buffer: w.as_mut_ptr() }
    }

    #[test]
    fn the_model_catches_every_breach_of_the_irp_rules() {
        let mut m = Model::new(ModelOptions::default());
        assert_eq!(m.load(), 0);
        let mut names: Vec<Vec<u16>> = ["\\Device\\Rogue", "\\DosDevices\\Rogue", nbshm_proto::SDDL]
            .iter()
            .map(|s| s.encode_utf16().collect())
            .collect();
        let mut major: [Option<DRIVER_DISPATCH>; IRP_MJ_FUNCTION_COUNT] = [None; IRP_MJ_FUNCTION_COUNT];
        for mj in [IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
            major[usize::from(mj)] = Some(rogue_create);
        }
        major[usize::from(IRP_MJ_DEVICE_CONTROL)] = Some(rogue_control);
        let mut device_name = ustr(&mut names[0]);
        let mut symbolic = ustr(&mut names[1]);
        let sddl = ustr(&mut names[2]);
        let mut attrs = NDIS_DEVICE_OBJECT_ATTRIBUTES {
            Header: crate::sys::NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
                Revision: NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
                Size: NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
            },
            DeviceName: &raw mut device_name,
            SymbolicName: &raw mut symbolic,
            MajorFunctions: major.as_mut_ptr(),
            ExtensionSize: 0,
            DefaultSDDLString: &raw const sddl,
            DeviceClassGuid: ptr::null(),
        };
        let (mut object, mut handle) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: the model's export with valid arguments, at PASSIVE.
        let status = unsafe {
            NdisRegisterDeviceEx(shared().driver_handle(), &raw mut attrs, &raw mut object, &raw mut handle)
        };
        assert_eq!(status, NDIS_STATUS_SUCCESS);
        // The same names again collide.
        let (mut o2, mut h2) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: as above.
        let status = unsafe {
            NdisRegisterDeviceEx(shared().driver_handle(), &raw mut attrs, &raw mut o2, &raw mut h2)
        };
        assert_eq!(status, STATUS_OBJECT_NAME_COLLISION);
        crate::host::violations::reset();

        let h = m.open_device("\\\\.\\Rogue", 0, Caller::Administrator).unwrap();
        let cases: [(u32, usize, usize, &str); 6] = [
            (PAST_OUTPUT, 32, 8, "wrote past OutputBufferLength 8"),
            (PAST_BUFFER, 0, 8, "wrote past the 8-byte system buffer"),
            (NO_COMPLETE, 0, 0, "without completing the IRP"),
            (TWICE, 0, 0, "completed twice"),
            (TOO_MUCH_INFORMATION, 0, 8, "Information 9 exceeds OutputBufferLength 8"),
            (BOOST, 0, 0, "priority boost 2"),
        ];
        for (code, input, output, expected) in cases {
            let before = crate::host::violations::count();
            let _ = h.ioctl(code, &vec![7u8; input], output);
            let found = crate::host::violations::list();
            assert!(
                found.iter().skip(usize::try_from(before).unwrap()).any(|v| v.message.contains(expected)),
                "{code:#x}: expected a violation containing {expected:?}, got {found:?}"
            );
        }
        crate::host::violations::reset();
        let r = h.ioctl(WELL_BEHAVED, &[1, 2, 3], 5);
        assert_eq!(r, IoctlResult { status: 0, information: 5, output: vec![0x5A; 5] });
        assert_eq!(m.violations(), vec![], "a well-behaved request is clean");
        drop(h);
        // SAFETY: the handle registered above; PASSIVE.
        unsafe { NdisDeregisterDeviceEx(handle) };
        m.unload();
        assert_eq!(m.violations(), vec![]);
    }

    #[test]
    fn sddl_of_the_driver_admits_system_and_administrators_only() {
        let s = Sddl::parse(nbshm_proto::SDDL).unwrap();
        assert!(s.admits_only_system_and_administrators());
        assert_eq!(s.granted(Caller::System), RIGHTS_ALL);
        assert_eq!(s.granted(Caller::Administrator), RIGHTS_ALL);
        assert_eq!(s.granted(Caller::User), 0);
    }

    #[test]
    fn sddl_variants() {
        let open = Sddl::parse("D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GR;;;WD)").unwrap();
        assert!(!open.admits_only_system_and_administrators(), "Everyone can read");
        assert_eq!(open.granted(Caller::User), FILE_READ_DATA);
        let unprotected = Sddl::parse("D:(A;;GA;;;SY)(A;;GA;;;BA)").unwrap();
        assert!(!unprotected.admits_only_system_and_administrators(), "inheritable DACL");
        assert!(Sddl::parse("O:BAD:P(A;;GA;;;SY)").is_err());
        assert!(Sddl::parse("D:P(D;;GA;;;WD)").is_err(), "deny ACEs are not modeled");
        assert!(Sddl::parse("D:P(A;;0x1f01ff;;;SY)").is_err());
    }
}
