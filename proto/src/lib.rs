//! The nbshm control-device protocol, shared by the driver (`src/device.rs`) and `nbshmctl`.
//!
//! * names: the device, its symbolic link and the user-mode path, and the SDDL that secures it;
//! * IOCTL codes ([`ioctl`]): `METHOD_BUFFERED`, private device type [`DEVICE_TYPE`], queries
//!   with `FILE_READ_ACCESS`, changes with `FILE_WRITE_ACCESS`;
//! * request/response types ([`types`]): `#[repr(C)]`, little-endian, no padding, each starting
//!   with a [`Header`] (protocol version + size of the structure);
//! * request validation ([`decode_request`]) and the output-length rules ([`output`]), so that
//!   the driver and the client apply one definition;
//! * the `NTSTATUS` values the driver returns ([`status`]).
//!
//! docs/ioctl.md is the reference for the contract (every status and when it is returned).
//! `no_std`, no `unsafe`, no panics: the driver runs this code in the kernel.
#![no_std]
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used))]

pub mod wire;

mod types;

pub use types::*;
pub use wire::Wire;

/// Kernel name of the control device.
pub const DEVICE_NAME: &str = "\\Device\\Nbshm";
/// Its symbolic link (what `\\.\Nbshm` resolves to: `\??\Nbshm` = `\DosDevices\Nbshm`).
pub const SYMBOLIC_NAME: &str = "\\DosDevices\\Nbshm";
/// The path user mode opens (`CreateFileW`).
pub const USER_PATH: &str = "\\\\.\\Nbshm";
/// Security descriptor of the device: a protected DACL granting GENERIC_ALL to LocalSystem
/// (`SY`) and the built-in Administrators (`BA`), nobody else (`SDDL_DEVOBJ_SYS_ALL_ADM_ALL`).
pub const SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// The protocol version every [`Header`] carries. A request with another version gets
/// [`status::STATUS_REVISION_MISMATCH`].
pub const PROTOCOL_VERSION: u32 = 1;

/// `NTSTATUS` values of the protocol (the values of ntstatus.h).
pub mod status {
    /// `STATUS_SUCCESS`.
    pub const STATUS_SUCCESS: i32 = 0;
    /// `STATUS_BUFFER_OVERFLOW` (a warning: partial data was returned).
    pub const STATUS_BUFFER_OVERFLOW: i32 = 0x8000_0005_u32.cast_signed();
    /// `STATUS_INFO_LENGTH_MISMATCH`.
    pub const STATUS_INFO_LENGTH_MISMATCH: i32 = 0xC000_0004_u32.cast_signed();
    /// `STATUS_INVALID_PARAMETER`.
    pub const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32.cast_signed();
    /// `STATUS_INVALID_DEVICE_REQUEST`.
    pub const STATUS_INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32.cast_signed();
    /// `STATUS_ACCESS_DENIED`.
    pub const STATUS_ACCESS_DENIED: i32 = 0xC000_0022_u32.cast_signed();
    /// `STATUS_BUFFER_TOO_SMALL`.
    pub const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32.cast_signed();
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (no such device: the driver is not loaded).
    pub const STATUS_OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32.cast_signed();
    /// `STATUS_REVISION_MISMATCH`.
    pub const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32.cast_signed();
    /// `STATUS_NOT_SUPPORTED`.
    pub const STATUS_NOT_SUPPORTED: i32 = 0xC000_00BB_u32.cast_signed();
    /// `STATUS_NOT_FOUND`.
    pub const STATUS_NOT_FOUND: i32 = 0xC000_0225_u32.cast_signed();

    /// `NT_ERROR(status)`: the severity bits are 11 (an error: no data is returned).
    #[must_use]
    pub const fn is_error(status: i32) -> bool {
        (status.cast_unsigned() >> 30) == 3
    }

