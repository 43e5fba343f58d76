//! The ETW TraceLogging provider `Nbshm.SharedMemoryFilter` and every event the driver writes.
//!
//! Events are defined once, in the [`events!`] table below: each entry generates the function
//! the driver calls and its row in [`EVENTS`] (the schema that docs/etw.md must match, checked by
//! tests/etw_schema.rs). The encoding is the `tracelogging` crate's (`write_event!`); with the
//! `kernel` feature it calls `EtwRegister`/`EtwWriteTransfer` from ntoskrnl.exe. On a non-Windows
//! host that backend compiles to no-ops, so the host build also hands every event, with the same
//! name, level, keywords and fields, to the model's recorder (src/host/etw.rs).
//!
//! Cost when nobody listens: `write_event!` starts with the provider's `enabled()` check (one
//! load and compare), and the data path checks [`enabled`] once per callback before it does any
//! per-NET_BUFFER or per-segment event work.

use tracelogging::{Guid, Level, define_provider, write_event};

define_provider!(PROVIDER, "Nbshm.SharedMemoryFilter");

/// Driver load/unload, module attach/detach/pause/restart, configuration.
pub const KW_LIFECYCLE: u64 = 0x1;
/// Periodic and rundown usage (UsageSnapshot, HandleUsage).
pub const KW_USAGE: u64 = 0x2;
/// One event per shared-memory segment (verbose).
pub const KW_SEGMENT: u64 = 0x4;
/// Chain anomalies.
pub const KW_ANOMALY: u64 = 0x8;
/// One event per NET_BUFFER with shared memory (verbose).
pub const KW_NETBUFFER: u64 = 0x10;

/// Every keyword with its name (docs/etw.md).
pub const KEYWORDS: [(u64, &str); 5] = [
    (KW_LIFECYCLE, "Lifecycle"),
    (KW_USAGE, "Usage"),
    (KW_SEGMENT, "Segment"),
    (KW_ANOMALY, "Anomaly"),
    (KW_NETBUFFER, "NetBuffer"),
];

/// One event of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSchema {
    /// Event name.
    pub name: &'static str,
    /// Level.
    pub level: Level,
    /// Keyword bits.
    pub keywords: u64,
    /// Fields in order: (name, TraceLogging field type as written in `write_event!`).
    pub fields: &'static [(&'static str, &'static str)],
}

/// The provider's control GUID (the name hash the `tracelogging` crate computes at compile
/// time).
#[must_use]
pub fn provider_id() -> Guid {
    *PROVIDER.id()
}

/// The provider name.
#[must_use]
pub fn provider_name() -> &'static str {
    PROVIDER.name()
}

/// Whether a session listens at `level` for `keyword` (the real provider or, in the host
/// build, the model's simulated session).
#[must_use]
#[inline(always)]
pub fn enabled(level: Level, keyword: u64) -> bool {
    PROVIDER.enabled(level, keyword) || host_enabled(level, keyword)
}

#[cfg(feature = "kernel")]
#[inline(always)]
const fn host_enabled(_level: Level, _keyword: u64) -> bool {
    false
}

#[cfg(not(feature = "kernel"))]
#[inline(always)]
fn host_enabled(level: Level, keyword: u64) -> bool {
    crate::host::etw::enabled(level, keyword)
}

/// Registers the provider (DriverEntry, PASSIVE_LEVEL, before the filter registers).
/// Returns the `EtwRegister` status (0 on success; always 0 on a non-Windows host).
///
/// # Safety
/// [`unregister`] must be called before the driver image unloads, on every path.
pub unsafe fn register() -> u32 {
    // SAFETY: the caller guarantees `unregister` runs before unload.
    unsafe { PROVIDER.register_with_callback(enable_callback, 0) }
}

/// Unregisters the provider (last step of unload, and on DriverEntry failure).
pub fn unregister() {
    let _ = PROVIDER.unregister();
}

/// ETW's enable callback. On enable (1) and capture-state (2) requests, writes a rundown of the
/// current state so a session started late still sees every attached module and its usage.
fn enable_callback(
    _source_id: &Guid,
    event_control_code: u32,
    _level: Level,
    _match_any_keyword: u64,
    _match_all_keyword: u64,
    _filter_data: usize,
    _callback_context: usize,
) {
    on_enable(event_control_code);
}

