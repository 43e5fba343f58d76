//! Compile-time layout assertions for every structure the driver reads or builds.
//!
//! Checked for every 64-bit build: the x86_64 host, and the x86_64 and aarch64 Windows kernel
//! cross-builds (`cargo xtask sys --arch x64|arm64`), so a wrong offset fails the build of the
//! architecture it is wrong for. Expected values and their sources are ndis-reference.md
//! section C, which restates:
//! * P-20H1: PDB-derived x64 layouts of Windows 10 20H1 (build 18865) ndis.sys/ntoskrnl.exe
//!   (ntdiff/headers, `Win10_20H1_18865/x64/System32/ndis.sys/ALL_SORTED.h`);
//! * H-W7: the Windows 7 era WDK ndis.h (revision-1/2 declarations, `NDIS_SIZEOF_*` macros);
//! * D-DDI: the windows-driver-docs-ddi structure pages.
//!
//! ARM64 uses the same LP64 data model and `MEMORY_ALLOCATION_ALIGNMENT` (16) as x64, and the
//! WDK headers declare these structures without architecture conditionals (ndis-reference C.0),
//! so the x64 offsets are asserted for aarch64 too. No ARM64 PDB was available to confirm them.
#![allow(clippy::wildcard_imports, reason = "the layouts of all sys types are checked here")]

use core::mem::{align_of, offset_of, size_of};

use super::*;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("nbshm supports only 64-bit targets (x64 and ARM64 Windows, 64-bit hosts)");

/// Asserts `offset_of!(T, field) == off` for each pair, at compile time.
macro_rules! offsets {
    ($t:ty { $($f:ident : $off:expr),* $(,)? }) => {
        $( const _: () = assert!(offset_of!($t, $f) == $off, concat!(stringify!($t), "::", stringify!($f))); )*
    };
}

// --- Basic types (C.0) --------------------------------------------------------------------------
const _: () = assert!(size_of::<NDIS_HANDLE>() == 8);
const _: () = assert!(size_of::<NET_LUID>() == 8);
offsets!(UNICODE_STRING { Length: 0x0, MaximumLength: 0x2, Buffer: 0x8 });
const _: () = assert!(size_of::<UNICODE_STRING>() == 0x10);
offsets!(GUID { Data1: 0, Data2: 4, Data3: 6, Data4: 8 });
const _: () = assert!(size_of::<GUID>() == 16);
offsets!(PROCESSOR_NUMBER { Group: 0, Number: 2, Reserved: 3 });
const _: () = assert!(size_of::<PROCESSOR_NUMBER>() == 4);

// --- NDIS_OBJECT_HEADER (C.1; P-20H1) ------------------------------------------------------------
offsets!(NDIS_OBJECT_HEADER { Type: 0x0, Revision: 0x1, Size: 0x2 });
const _: () = assert!(size_of::<NDIS_OBJECT_HEADER>() == 4);

// --- NET_BUFFER_SHARED_MEMORY (C.2; P-20H1 Standalone/_NET_BUFFER_SHARED_MEMORY.h) --------------
offsets!(NET_BUFFER_SHARED_MEMORY {
    NextSharedMemorySegment: 0x00,
    SharedMemoryFlags: 0x08,
    SharedMemoryHandle: 0x10,
    SharedMemoryOffset: 0x18,
    SharedMemoryLength: 0x1C,
});
const _: () = assert!(size_of::<NET_BUFFER_SHARED_MEMORY>() == 0x20);
const _: () = assert!(align_of::<NET_BUFFER_SHARED_MEMORY>() == 8);

// --- NET_BUFFER (C.3; P-20H1 _NET_BUFFER, D-DDI ns-nbl-net_buffer) ------------------------------
offsets!(NET_BUFFER {
    Next: 0x00,
    CurrentMdl: 0x08,
    CurrentMdlOffset: 0x10,
    DataLength: 0x18,
    stDataLengthHigh: 0x1C,
    MdlChain: 0x20,
    DataOffset: 0x28,
    ChecksumBias: 0x30,
    Reserved: 0x32,
    NdisPoolHandle: 0x38,
    NdisReserved: 0x40,
    ProtocolReserved: 0x50,
    MiniportReserved: 0x80,
    DataPhysicalAddress: 0xA0,
    SharedMemoryInfo: 0xA8,
});
const _: () = assert!(size_of::<NET_BUFFER>() == 0xB0);
const _: () = assert!(align_of::<NET_BUFFER>() == 16);