    /// The `ntstatus.h` name of a status this protocol uses.
    #[must_use]
    pub const fn name(status: i32) -> Option<&'static str> {
        Some(match status {
            STATUS_SUCCESS => "STATUS_SUCCESS",
            STATUS_BUFFER_OVERFLOW => "STATUS_BUFFER_OVERFLOW",
            STATUS_INFO_LENGTH_MISMATCH => "STATUS_INFO_LENGTH_MISMATCH",
            STATUS_INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
            STATUS_INVALID_DEVICE_REQUEST => "STATUS_INVALID_DEVICE_REQUEST",
            STATUS_ACCESS_DENIED => "STATUS_ACCESS_DENIED",
            STATUS_BUFFER_TOO_SMALL => "STATUS_BUFFER_TOO_SMALL",
            STATUS_OBJECT_NAME_NOT_FOUND => "STATUS_OBJECT_NAME_NOT_FOUND",
            STATUS_REVISION_MISMATCH => "STATUS_REVISION_MISMATCH",
            STATUS_NOT_SUPPORTED => "STATUS_NOT_SUPPORTED",
            STATUS_NOT_FOUND => "STATUS_NOT_FOUND",
            _ => return None,
        })
    }
}

/// `CTL_CODE` and the protocol's control codes.
pub mod ioctl {
    /// `METHOD_BUFFERED`.
    pub const METHOD_BUFFERED: u32 = 0;
    /// `FILE_ANY_ACCESS`.
    pub const FILE_ANY_ACCESS: u32 = 0;
    /// `FILE_READ_ACCESS` (= `FILE_READ_DATA`, the handle right it demands).
    pub const FILE_READ_ACCESS: u32 = 1;
    /// `FILE_WRITE_ACCESS` (= `FILE_WRITE_DATA`).
    pub const FILE_WRITE_ACCESS: u32 = 2;

    /// `CTL_CODE(DeviceType, Function, Method, Access)`.
    #[must_use]
    pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
        (device_type << 16) | (access << 14) | (function << 2) | method
    }

    /// The `Access` field of a control code (what the I/O manager checks against the handle).
    #[must_use]
    pub const fn access(code: u32) -> u32 {
        (code >> 14) & 3
    }

    /// The `Method` field of a control code.
    #[must_use]
    pub const fn method(code: u32) -> u32 {
        code & 3
    }

    /// Private device type, from the vendor range 0x8000..=0xFFFF (arbitrary; fixed for good once
    /// released, because clients hard-code the codes).
    pub const DEVICE_TYPE: u32 = 0x8E5D;

    /// Protocol version, driver version, sizes. Input: none (0 bytes). Output: `VersionResponse`.
    pub const IOCTL_NBSHM_QUERY_VERSION: u32 =
        ctl_code(DEVICE_TYPE, 0x800, METHOD_BUFFERED, FILE_READ_ACCESS);
    /// Every attached module with its statistics. Input: `ListModulesRequest`. Output:
    /// `ModuleListHeader` + `ModuleRecord` × n.
    pub const IOCTL_NBSHM_LIST_MODULES: u32 = ctl_code(DEVICE_TYPE, 0x801, METHOD_BUFFERED, FILE_READ_ACCESS);
    /// One module's handle table, a page at a time. Input: `HandlesRequest`. Output:
    /// `HandleListHeader` + `HandleRecord` × n.
    pub const IOCTL_NBSHM_QUERY_HANDLES: u32 =
        ctl_code(DEVICE_TYPE, 0x802, METHOD_BUFFERED, FILE_READ_ACCESS);
    /// Zero the statistics of one module or all. Input: `ResetRequest`. Output: `ResetResponse`.
    pub const IOCTL_NBSHM_RESET_STATS: u32 = ctl_code(DEVICE_TYPE, 0x803, METHOD_BUFFERED, FILE_WRITE_ACCESS);
    /// The configuration. Input: `GetConfigRequest`. Output: `ConfigResponse`.
    pub const IOCTL_NBSHM_GET_CONFIG: u32 = ctl_code(DEVICE_TYPE, 0x804, METHOD_BUFFERED, FILE_READ_ACCESS);
    /// Change one runtime keyword. Input: `SetConfigRequest`. Output: `SetConfigResponse`.
    pub const IOCTL_NBSHM_SET_CONFIG: u32 = ctl_code(DEVICE_TYPE, 0x805, METHOD_BUFFERED, FILE_WRITE_ACCESS);

    /// Every control code with its name.
    pub const ALL: [(u32, &str); 6] = [
        (IOCTL_NBSHM_QUERY_VERSION, "IOCTL_NBSHM_QUERY_VERSION"),
        (IOCTL_NBSHM_LIST_MODULES, "IOCTL_NBSHM_LIST_MODULES"),
        (IOCTL_NBSHM_QUERY_HANDLES, "IOCTL_NBSHM_QUERY_HANDLES"),
        (IOCTL_NBSHM_RESET_STATS, "IOCTL_NBSHM_RESET_STATS"),
        (IOCTL_NBSHM_GET_CONFIG, "IOCTL_NBSHM_GET_CONFIG"),
        (IOCTL_NBSHM_SET_CONFIG, "IOCTL_NBSHM_SET_CONFIG"),
    ];

    const _: () = assert!(DEVICE_TYPE >= 0x8000 && DEVICE_TYPE <= 0xFFFF, "vendor device type range");
    const _: () = assert!(IOCTL_NBSHM_QUERY_VERSION == 0x8E5D_6000);
    const _: () = assert!(IOCTL_NBSHM_RESET_STATS == 0x8E5D_A00C);
    const _: () = assert!(IOCTL_NBSHM_SET_CONFIG == 0x8E5D_A014);
}