/// What the enable callback does (also called by the host model's simulated sessions).
pub fn on_enable(event_control_code: u32) {
    if event_control_code == 1 || event_control_code == 2 {
        crate::filter::rundown();
    }
}

#[cfg(not(feature = "kernel"))]
macro_rules! host_field {
    (u8, $v:expr) => {
        crate::host::etw::FieldValue::U64(u64::from($v))
    };
    (u32, $v:expr) => {
        crate::host::etw::FieldValue::U64(u64::from($v))
    };
    (u64, $v:expr) => {
        crate::host::etw::FieldValue::U64($v)
    };
    (u32_hex, $v:expr) => {
        crate::host::etw::FieldValue::Hex(u64::from($v))
    };
    (pointer, $v:expr) => {
        crate::host::etw::FieldValue::Hex($v as u64)
    };
    (str8, $v:expr) => {
        crate::host::etw::FieldValue::Str(std::string::String::from($v))
    };
    (str16, $v:expr) => {
        crate::host::etw::FieldValue::Str(std::string::String::from_utf16_lossy($v))
    };
}

/// Defines each event's function and its schema row. (Names, levels, keywords and field
/// types are taken as `tt`: `write_event!` is a proc macro that wants the bare tokens, not the
/// invisible groups `literal`/`expr` fragments would wrap them in.)
macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $fn_name:ident = $ev:tt, $level:tt, $kw:tt, {
            $( $fty:tt $fname:tt $arg:ident : $aty:ty ),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            ///
            /// Not inlined: each event's data-descriptor array lives in this function's own
            /// small stack frame instead of adding up in its callers' (kernel stacks are small;
            /// `cargo xtask check-sys` bounds every frame).
            #[inline(never)]
            #[allow(clippy::too_many_arguments, reason = "one argument per event field")]
            pub fn $fn_name($($arg: $aty),*) {
                let _ = write_event!(PROVIDER, $ev, level($level), keyword($kw), $( $fty($fname, &$arg) ),*);
                #[cfg(not(feature = "kernel"))]
                crate::host::etw::record($ev, Level::$level, $kw, || {
                    std::vec![$( ($fname, host_field!($fty, $arg)) ),*]
                });
            }
        )*

        /// The schema of every event, in definition order.
        pub const EVENTS: &[EventSchema] = &[$(
            EventSchema {
                name: $ev,
                level: Level::$level,
                keywords: $kw,
                fields: &[$( ($fname, stringify!($fty)) ),*],
            }
        ),*];
    };
}