// --- NET_BUFFER_LIST (C.4; P-20H1 _NET_BUFFER_LIST, H-INFO for the info count) ------------------
offsets!(NET_BUFFER_LIST {
    Next: 0x00,
    FirstNetBuffer: 0x08,
    Context: 0x10,
    ParentNetBufferList: 0x18,
    NdisPoolHandle: 0x20,
    NdisReserved: 0x30,
    ProtocolReserved: 0x40,
    MiniportReserved: 0x60,
    Scratch: 0x70,
    SourceHandle: 0x78,
    NblFlags: 0x80,
    ChildRefCount: 0x84,
    Flags: 0x88,
    Status: 0x8C,
    NetBufferListInfo: 0x90,
});
// 6.30 headers: 24 info slots, sizeof 0x150 (C.4 table).
const _: () = assert!(size_of::<NET_BUFFER_LIST>() == 0x150);
const _: () = assert!(align_of::<NET_BUFFER_LIST>() == 16);

// --- NET_BUFFER_LIST_CONTEXT (C.5) ---------------------------------------------------------------
offsets!(NET_BUFFER_LIST_CONTEXT { Next: 0x0, Size: 0x8, Offset: 0xA });
const _: () = assert!(size_of::<NET_BUFFER_LIST_CONTEXT>() == 0x10);

// --- MDL (C.6; P-20H1 _MDL) -----------------------------------------------------------------------
offsets!(MDL {
    Next: 0x00,
    Size: 0x08,
    MdlFlags: 0x0A,
    AllocationProcessorNumber: 0x0C,
    Reserved: 0x0E,
    Process: 0x10,
    MappedSystemVa: 0x18,
    StartVa: 0x20,
    ByteCount: 0x28,
    ByteOffset: 0x2C,
});
const _: () = assert!(size_of::<MDL>() == 0x30);

// --- NDIS_FILTER_DRIVER_CHARACTERISTICS (C.7; P-20H1 rev 3, H-W7 rev 1/2, P-old) ----------------
offsets!(NDIS_FILTER_DRIVER_CHARACTERISTICS {
    Header: 0x00,
    MajorNdisVersion: 0x04,
    MinorNdisVersion: 0x05,
    MajorDriverVersion: 0x06,
    MinorDriverVersion: 0x07,
    Flags: 0x08,
    FriendlyName: 0x10,
    UniqueName: 0x20,
    ServiceName: 0x30,
    SetOptionsHandler: 0x40,
    SetFilterModuleOptionsHandler: 0x48,
    AttachHandler: 0x50,
    DetachHandler: 0x58,
    RestartHandler: 0x60,
    PauseHandler: 0x68,
    SendNetBufferListsHandler: 0x70,
    SendNetBufferListsCompleteHandler: 0x78,
    CancelSendNetBufferListsHandler: 0x80,
    ReceiveNetBufferListsHandler: 0x88,
    ReturnNetBufferListsHandler: 0x90,
    OidRequestHandler: 0x98,
    OidRequestCompleteHandler: 0xA0,
    CancelOidRequestHandler: 0xA8,
    DevicePnPEventNotifyHandler: 0xB0,
    NetPnPEventHandler: 0xB8,
    StatusHandler: 0xC0,
    DirectOidRequestHandler: 0xC8,
    DirectOidRequestCompleteHandler: 0xD0,
    CancelDirectOidRequestHandler: 0xD8,
    SynchronousOidRequestHandler: 0xE0,
    SynchronousOidRequestCompleteHandler: 0xE8,
});
const _: () = assert!(size_of::<NDIS_FILTER_DRIVER_CHARACTERISTICS>() == 0xF0);
// NDIS_SIZEOF_*_REVISION_n = RTL_SIZEOF_THROUGH_FIELD of the last field of revision n (D.3).
const _: () = assert!(
    offset_of!(NDIS_FILTER_DRIVER_CHARACTERISTICS, StatusHandler) + 8
        == NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1 as usize
);
const _: () = assert!(
    offset_of!(NDIS_FILTER_DRIVER_CHARACTERISTICS, CancelDirectOidRequestHandler) + 8
        == NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2 as usize
);
const _: () = assert!(
    offset_of!(NDIS_FILTER_DRIVER_CHARACTERISTICS, SynchronousOidRequestCompleteHandler) + 8
        == NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_3 as usize
);
// Handler slots are plain function pointers (Option<fn> has the null-pointer niche).
const _: () = assert!(size_of::<Option<FILTER_ATTACH>>() == 8);