/// Configuration keywords as the protocol numbers them (the driver's `config::Keyword` ids;
/// the driver asserts at compile time that the names agree).
pub const KEYWORD_NAMES: [&str; KEYWORD_COUNT] = [
    "MaxSegmentsPerNetBuffer",
    "SendPathWalk",
    "UsageIntervalMs",
    "HandleTableSize",
    "VerboseSegments",
    "ReceivePathWalk",
];

/// The keyword id of `name` (case-insensitive, as the registry is).
#[must_use]
pub fn keyword_id(name: &str) -> Option<u32> {
    let i = KEYWORD_NAMES.iter().position(|k| k.eq_ignore_ascii_case(name))?;
    u32::try_from(i).ok()
}

/// The name of keyword `id`.
#[must_use]
pub fn keyword_name(id: u32) -> Option<&'static str> {
    KEYWORD_NAMES.get(usize::try_from(id).ok()?).copied()
}

/// Anomaly kinds in counter order (the driver's `shmem::AnomalyKind` names).
pub const ANOMALY_NAMES: [&str; ANOMALY_KINDS] =
    ["overlong", "offset_overflow", "null_handle", "zero_length", "bad_pointer"];

/// Module states as `ModuleRecord::state` carries them (the driver's `ModuleState` values).
pub mod state {
    /// Inside FilterAttach.
    pub const ATTACHING: u32 = 1;
    /// Attached, not running.
    pub const PAUSED: u32 = 2;
    /// Inside FilterRestart.
    pub const RESTARTING: u32 = 3;
    /// Traffic passes and is walked.
    pub const RUNNING: u32 = 4;
    /// Pause pending.
    pub const PAUSING: u32 = 5;
    /// Inside FilterDetach.
    pub const DETACHING: u32 = 6;

    /// Display name of a state value.
    #[must_use]
    pub const fn name(state: u32) -> &'static str {
        match state {
            ATTACHING => "attaching",
            PAUSED => "paused",
            RESTARTING => "restarting",
            RUNNING => "running",
            PAUSING => "pausing",
            DETACHING => "detaching",
            _ => "unknown",
        }
    }
}

/// A decoded, structurally valid request. Semantic checks (does the module exist, is the keyword
/// known and runtime, is the value in range) are the driver's: see docs/ioctl.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `IOCTL_NBSHM_QUERY_VERSION`.
    QueryVersion,
    /// `IOCTL_NBSHM_LIST_MODULES`.
    ListModules,
    /// `IOCTL_NBSHM_QUERY_HANDLES`.
    QueryHandles {
        /// Module id (never 0).
        module_id: u32,
        /// First handle-table slot of the page.
        start_index: u32,
    },
    /// `IOCTL_NBSHM_RESET_STATS`.
    Reset {
        /// Module id, or [`ALL_MODULES`].
        module_id: u32,
    },
    /// `IOCTL_NBSHM_GET_CONFIG`.
    GetConfig,
    /// `IOCTL_NBSHM_SET_CONFIG`.
    SetConfig {
        /// Keyword id (index into [`KEYWORD_NAMES`]).
        keyword: u32,
        /// New value.
        value: u32,
    },
}