events! {
    /// The driver registered with NDIS (end of DriverEntry).
    driver_loaded = "DriverLoaded", Informational, KW_LIFECYCLE, {
        str8 "Version" version: &str,
        u8 "NdisMajor" ndis_major: u8,
        u8 "NdisMinor" ndis_minor: u8,
        u32 "Processors" processors: u32,
    }

    /// The driver is unloading (start of unload).
    driver_unloading = "DriverUnloading", Informational, KW_LIFECYCLE, {
        str8 "Version" version: &str,
        u8 "NdisMajor" ndis_major: u8,
        u8 "NdisMinor" ndis_minor: u8,
    }

    /// A module attached to an adapter (also written by the rundown).
    filter_attached = "FilterAttached", Informational, KW_LIFECYCLE, {
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        u32 "BaseMiniportIfIndex" base_if_index: u32,
        str16 "MiniportName" miniport_name: &[u16],
        u32 "MediaType" media_type: u32,
        u32 "HandleTableSize" handle_table_size: u32,
        u32 "State" state: u32,
    }

    /// A module detached, with its totals.
    filter_detached = "FilterDetached", Informational, KW_LIFECYCLE, {
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        str16 "MiniportName" miniport_name: &[u16],
        u64 "ReceiveNetBuffers" receive_net_buffers: u64,
        u64 "SendNetBuffers" send_net_buffers: u64,
        u64 "Segments" segments: u64,
        u64 "SharedBytes" shared_bytes: u64,
        u64 "Anomalies" anomalies: u64,
        u32 "DistinctHandles" distinct_handles: u32,
    }

    /// A module paused (`Pending` 1: FilterPause returned NDIS_STATUS_PENDING and this event
    /// marks the NdisFPauseComplete).
    filter_paused = "FilterPaused", Informational, KW_LIFECYCLE, {
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        u32_hex "PauseReason" pause_reason: u32,
        u8 "Pending" pending: u8,
    }

    /// A module restarted.
    filter_restarted = "FilterRestarted", Informational, KW_LIFECYCLE, {
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
    }

    /// One shared-memory segment of one NET_BUFFER (verbose; `VerboseSegments` must be 1).
    shared_memory_segment = "SharedMemorySegment", Verbose, KW_SEGMENT, {
        str8 "Direction" direction: &str,
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        pointer "Nbl" nbl: usize,
        u32 "NbIndex" nb_index: u32,
        u32 "SegmentIndex" segment_index: u32,
        pointer "Handle" handle: usize,
        u32 "Offset" offset: u32,
        u32 "Length" length: u32,
        u32_hex "Flags" flags: u32,
    }

    /// One NET_BUFFER's shared-memory chain (verbose; only NET_BUFFERs with segments).
    net_buffer_shared_memory = "NetBufferSharedMemory", Verbose, KW_NETBUFFER, {
        str8 "Direction" direction: &str,
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        pointer "Nbl" nbl: usize,
        u32 "NbIndex" nb_index: u32,
        u32 "DataLength" data_length: u32,
        u32 "Segments" segments: u32,
        u64 "SharedBytes" shared_bytes: u64,
    }

    /// Totals of one module and direction since attach or the last reset (timer and rundown).
    usage_snapshot = "UsageSnapshot", Informational, KW_USAGE, {
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        str8 "Direction" direction: &str,
        u64 "Nbls" nbls: u64,
        u64 "NetBuffers" net_buffers: u64,
        u64 "NetBuffersWalked" net_buffers_walked: u64,
        u64 "NetBuffersWithSharedMemory" net_buffers_with_shared_memory: u64,
        u64 "Segments" segments: u64,
        u64 "SharedBytes" shared_bytes: u64,
        u32 "DistinctHandles" distinct_handles: u32,
        u32 "MaxChainLength" max_chain_length: u32,
        u64 "Anomalies" anomalies: u64,
        u64 "Overlong" overlong: u64,
        u64 "OffsetOverflow" offset_overflow: u64,
        u64 "NullHandle" null_handle: u64,
        u64 "ZeroLength" zero_length: u64,
        u64 "BadPointer" bad_pointer: u64,
        u64 "RejectedNbls" rejected_nbls: u64,
        u32 "IntervalMs" interval_ms: u32,
    }

    /// Usage of one shared-memory handle within one module (timer and rundown).
    handle_usage = "HandleUsage", Informational, KW_USAGE, {
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        pointer "Handle" handle: usize,
        u64 "ReceiveSegments" receive_segments: u64,
        u64 "ReceiveBytes" receive_bytes: u64,
        u64 "SendSegments" send_segments: u64,
        u64 "SendBytes" send_bytes: u64,
        u32 "MinOffset" min_offset: u32,
        u64 "MaxEnd" max_end: u64,
    }

    /// A malformed chain (once per kind per NET_BUFFER); the packet still passes.
    chain_anomaly = "ChainAnomaly", Warning, KW_ANOMALY, {
        str8 "Direction" direction: &str,
        u32 "ModuleId" module_id: u32,
        u32 "IfIndex" if_index: u32,
        pointer "Nbl" nbl: usize,
        u32 "NbIndex" nb_index: u32,
        u32 "SegmentIndex" segment_index: u32,
        str8 "Kind" kind: &str,
    }

    /// A registry value was out of range and has been clamped (once per value, at load).
    config_clamped = "ConfigClamped", Warning, KW_LIFECYCLE, {
        str8 "Keyword" keyword: &str,
        u32 "Value" value: u32,
        u32 "Clamped" clamped: u32,
    }
}
