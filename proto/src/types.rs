//! Request and response types. All little-endian, `#[repr(C)]`, without padding (asserted by
//! [`wire_struct!`](crate::wire_struct)); offsets of the fields a client must find are asserted
//! below as well.

use core::mem::{offset_of, size_of};

use crate::wire::Wire;
use crate::{HasHeader, ListHeader, PROTOCOL_VERSION, wire_struct};

/// Anomaly kinds counted per direction.
pub const ANOMALY_KINDS: usize = 5;
/// Configuration keywords.
pub const KEYWORD_COUNT: usize = 6;
/// UTF-16 units of an adapter name carried per module (longer names are truncated).
pub const NAME_UNITS: usize = 128;
/// `ResetRequest::module_id` naming every module.
pub const ALL_MODULES: u32 = 0;
/// `ConfigValue::flags`: the keyword can be changed with `IOCTL_NBSHM_SET_CONFIG`.
pub const CONFIG_FLAG_RUNTIME: u32 = 0x1;

wire_struct! {
    /// Starts every request and response.
    pub struct Header {
        /// [`PROTOCOL_VERSION`].
        pub version: u32,
        /// Size in bytes of the structure this header starts (for a list: of the list header,
        /// without the records).
        pub size: u32,
    }
}

impl Header {
    /// The header of a `T` of this protocol version.
    #[must_use]
    pub const fn of<T: Wire>() -> Self {
        #[allow(clippy::cast_possible_truncation, reason = "every protocol type is far below 4 GiB")]
        Self { version: PROTOCOL_VERSION, size: T::SIZE as u32 }
    }
}

macro_rules! has_header {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            fn header(&self) -> Header {
                self.header
            }
        }
        const _: () = assert!(offset_of!($t, header) == 0);
    )*};
}