/// Checks a request's header and length: the version first (a request from another protocol
/// version may have another size), then that the header's size and the input length both equal
/// the request type's size.
fn check_header<T: Wire>(input: &[u8]) -> Result<T, i32> {
    let header = Header::decode(input).ok_or(status::STATUS_INFO_LENGTH_MISMATCH)?;
    if header.version != PROTOCOL_VERSION {
        return Err(status::STATUS_REVISION_MISMATCH);
    }
    let size = u32::try_from(T::SIZE).unwrap_or(u32::MAX);
    if header.size != size || input.len() != T::SIZE {
        return Err(status::STATUS_INFO_LENGTH_MISMATCH);
    }
    T::decode(input).ok_or(status::STATUS_INFO_LENGTH_MISMATCH)
}

/// Decodes and structurally validates the input of control code `code`.
///
/// # Errors
/// The `NTSTATUS` to complete the request with, in this order:
/// * unknown code: `STATUS_INVALID_DEVICE_REQUEST`;
/// * `QUERY_VERSION` with any input: `STATUS_INFO_LENGTH_MISMATCH`;
/// * input shorter than a [`Header`]: `STATUS_INFO_LENGTH_MISMATCH`;
/// * `Header::version` not [`PROTOCOL_VERSION`]: `STATUS_REVISION_MISMATCH`;
/// * `Header::size` or the input length not the request type's size:
///   `STATUS_INFO_LENGTH_MISMATCH`;
/// * a reserved or flags field not zero, or module id 0 where one module is named:
///   `STATUS_INVALID_PARAMETER`.
pub fn decode_request(code: u32, input: &[u8]) -> Result<Request, i32> {
    use ioctl::{
        IOCTL_NBSHM_GET_CONFIG, IOCTL_NBSHM_LIST_MODULES, IOCTL_NBSHM_QUERY_HANDLES,
        IOCTL_NBSHM_QUERY_VERSION, IOCTL_NBSHM_RESET_STATS, IOCTL_NBSHM_SET_CONFIG,
    };
    let invalid = status::STATUS_INVALID_PARAMETER;
    match code {
        IOCTL_NBSHM_QUERY_VERSION => {
            if input.is_empty() {
                Ok(Request::QueryVersion)
            } else {
                Err(status::STATUS_INFO_LENGTH_MISMATCH)
            }
        }
        IOCTL_NBSHM_LIST_MODULES => {
            let r: ListModulesRequest = check_header(input)?;
            if r.flags != 0 || r.reserved != 0 { Err(invalid) } else { Ok(Request::ListModules) }
        }
        IOCTL_NBSHM_QUERY_HANDLES => {
            let r: HandlesRequest = check_header(input)?;
            if r.module_id == 0 {
                Err(invalid)
            } else {
                Ok(Request::QueryHandles { module_id: r.module_id, start_index: r.start_index })
            }
        }
        IOCTL_NBSHM_RESET_STATS => {
            let r: ResetRequest = check_header(input)?;
            if r.reserved != 0 { Err(invalid) } else { Ok(Request::Reset { module_id: r.module_id }) }
        }
        IOCTL_NBSHM_GET_CONFIG => {
            let r: GetConfigRequest = check_header(input)?;
            if r.flags != 0 || r.reserved != 0 { Err(invalid) } else { Ok(Request::GetConfig) }
        }
        IOCTL_NBSHM_SET_CONFIG => {
            let r: SetConfigRequest = check_header(input)?;
            Ok(Request::SetConfig { keyword: r.keyword, value: r.value })
        }
        _ => Err(status::STATUS_INVALID_DEVICE_REQUEST),
    }
}

/// The output-length rules.
pub mod output {
    use super::{
        ConfigResponse, HandleListHeader, HandleRecord, ModuleListHeader, Request, ResetResponse,
        SetConfigResponse, VersionResponse, Wire,
    };