// --- NDIS_FILTER_ATTACH_PARAMETERS (C.9; P-20H1, H-W7, D-DDI) ------------------------------------
offsets!(NDIS_FILTER_ATTACH_PARAMETERS {
    Header: 0x00,
    IfIndex: 0x04,
    NetLuid: 0x08,
    FilterModuleGuidName: 0x10,
    BaseMiniportIfIndex: 0x18,
    BaseMiniportInstanceName: 0x20,
    BaseMiniportName: 0x28,
    MediaConnectState: 0x30,
    MediaDuplexState: 0x34,
    XmitLinkSpeed: 0x38,
    RcvLinkSpeed: 0x40,
    MiniportMediaType: 0x48,
    MiniportPhysicalMediaType: 0x4C,
    MiniportMediaSpecificAttributes: 0x50,
    DefaultOffloadConfiguration: 0x58,
    MacAddressLength: 0x60,
    CurrentMacAddress: 0x62,
    BaseMiniportNetLuid: 0x88,
    LowerIfIndex: 0x90,
    LowerIfNetLuid: 0x98,
    Flags: 0xA0,
    HDSplitCurrentConfig: 0xA8,
    ReceiveFilterCapabilities: 0xB0,
    MiniportPhysicalDeviceObject: 0xB8,
    NicSwitchCapabilities: 0xC0,
    BaseMiniportIfConnectorPresent: 0xC8,
    SriovCapabilities: 0xD0,
    NicSwitchArray: 0xD8,
});
const _: () = assert!(size_of::<NDIS_FILTER_ATTACH_PARAMETERS>() == 0xE0);
const _: () = assert!(
    offset_of!(NDIS_FILTER_ATTACH_PARAMETERS, Flags) + 4
        == NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_1 as usize
);
const _: () = assert!(
    offset_of!(NDIS_FILTER_ATTACH_PARAMETERS, HDSplitCurrentConfig) + 8
        == NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_2 as usize
);
const _: () = assert!(
    offset_of!(NDIS_FILTER_ATTACH_PARAMETERS, NicSwitchCapabilities) + 8
        == NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_3 as usize
);
const _: () = assert!(
    offset_of!(NDIS_FILTER_ATTACH_PARAMETERS, NicSwitchArray) + 8
        == NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4 as usize
);

// --- Small structures (C.10) -------------------------------------------------------------------
offsets!(NDIS_FILTER_ATTRIBUTES { Header: 0x0, Flags: 0x4 });
const _: () =
    assert!(size_of::<NDIS_FILTER_ATTRIBUTES>() == NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1 as usize);
offsets!(NDIS_FILTER_RESTART_PARAMETERS {
    Header: 0x00,
    MiniportMediaType: 0x04,
    MiniportPhysicalMediaType: 0x08,
    RestartAttributes: 0x10,
    LowerIfIndex: 0x18,
    LowerIfNetLuid: 0x20,
    Flags: 0x28,
});
const _: () = assert!(size_of::<NDIS_FILTER_RESTART_PARAMETERS>() == 0x30);
const _: () = assert!(
    offset_of!(NDIS_FILTER_RESTART_PARAMETERS, Flags) + 4
        == NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1 as usize
);
offsets!(NDIS_FILTER_PAUSE_PARAMETERS { Header: 0x0, Flags: 0x4, PauseReason: 0x8 });
const _: () = assert!(
    size_of::<NDIS_FILTER_PAUSE_PARAMETERS>() == NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1 as usize
);
offsets!(NDIS_DEVICE_OBJECT_ATTRIBUTES {
    Header: 0x00,
    DeviceName: 0x08,
    SymbolicName: 0x10,
    MajorFunctions: 0x18,
    ExtensionSize: 0x20,
    DefaultSDDLString: 0x28,
    DeviceClassGuid: 0x30,
});
const _: () = assert!(
    size_of::<NDIS_DEVICE_OBJECT_ATTRIBUTES>() == NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1 as usize
);

// --- DRIVER_OBJECT (x64 PDB layout, ntdiff Win10 ntoskrnl.exe _DRIVER_OBJECT) --------------------
offsets!(DRIVER_OBJECT {
    Type: 0x00,
    Size: 0x02,
    DeviceObject: 0x08,
    Flags: 0x10,
    DriverStart: 0x18,
    DriverSize: 0x20,
    DriverSection: 0x28,
    DriverExtension: 0x30,
    DriverName: 0x38,
    HardwareDatabase: 0x48,
    FastIoDispatch: 0x50,
    DriverInit: 0x58,
    DriverStartIo: 0x60,
    DriverUnload: 0x68,
    MajorFunction: 0x70,
});
const _: () = assert!(size_of::<DRIVER_OBJECT>() == 0x150);