wire_struct! {
    /// `IOCTL_NBSHM_QUERY_VERSION` output.
    pub struct VersionResponse {
        /// Header.
        pub header: Header,
        /// Protocol version the driver speaks.
        pub protocol_version: u32,
        /// `MajorDriverVersion` the driver registers with NDIS.
        pub driver_major: u32,
        /// `MinorDriverVersion`.
        pub driver_minor: u32,
        /// NDIS version the filter registered for (major).
        pub ndis_major: u32,
        /// NDIS version (minor).
        pub ndis_minor: u32,
        /// Size of [`ModuleRecord`] in this driver.
        pub module_record_size: u32,
        /// Size of [`HandleRecord`] in this driver.
        pub handle_record_size: u32,
        /// Keywords in [`ConfigResponse`].
        pub keyword_count: u32,
        /// Modules attached now.
        pub modules_attached: u32,
        /// Reserved, zero.
        pub reserved: u32,
        /// The driver's package version (UTF-8, NUL-padded).
        pub driver_version: [u8; 32],
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_LIST_MODULES` input.
    pub struct ListModulesRequest {
        /// Header.
        pub header: Header,
        /// Zero.
        pub flags: u32,
        /// Zero.
        pub reserved: u32,
    }
}

impl ListModulesRequest {
    /// The request.
    #[must_use]
    pub const fn new() -> Self {
        Self { header: Header::of::<Self>(), flags: 0, reserved: 0 }
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_LIST_MODULES` output: this header, then `returned` [`ModuleRecord`]s.
    pub struct ModuleListHeader {
        /// Header (`size` = the size of this list header).
        pub header: Header,
        /// Modules attached.
        pub total: u32,
        /// Records that follow.
        pub returned: u32,
        /// Size of one record.
        pub record_size: u32,
        /// Zero.
        pub reserved: u32,
        /// Output bytes needed for every record (header included).
        pub required_bytes: u64,
    }
}

wire_struct! {
    /// Statistics of one direction (since attach or the last reset).
    pub struct DirStats {
        /// NBLs that passed through.
        pub nbls: u64,
        /// NET_BUFFERs that passed through.
        pub net_buffers: u64,
        /// NET_BUFFERs whose shared-memory chain was walked.
        pub walked: u64,
        /// Walked NET_BUFFERs with at least one segment.
        pub with_shared_memory: u64,
        /// Segments walked.
        pub segments: u64,
        /// Sum of the segment lengths.
        pub shared_bytes: u64,
        /// Longest chain walked.
        pub max_chain: u32,
        /// Zero.
        pub reserved: u32,
        /// Anomalies by kind ([`ANOMALY_NAMES`](crate::ANOMALY_NAMES) order).
        pub anomalies: [u64; ANOMALY_KINDS],
        /// NBLs rejected because the module was not running.
        pub rejected_nbls: u64,
    }
}

impl DirStats {
    /// Sum of the anomaly counters.
    #[must_use]
    pub fn anomalies_total(&self) -> u64 {
        self.anomalies.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

wire_struct! {
    /// One attached module.
    pub struct ModuleRecord {
        /// Module id (stable while attached; ids are not reused while the driver is loaded).
        pub id: u32,
        /// The filter module's interface index.
        pub if_index: u32,
        /// The miniport's interface index.
        pub base_if_index: u32,
        /// `NDIS_MEDIUM`.
        pub media_type: u32,
        /// Module state ([`state`](crate::state)).
        pub state: u32,
        /// UTF-16 units used in `name`.
        pub name_length: u32,
        /// Distinct shared-memory handles in the table.
        pub distinct_handles: u32,
        /// Capacity of the handle table.
        pub handle_capacity: u32,
        /// Segments whose handle found no slot in the table.
        pub handle_overflow_segments: u64,
        /// Callbacks and NBLs in flight.
        pub in_flight: u64,
        /// Statistics resets since attach.
        pub resets: u32,
        /// Zero.
        pub reserved: u32,
        /// Receive statistics.
        pub receive: DirStats,
        /// Send statistics.
        pub send: DirStats,
        /// Adapter friendly name (UTF-16, `name_length` units used).
        pub name: [u16; NAME_UNITS],
    }
}

impl ModuleRecord {
    /// The used part of the name.
    #[must_use]
    pub fn name_units(&self) -> &[u16] {
        let n = usize::try_from(self.name_length).unwrap_or(0).min(NAME_UNITS);
        self.name.get(..n).unwrap_or(&[])
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_QUERY_HANDLES` input.
    pub struct HandlesRequest {
        /// Header.
        pub header: Header,
        /// Module id.
        pub module_id: u32,
        /// First table slot of the page (0 for the first page, then the previous
        /// `next_index`); at most the capacity.
        pub start_index: u32,
    }
}

impl HandlesRequest {
    /// The request.
    #[must_use]
    pub const fn new(module_id: u32, start_index: u32) -> Self {
        Self { header: Header::of::<Self>(), module_id, start_index }
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_QUERY_HANDLES` output: this header, then `returned` [`HandleRecord`]s.
    pub struct HandleListHeader {
        /// Header (`size` = the size of this list header).
        pub header: Header,
        /// Module id.
        pub module_id: u32,
        /// Table capacity (slots).
        pub capacity: u32,
        /// Distinct handles in the table.
        pub distinct: u32,
        /// First slot examined.
        pub start_index: u32,
        /// Slot to start the next page at; equals `capacity` when the table is done.
        pub next_index: u32,
        /// Records that follow.
        pub returned: u32,
        /// Size of one record.
        pub record_size: u32,
        /// Zero.
        pub reserved: u32,
        /// Segments whose handle found no slot.
        pub overflow_segments: u64,
    }
}

wire_struct! {
    /// Usage of one shared-memory handle.
    pub struct HandleRecord {
        /// The handle value (opaque).
        pub handle: u64,
        /// Receive segments.
        pub receive_segments: u64,
        /// Receive bytes.
        pub receive_bytes: u64,
        /// Send segments.
        pub send_segments: u64,
        /// Send bytes.
        pub send_bytes: u64,
        /// Largest `offset + length` seen.
        pub max_end: u64,
        /// Smallest offset seen.
        pub min_offset: u32,
        /// Table slot of this entry.
        pub slot: u32,
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_RESET_STATS` input.
    pub struct ResetRequest {
        /// Header.
        pub header: Header,
        /// Module id, or [`ALL_MODULES`].
        pub module_id: u32,
        /// Zero.
        pub reserved: u32,
    }
}

impl ResetRequest {
    /// The request.
    #[must_use]
    pub const fn new(module_id: u32) -> Self {
        Self { header: Header::of::<Self>(), module_id, reserved: 0 }
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_RESET_STATS` output.
    pub struct ResetResponse {
        /// Header.
        pub header: Header,
        /// Modules whose statistics were zeroed.
        pub modules_reset: u32,
        /// Zero.
        pub reserved: u32,
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_GET_CONFIG` input.
    pub struct GetConfigRequest {
        /// Header.
        pub header: Header,
        /// Zero.
        pub flags: u32,
        /// Zero.
        pub reserved: u32,
    }
}

impl GetConfigRequest {
    /// The request.
    #[must_use]
    pub const fn new() -> Self {
        Self { header: Header::of::<Self>(), flags: 0, reserved: 0 }
    }
}

wire_struct! {
    /// One keyword's value and limits.
    pub struct ConfigValue {
        /// Keyword id ([`KEYWORD_NAMES`](crate::KEYWORD_NAMES) index).
        pub keyword: u32,
        /// Current value.
        pub value: u32,
        /// Default.
        pub default: u32,
        /// Smallest accepted value.
        pub min: u32,
        /// Largest accepted value.
        pub max: u32,
        /// [`CONFIG_FLAG_RUNTIME`] if `IOCTL_NBSHM_SET_CONFIG` may change it.
        pub flags: u32,
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_GET_CONFIG` output.
    pub struct ConfigResponse {
        /// Header.
        pub header: Header,
        /// Keywords in `values` ([`KEYWORD_COUNT`]).
        pub count: u32,
        /// Zero.
        pub reserved: u32,
        /// Every keyword, in id order.
        pub values: [ConfigValue; KEYWORD_COUNT],
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_SET_CONFIG` input.
    pub struct SetConfigRequest {
        /// Header.
        pub header: Header,
        /// Keyword id.
        pub keyword: u32,
        /// New value (must be in range; out-of-range values are refused, not clamped).
        pub value: u32,
    }
}

impl SetConfigRequest {
    /// The request.
    #[must_use]
    pub const fn new(keyword: u32, value: u32) -> Self {
        Self { header: Header::of::<Self>(), keyword, value }
    }
}

wire_struct! {
    /// `IOCTL_NBSHM_SET_CONFIG` output.
    pub struct SetConfigResponse {
        /// Header.
        pub header: Header,
        /// Keyword id.
        pub keyword: u32,
        /// Value before.
        pub old_value: u32,
        /// Value now.
        pub new_value: u32,
        /// Running modules whose usage timer was re-armed (`UsageIntervalMs` only).
        pub timers_rearmed: u32,
    }
}

has_header!(
    VersionResponse,
    ListModulesRequest,
    ModuleListHeader,
    HandlesRequest,
    HandleListHeader,
    ResetRequest,
    ResetResponse,
    GetConfigRequest,
    ConfigResponse,
    SetConfigRequest,
    SetConfigResponse
);

impl ListHeader for ModuleListHeader {
    fn returned(&self) -> u32 {
        self.returned
    }
    fn record_size(&self) -> u32 {
        self.record_size
    }
}

impl ListHeader for HandleListHeader {
    fn returned(&self) -> u32 {
        self.returned
    }
    fn record_size(&self) -> u32 {
        self.record_size
    }
}

// --- Layout: the sizes and offsets a C client would hard-code ------------------------------------
const _: () = assert!(size_of::<Header>() == 8);
const _: () = assert!(size_of::<VersionResponse>() == 80);
const _: () = assert!(offset_of!(VersionResponse, driver_version) == 48);
const _: () = assert!(size_of::<ListModulesRequest>() == 16);
const _: () = assert!(size_of::<ModuleListHeader>() == 32);
const _: () = assert!(offset_of!(ModuleListHeader, required_bytes) == 24);
const _: () = assert!(size_of::<DirStats>() == 104);
const _: () = assert!(offset_of!(DirStats, anomalies) == 56);
const _: () = assert!(size_of::<ModuleRecord>() == 520);
const _: () = assert!(offset_of!(ModuleRecord, receive) == 56);
const _: () = assert!(offset_of!(ModuleRecord, send) == 160);
const _: () = assert!(offset_of!(ModuleRecord, name) == 264);
const _: () = assert!(size_of::<ModuleRecord>().is_multiple_of(8), "records stay 8-aligned in an array");
const _: () = assert!(size_of::<HandlesRequest>() == 16);
const _: () = assert!(size_of::<HandleListHeader>() == 48);
const _: () = assert!(offset_of!(HandleListHeader, overflow_segments) == 40);
const _: () = assert!(size_of::<HandleRecord>() == 56);
const _: () = assert!(size_of::<ResetRequest>() == 16);
const _: () = assert!(size_of::<ResetResponse>() == 16);
const _: () = assert!(size_of::<GetConfigRequest>() == 16);
const _: () = assert!(size_of::<ConfigValue>() == 24);
const _: () = assert!(size_of::<ConfigResponse>() == 16 + 24 * KEYWORD_COUNT);
const _: () = assert!(size_of::<SetConfigRequest>() == 16);
const _: () = assert!(size_of::<SetConfigResponse>() == 24);