    /// The smallest output buffer `request` accepts; a shorter one gets
    /// `STATUS_BUFFER_TOO_SMALL` with nothing written. For `LIST_MODULES` it is the list header
    /// alone (the records that do not fit make it `STATUS_BUFFER_OVERFLOW`); for
    /// `QUERY_HANDLES` the header and one record (so that every page makes progress).
    #[must_use]
    pub const fn minimum(request: &Request) -> usize {
        match request {
            Request::QueryVersion => VersionResponse::SIZE,
            Request::ListModules => ModuleListHeader::SIZE,
            Request::QueryHandles { .. } => HandleListHeader::SIZE + HandleRecord::SIZE,
            Request::Reset { .. } => ResetResponse::SIZE,
            Request::GetConfig => ConfigResponse::SIZE,
            Request::SetConfig { .. } => SetConfigResponse::SIZE,
        }
    }

    /// Records of `record_size` bytes that fit in `out_len` after a `header_size`-byte header.
    #[must_use]
    pub const fn records_that_fit(out_len: usize, header_size: usize, record_size: usize) -> usize {
        if out_len < header_size || record_size == 0 { 0 } else { (out_len - header_size) / record_size }
    }
}

/// Why a response could not be decoded (client side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header says.
    Short {
        /// Bytes needed.
        needed: usize,
        /// Bytes returned.
        got: usize,
    },
    /// The driver speaks another protocol version.
    Version(u32),
    /// A size field disagrees with this client's type sizes.
    Size {
        /// What the response said.
        got: u32,
        /// What this client expects.
        expected: u32,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Short { needed, got } => write!(f, "response too short: {got} bytes, {needed} needed"),
            Self::Version(v) => {
                write!(f, "driver speaks protocol version {v}, this client {PROTOCOL_VERSION}")
            }
            Self::Size { got, expected } => {
                write!(f, "response structure size {got}, this client expects {expected}")
            }
        }
    }
}

fn size_u32(size: usize) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// Decodes a fixed-size response and checks its header.
///
/// # Errors
/// Too short, another protocol version, or another structure size.
pub fn decode_fixed<T: Wire + HasHeader>(bytes: &[u8]) -> Result<T, DecodeError> {
    let v = T::decode(bytes).ok_or(DecodeError::Short { needed: T::SIZE, got: bytes.len() })?;
    check_response_header(v.header(), T::SIZE)?;
    Ok(v)
}

fn check_response_header(h: Header, size: usize) -> Result<(), DecodeError> {
    if h.version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(h.version));
    }
    if h.size != size_u32(size) {
        return Err(DecodeError::Size { got: h.size, expected: size_u32(size) });
    }
    Ok(())
}

/// A decoded list response: its header and the records that came with it.
#[derive(Clone, Copy, Debug)]
pub struct List<'a, H, R> {
    /// The list header.
    pub header: H,
    records: &'a [u8],
    count: usize,
    _record: core::marker::PhantomData<R>,
}

impl<H, R: Wire> List<'_, H, R> {
    /// Number of records returned.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.count
    }

    /// Whether no record was returned.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Record `i`.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<R> {
        if i >= self.count {
            return None;
        }
        R::decode(self.records.get(i.checked_mul(R::SIZE)?..)?)
    }

    /// The records.
    pub fn iter(&self) -> impl Iterator<Item = R> + '_ {
        (0..self.count).filter_map(|i| self.get(i))
    }
}

/// A list header: where it says how many records follow and how big they are.
pub trait ListHeader: Wire + HasHeader {
    /// Records returned.
    fn returned(&self) -> u32;
    /// Size of one record.
    fn record_size(&self) -> u32;
}

/// Decodes a list response (`bytes` = the returned bytes, i.e. `Information` of them).
///
/// # Errors
/// Too short for the header or the records it announces, another version, or other sizes.
pub fn decode_list<H: ListHeader, R: Wire>(bytes: &[u8]) -> Result<List<'_, H, R>, DecodeError> {
    let header: H = decode_fixed(bytes)?;
    if header.record_size() != size_u32(R::SIZE) {
        return Err(DecodeError::Size { got: header.record_size(), expected: size_u32(R::SIZE) });
    }
    let count = header.returned() as usize;
    let needed = H::SIZE.saturating_add(count.saturating_mul(R::SIZE));
    let records = bytes.get(H::SIZE..needed).ok_or(DecodeError::Short { needed, got: bytes.len() })?;
    Ok(List { header, records, count, _record: core::marker::PhantomData })
}

/// Types that start with a [`Header`].
pub trait HasHeader {
    /// The header.
    fn header(&self) -> Header;
}

#[cfg(test)]
mod tests;