// --- NDIS_TIMER_CHARACTERISTICS (D-DDI ns-ndis-_ndis_timer_characteristics; size per the
// NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1 macro = through FunctionContext) ------------------
offsets!(NDIS_TIMER_CHARACTERISTICS {
    Header: 0x00,
    AllocationTag: 0x04,
    TimerFunction: 0x08,
    FunctionContext: 0x10
});
const _: () =
    assert!(size_of::<NDIS_TIMER_CHARACTERISTICS>() == NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1 as usize);

// --- IRP, IO_STACK_LOCATION, IO_STATUS_BLOCK (abi-facts 1.3-1.5: ntdiff PDB-derived x64 headers
// of Windows 10 1809 ntoskrnl.exe/ndis.sys, identical in the 20H1 ARM64 headers) ----------------
offsets!(IO_STATUS_BLOCK { Status: 0x00, Information: 0x08 });
const _: () = assert!(size_of::<IO_STATUS_BLOCK>() == 0x10);
offsets!(IRP {
    Type: 0x00,
    Size: 0x02,
    AllocationProcessorNumber: 0x04,
    Reserved: 0x06,
    MdlAddress: 0x08,
    Flags: 0x10,
    SystemBuffer: 0x18,
    ThreadListEntry: 0x20,
    IoStatus: 0x30,
    RequestorMode: 0x40,
    PendingReturned: 0x41,
    StackCount: 0x42,
    CurrentLocation: 0x43,
    Cancel: 0x44,
    CancelIrql: 0x45,
    ApcEnvironment: 0x46,
    AllocationFlags: 0x47,
    UserIosb: 0x48,
    UserEvent: 0x50,
    Overlay: 0x58,
    CancelRoutine: 0x68,
    UserBuffer: 0x70,
    DriverContext: 0x78,
    Thread: 0x98,
    AuxiliaryBuffer: 0xA0,
    ListEntry: 0xA8,
    CurrentStackLocation: 0xB8,
    OriginalFileObject: 0xC0,
    IrpExtension: 0xC8,
});
const _: () = assert!(size_of::<IRP>() == 0xD0);
offsets!(IO_STACK_LOCATION_DEVICE_IO_CONTROL {
    OutputBufferLength: 0x00,
    InputBufferLength: 0x08,
    IoControlCode: 0x10,
    Type3InputBuffer: 0x18,
});
offsets!(IO_STACK_LOCATION_CREATE {
    SecurityContext: 0x00,
    Options: 0x08,
    FileAttributes: 0x10,
    ShareAccess: 0x12,
    EaLength: 0x18,
});
const _: () = assert!(size_of::<IO_STACK_LOCATION_PARAMETERS>() == 0x20);
offsets!(IO_STACK_LOCATION {
    MajorFunction: 0x00,
    MinorFunction: 0x01,
    Flags: 0x02,
    Control: 0x03,
    Parameters: 0x08,
    DeviceObject: 0x28,
    FileObject: 0x30,
    CompletionRoutine: 0x38,
    Context: 0x40,
});
const _: () = assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
// Parameters.DeviceIoControl.* as IO_STACK_LOCATION offsets (abi-facts 1.4 lists them so).
const _: () = assert!(
    offset_of!(IO_STACK_LOCATION, Parameters)
        + offset_of!(IO_STACK_LOCATION_DEVICE_IO_CONTROL, IoControlCode)
        == 0x18
);

// --- Configuration (abi-facts 2.4; derived from the field types with 8-byte alignment) ----------
offsets!(NDIS_CONFIGURATION_OBJECT { Header: 0x00, NdisHandle: 0x08, Flags: 0x10 });
const _: () = assert!(size_of::<NDIS_CONFIGURATION_OBJECT>() == 0x18);
const _: () = assert!(
    offset_of!(NDIS_CONFIGURATION_OBJECT, Flags) + 4 == NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1 as usize
);
offsets!(NDIS_CONFIGURATION_PARAMETER { ParameterType: 0x00, ParameterData: 0x08 });
const _: () = assert!(size_of::<NDIS_CONFIGURATION_PARAMETER>() == 0x18);
offsets!(BINARY_DATA { Length: 0x0, Buffer: 0x8 });
