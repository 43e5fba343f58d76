//! `#[repr(C)]` NDIS 6 and kernel types, with the WDK's C names and field names.
//!
//! Anonymous C unions are flattened where every member shares one representation (for example
//! `NET_BUFFER::SharedMemoryInfo`, which overlays `ScatterGatherList`, both pointers), so that
//! `offset_of!` works on the WDK field names. Every offset and size that the driver relies on is
//! asserted at compile time in [`super::layout`], for both 64-bit Windows targets the driver
//! ships for (x86_64 and aarch64) and for the 64-bit host that runs the model.

use core::ffi::c_void;

/// `NDIS_HANDLE`: an opaque pointer-sized handle.
pub type NDIS_HANDLE = *mut c_void;
/// `PNDIS_HANDLE`.
pub type PNDIS_HANDLE = *mut NDIS_HANDLE;
/// `NDIS_STATUS` (a signed 32-bit value; NDIS 6 codes equal the NTSTATUS codes).
pub type NDIS_STATUS = i32;
/// `NTSTATUS`.
pub type NTSTATUS = i32;
/// `NDIS_PORT_NUMBER` (`ULONG`).
pub type NDIS_PORT_NUMBER = u32;
/// `NET_IFINDEX` (`ULONG`).
pub type NET_IFINDEX = u32;
/// `NDIS_MEDIUM` (a C enum, 32 bits).
pub type NDIS_MEDIUM = i32;
/// `NDIS_PHYSICAL_MEDIUM` (a C enum, 32 bits).
pub type NDIS_PHYSICAL_MEDIUM = i32;
/// `KIRQL`.
pub type KIRQL = u8;
/// `KSPIN_LOCK` (`ULONG_PTR`).
pub type KSPIN_LOCK = usize;
/// `ACCESS_MASK`.
pub type ACCESS_MASK = u32;
/// `POOL_FLAGS` (`ULONG64`), the flags of `ExAllocatePool2`.
pub type POOL_FLAGS = u64;

/// `NET_LUID`: a 64-bit union (`Value` or `Info { Reserved:24, NetLuidIndex:24, IfType:16 }`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NET_LUID {
    /// The whole value.
    pub Value: u64,
}

/// `UNICODE_STRING`: counted UTF-16, lengths in bytes, not necessarily NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    /// Length of the string in bytes, without any terminator.
    pub Length: u16,
    /// Size of `Buffer` in bytes.
    pub MaximumLength: u16,
    /// The UTF-16 characters.
    pub Buffer: *mut u16,
}
/// `NDIS_STRING` is a `UNICODE_STRING`.
pub type NDIS_STRING = UNICODE_STRING;
/// `PNDIS_STRING`.
pub type PNDIS_STRING = *mut NDIS_STRING;

/// `GUID`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GUID {
    /// First 32 bits.
    pub Data1: u32,
    /// Next 16 bits.
    pub Data2: u16,
    /// Next 16 bits.
    pub Data3: u16,
    /// Last 64 bits, as bytes.
    pub Data4: [u8; 8],
}

/// `NDIS_OBJECT_HEADER`: the type/revision/size triple at the start of every NDIS 6 structure.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_OBJECT_HEADER {
    /// `NDIS_OBJECT_TYPE_*`.
    pub Type: u8,
    /// Structure revision.
    pub Revision: u8,
    /// `NDIS_SIZEOF_*` of that revision.
    pub Size: u16,
}

/// `PROCESSOR_NUMBER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PROCESSOR_NUMBER {
    /// Processor group.
    pub Group: u16,
    /// Number within the group.
    pub Number: u8,
    /// Reserved.
    pub Reserved: u8,
}

// ---------------------------------------------------------------------------------------------
// Data path: NET_BUFFER_LIST, NET_BUFFER, NET_BUFFER_SHARED_MEMORY, MDL.
// ---------------------------------------------------------------------------------------------

/// `MDL`: memory descriptor list (only read through its documented fields).
#[repr(C)]
#[derive(Debug)]
pub struct MDL {
    /// Next MDL of the chain.
    pub Next: *mut MDL,
    /// Size of the MDL with its PFN array.
    pub Size: i16,
    /// `MDL_*` flags.
    pub MdlFlags: i16,
    /// Processor that allocated it.
    pub AllocationProcessorNumber: u16,
    /// Reserved.
    pub Reserved: u16,
    /// Owning process.
    pub Process: *mut c_void,
    /// System VA, valid only when the mapping flags say so.
    pub MappedSystemVa: *mut c_void,
    /// Page-aligned start VA.
    pub StartVa: *mut c_void,
    /// Bytes described.
    pub ByteCount: u32,
    /// Offset of the data in the first page.
    pub ByteOffset: u32,
}

/// `NET_BUFFER_SHARED_MEMORY` (NDIS 6.20+): one segment of a NET_BUFFER's shared-memory chain.
#[repr(C)]
#[derive(Debug)]
pub struct NET_BUFFER_SHARED_MEMORY {
    /// Next segment, NULL at the end of the chain.
    pub NextSharedMemorySegment: *mut NET_BUFFER_SHARED_MEMORY,
    /// Reserved flags.
    pub SharedMemoryFlags: u32,
    /// Handle returned by `NdisAllocateSharedMemory` (opaque).
    pub SharedMemoryHandle: NDIS_HANDLE,
    /// Byte offset of the data from the start of the shared-memory buffer.
    pub SharedMemoryOffset: u32,
    /// Length of this segment in bytes.
    pub SharedMemoryLength: u32,
}
/// `PNET_BUFFER_SHARED_MEMORY`.
pub type PNET_BUFFER_SHARED_MEMORY = *mut NET_BUFFER_SHARED_MEMORY;

/// `SCATTER_GATHER_LIST`: only ever handled by pointer here (it shares a slot with
/// `SharedMemoryInfo`).
#[repr(C)]
#[derive(Debug)]
pub struct SCATTER_GATHER_LIST {
    _opaque: [u8; 0],
}

/// `NET_BUFFER` (NDIS 6.20+ layout; 16-byte aligned because of `DECLSPEC_ALIGN` members).
///
/// The leading anonymous union (`NET_BUFFER_DATA` fields / `SLIST_HEADER Link` /
/// `NET_BUFFER_HEADER`) is flattened to its data fields; `DataLength` overlays the low half of
/// the `SIZE_T stDataLength` (little endian), the high half is `stDataLengthHigh`.
/// `SharedMemoryInfo` overlays `ScatterGatherList`: see [`NET_BUFFER::ScatterGatherList`].
#[repr(C, align(16))]
#[derive(Debug)]
pub struct NET_BUFFER {
    /// `NET_BUFFER_NEXT_NB`.
    pub Next: *mut NET_BUFFER,
    /// `NET_BUFFER_CURRENT_MDL`.
    pub CurrentMdl: *mut MDL,
    /// `NET_BUFFER_CURRENT_MDL_OFFSET`.
    pub CurrentMdlOffset: u32,
    /// Alignment padding before the `SIZE_T` length union.
    pub Padding0: u32,
    /// `NET_BUFFER_DATA_LENGTH` (low 32 bits of `stDataLength`).
    pub DataLength: u32,
    /// High 32 bits of `stDataLength` on 64-bit targets.
    pub stDataLengthHigh: u32,
    /// `NET_BUFFER_FIRST_MDL`.
    pub MdlChain: *mut MDL,
    /// `NET_BUFFER_DATA_OFFSET`.
    pub DataOffset: u32,
    /// Padding closing the leading union (0x30 bytes).
    pub Padding1: u32,
    /// `NET_BUFFER_CHECKSUM_BIAS`.
    pub ChecksumBias: u16,
    /// Reserved.
    pub Reserved: u16,
    /// Alignment padding before `NdisPoolHandle`.
    pub Padding2: u32,
    /// Pool the NET_BUFFER came from.
    pub NdisPoolHandle: NDIS_HANDLE,
    /// Reserved for NDIS.
    pub NdisReserved: [*mut c_void; 2],
    /// Owned by the protocol (never written by a filter).
    pub ProtocolReserved: [*mut c_void; 6],
    /// Owned by the miniport (never written by a filter).
    pub MiniportReserved: [*mut c_void; 4],
    /// `DataPhysicalAddress` (`NdisReserved1` for 6.0 drivers).
    pub DataPhysicalAddress: i64,
    /// `NET_BUFFER_FIRST_SHARED_MEM_INFO` (a union with `ScatterGatherList`).
    pub SharedMemoryInfo: *mut NET_BUFFER_SHARED_MEMORY,
}

impl NET_BUFFER {
    /// The `ScatterGatherList` member of the union that `SharedMemoryInfo` also names
    /// (`NET_BUFFER_SCATTER_GATHER_LIST`): the same 8 bytes, another type.
    #[must_use]
    pub fn ScatterGatherList(&self) -> *mut SCATTER_GATHER_LIST {
        self.SharedMemoryInfo.cast()
    }
}
/// `PNET_BUFFER`.
pub type PNET_BUFFER = *mut NET_BUFFER;

/// `NET_BUFFER_LIST_CONTEXT`.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct NET_BUFFER_LIST_CONTEXT {
    /// Next context block.
    pub Next: *mut NET_BUFFER_LIST_CONTEXT,
    /// Size of the context data.
    pub Size: u16,
    /// Offset of the used part.
    pub Offset: u16,
}

/// `MaxNetBufferListInfo` for x64/ARM64 headers at NDIS 6.30 (the version this driver is built
/// against; ndis-reference C.4). Never index `NetBufferListInfo` at or past this.
pub const MAX_NET_BUFFER_LIST_INFO: usize = 24;

/// `NET_BUFFER_LIST` (16-byte aligned). Only ever handled by pointer: NDIS allocates it and its
/// real size depends on the NDIS headers (never copy or allocate one by value in the driver).
///
/// The leading anonymous union (`Next`/`FirstNetBuffer` / `SLIST_HEADER Link` /
/// `NET_BUFFER_LIST_HEADER`) is flattened to its data fields; `Status` overlays `NdisReserved2`.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct NET_BUFFER_LIST {
    /// `NET_BUFFER_LIST_NEXT_NBL`.
    pub Next: *mut NET_BUFFER_LIST,
    /// `NET_BUFFER_LIST_FIRST_NB`.
    pub FirstNetBuffer: *mut NET_BUFFER,
    /// Context stack.
    pub Context: *mut NET_BUFFER_LIST_CONTEXT,
    /// Parent of a cloned or fragmented NBL.
    pub ParentNetBufferList: *mut NET_BUFFER_LIST,
    /// Pool the NBL came from.
    pub NdisPoolHandle: NDIS_HANDLE,
    /// Padding: `NdisReserved` is `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` (16).
    pub Padding0: usize,
    /// Reserved for NDIS.
    pub NdisReserved: [*mut c_void; 2],
    /// Owned by the protocol.
    pub ProtocolReserved: [*mut c_void; 4],
    /// Owned by the miniport.
    pub MiniportReserved: [*mut c_void; 2],
    /// Scratch space for the current owner.
    pub Scratch: *mut c_void,
    /// Handle of the driver that originated the NBL.
    pub SourceHandle: NDIS_HANDLE,
    /// `NET_BUFFER_LIST_NBL_FLAGS`.
    pub NblFlags: u32,
    /// Child clones outstanding.
    pub ChildRefCount: i32,
    /// `NET_BUFFER_LIST_FLAGS`.
    pub Flags: u32,
    /// `NET_BUFFER_LIST_STATUS` (overlays `NdisReserved2`).
    pub Status: NDIS_STATUS,
    /// `NET_BUFFER_LIST_INFO` slots.
    pub NetBufferListInfo: [*mut c_void; MAX_NET_BUFFER_LIST_INFO],
}
/// `PNET_BUFFER_LIST`.
pub type PNET_BUFFER_LIST = *mut NET_BUFFER_LIST;

// ---------------------------------------------------------------------------------------------
// Filter registration and lifecycle structures.
// ---------------------------------------------------------------------------------------------

/// `NDIS_FILTER_ATTACH_PARAMETERS` (revision 4 layout; read only what `Header` covers).
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_FILTER_ATTACH_PARAMETERS {
    /// Type 0x99.
    pub Header: NDIS_OBJECT_HEADER,
    /// The filter module's own interface index.
    pub IfIndex: NET_IFINDEX,
    /// The filter module's `NET_LUID`.
    pub NetLuid: NET_LUID,
    /// Module instance name (GUID form).
    pub FilterModuleGuidName: PNDIS_STRING,
    /// Interface index of the miniport at the bottom of the stack.
    pub BaseMiniportIfIndex: NET_IFINDEX,
    /// Adapter friendly name.
    pub BaseMiniportInstanceName: PNDIS_STRING,
    /// Adapter name.
    pub BaseMiniportName: PNDIS_STRING,
    /// `NET_IF_MEDIA_CONNECT_STATE`.
    pub MediaConnectState: i32,
    /// `NET_IF_MEDIA_DUPLEX_STATE`.
    pub MediaDuplexState: i32,
    /// Transmit link speed, bits per second.
    pub XmitLinkSpeed: u64,
    /// Receive link speed, bits per second.
    pub RcvLinkSpeed: u64,
    /// `NDIS_MEDIUM`.
    pub MiniportMediaType: NDIS_MEDIUM,
    /// `NDIS_PHYSICAL_MEDIUM`.
    pub MiniportPhysicalMediaType: NDIS_PHYSICAL_MEDIUM,
    /// Media-specific attributes.
    pub MiniportMediaSpecificAttributes: *mut c_void,
    /// `PNDIS_OFFLOAD`.
    pub DefaultOffloadConfiguration: *mut c_void,
    /// Length of the MAC address.
    pub MacAddressLength: u16,
    /// Current MAC address.
    pub CurrentMacAddress: [u8; 32],
    /// `NET_LUID` of the base miniport.
    pub BaseMiniportNetLuid: NET_LUID,
    /// Interface index of the next lower module.
    pub LowerIfIndex: NET_IFINDEX,
    /// `NET_LUID` of the next lower module.
    pub LowerIfNetLuid: NET_LUID,
    /// `NDIS_FILTER_ATTACH_FLAGS_*` (end of revision 1).
    pub Flags: u32,
    /// Revision 2 (NDIS 6.1).
    pub HDSplitCurrentConfig: *mut c_void,
    /// Revision 3 (NDIS 6.20).
    pub ReceiveFilterCapabilities: *mut c_void,
    /// Revision 3.
    pub MiniportPhysicalDeviceObject: *mut c_void,
    /// Revision 3.
    pub NicSwitchCapabilities: *mut c_void,
    /// Revision 4 (NDIS 6.30).
    pub BaseMiniportIfConnectorPresent: u8,
    /// Revision 4.
    pub SriovCapabilities: *mut c_void,
    /// Revision 4.
    pub NicSwitchArray: *mut c_void,
}
/// `PNDIS_FILTER_ATTACH_PARAMETERS`.
pub type PNDIS_FILTER_ATTACH_PARAMETERS = *mut NDIS_FILTER_ATTACH_PARAMETERS;

/// `NDIS_FILTER_ATTRIBUTES`, passed to `NdisFSetAttributes`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct NDIS_FILTER_ATTRIBUTES {
    /// Type 0x8D, revision 1, size 8.
    pub Header: NDIS_OBJECT_HEADER,
    /// Reserved, zero.
    pub Flags: u32,
}

/// `NDIS_FILTER_RESTART_PARAMETERS`.
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_FILTER_RESTART_PARAMETERS {
    /// Type 0x9B.
    pub Header: NDIS_OBJECT_HEADER,
    /// `NDIS_MEDIUM`.
    pub MiniportMediaType: NDIS_MEDIUM,
    /// `NDIS_PHYSICAL_MEDIUM`.
    pub MiniportPhysicalMediaType: NDIS_PHYSICAL_MEDIUM,
    /// `PNDIS_RESTART_ATTRIBUTES` (an observer leaves it alone).
    pub RestartAttributes: *mut c_void,
    /// Interface index of the next lower module.
    pub LowerIfIndex: NET_IFINDEX,
    /// `NET_LUID` of the next lower module.
    pub LowerIfNetLuid: NET_LUID,
    /// Reserved.
    pub Flags: u32,
}

/// `NDIS_FILTER_PAUSE_PARAMETERS`.
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_FILTER_PAUSE_PARAMETERS {
    /// Type 0x9A.
    pub Header: NDIS_OBJECT_HEADER,
    /// Reserved.
    pub Flags: u32,
    /// `NDIS_PAUSE_*` bits.
    pub PauseReason: u32,
}

/// `FILTER_SET_OPTIONS`.
pub type FILTER_SET_OPTIONS = unsafe extern "system" fn(NDIS_HANDLE, NDIS_HANDLE) -> NDIS_STATUS;
/// `FILTER_SET_MODULE_OPTIONS`.
pub type FILTER_SET_MODULE_OPTIONS = unsafe extern "system" fn(NDIS_HANDLE) -> NDIS_STATUS;
/// `FILTER_ATTACH`.
pub type FILTER_ATTACH = unsafe extern "system" fn(
    NdisFilterHandle: NDIS_HANDLE,
    FilterDriverContext: NDIS_HANDLE,
    AttachParameters: PNDIS_FILTER_ATTACH_PARAMETERS,
) -> NDIS_STATUS;
/// `FILTER_DETACH`.
pub type FILTER_DETACH = unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE);
/// `FILTER_RESTART`.
pub type FILTER_RESTART = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    RestartParameters: *mut NDIS_FILTER_RESTART_PARAMETERS,
) -> NDIS_STATUS;
/// `FILTER_PAUSE`.
pub type FILTER_PAUSE = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    PauseParameters: *mut NDIS_FILTER_PAUSE_PARAMETERS,
) -> NDIS_STATUS;
/// `FILTER_SEND_NET_BUFFER_LISTS`.
pub type FILTER_SEND_NET_BUFFER_LISTS = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    PortNumber: NDIS_PORT_NUMBER,
    SendFlags: u32,
);
/// `FILTER_SEND_NET_BUFFER_LISTS_COMPLETE`.
pub type FILTER_SEND_NET_BUFFER_LISTS_COMPLETE = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    SendCompleteFlags: u32,
);
/// `FILTER_CANCEL_SEND_NET_BUFFER_LISTS`.
pub type FILTER_CANCEL_SEND_NET_BUFFER_LISTS =
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, CancelId: *mut c_void);
/// `FILTER_RECEIVE_NET_BUFFER_LISTS`.
pub type FILTER_RECEIVE_NET_BUFFER_LISTS = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    PortNumber: NDIS_PORT_NUMBER,
    NumberOfNetBufferLists: u32,
    ReceiveFlags: u32,
);
/// `FILTER_RETURN_NET_BUFFER_LISTS`.
pub type FILTER_RETURN_NET_BUFFER_LISTS = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    NetBufferLists: PNET_BUFFER_LIST,
    ReturnFlags: u32,
);
/// `FILTER_OID_REQUEST` (request pointer kept opaque: the driver registers no OID handler).
pub type FILTER_OID_REQUEST =
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, OidRequest: *mut c_void) -> NDIS_STATUS;
/// `FILTER_OID_REQUEST_COMPLETE`.
pub type FILTER_OID_REQUEST_COMPLETE =
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, OidRequest: *mut c_void, Status: NDIS_STATUS);
/// `FILTER_CANCEL_OID_REQUEST`.
pub type FILTER_CANCEL_OID_REQUEST =
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, RequestId: *mut c_void);
/// `FILTER_DEVICE_PNP_EVENT_NOTIFY`.
pub type FILTER_DEVICE_PNP_EVENT_NOTIFY =
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, NetDevicePnPEvent: *mut c_void);
/// `FILTER_NET_PNP_EVENT`.
pub type FILTER_NET_PNP_EVENT = unsafe extern "system" fn(
    FilterModuleContext: NDIS_HANDLE,
    NetPnPEventNotification: *mut c_void,
) -> NDIS_STATUS;
/// `FILTER_STATUS` (the indication is passed on untouched, so it stays opaque).
pub type FILTER_STATUS =
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, StatusIndication: *mut c_void);

/// `NDIS_FILTER_DRIVER_CHARACTERISTICS`, full revision-3 layout. `Header.Size` tells NDIS how
/// much of it to read (0xC8 / 0xE0 / 0xF0 for revisions 1 / 2 / 3).
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_FILTER_DRIVER_CHARACTERISTICS {
    /// Type 0x8B.
    pub Header: NDIS_OBJECT_HEADER,
    /// NDIS major version the filter is written for.
    pub MajorNdisVersion: u8,
    /// NDIS minor version.
    pub MinorNdisVersion: u8,
    /// Driver's own major version.
    pub MajorDriverVersion: u8,
    /// Driver's own minor version.
    pub MinorDriverVersion: u8,
    /// Reserved (`NDIS_FILTER_DRIVER_MANDATORY` in old headers), zero.
    pub Flags: u32,
    /// Display name.
    pub FriendlyName: NDIS_STRING,
    /// `{GUID}` equal to the INF's `NetCfgInstanceId`.
    pub UniqueName: NDIS_STRING,
    /// Service name equal to the INF's `AddService`.
    pub ServiceName: NDIS_STRING,
    /// Optional.
    pub SetOptionsHandler: Option<FILTER_SET_OPTIONS>,
    /// Optional.
    pub SetFilterModuleOptionsHandler: Option<FILTER_SET_MODULE_OPTIONS>,
    /// Mandatory.
    pub AttachHandler: Option<FILTER_ATTACH>,
    /// Mandatory.
    pub DetachHandler: Option<FILTER_DETACH>,
    /// Mandatory.
    pub RestartHandler: Option<FILTER_RESTART>,
    /// Mandatory.
    pub PauseHandler: Option<FILTER_PAUSE>,
    /// Optional (needs the complete handler).
    pub SendNetBufferListsHandler: Option<FILTER_SEND_NET_BUFFER_LISTS>,
    /// Optional.
    pub SendNetBufferListsCompleteHandler: Option<FILTER_SEND_NET_BUFFER_LISTS_COMPLETE>,
    /// Optional (only for filters that queue sends).
    pub CancelSendNetBufferListsHandler: Option<FILTER_CANCEL_SEND_NET_BUFFER_LISTS>,
    /// Optional (comes with the status handler).
    pub ReceiveNetBufferListsHandler: Option<FILTER_RECEIVE_NET_BUFFER_LISTS>,
    /// Optional.
    pub ReturnNetBufferListsHandler: Option<FILTER_RETURN_NET_BUFFER_LISTS>,
    /// Optional: NULL lets NDIS forward OIDs itself.
    pub OidRequestHandler: Option<FILTER_OID_REQUEST>,
    /// Optional.
    pub OidRequestCompleteHandler: Option<FILTER_OID_REQUEST_COMPLETE>,
    /// Optional.
    pub CancelOidRequestHandler: Option<FILTER_CANCEL_OID_REQUEST>,
    /// Optional.
    pub DevicePnPEventNotifyHandler: Option<FILTER_DEVICE_PNP_EVENT_NOTIFY>,
    /// Optional.
    pub NetPnPEventHandler: Option<FILTER_NET_PNP_EVENT>,
    /// Optional (end of revision 1).
    pub StatusHandler: Option<FILTER_STATUS>,
    /// Revision 2 (NDIS 6.1).
    pub DirectOidRequestHandler: Option<FILTER_OID_REQUEST>,
    /// Revision 2.
    pub DirectOidRequestCompleteHandler: Option<FILTER_OID_REQUEST_COMPLETE>,
    /// Revision 2 (end of revision 2).
    pub CancelDirectOidRequestHandler: Option<FILTER_CANCEL_OID_REQUEST>,
    /// Revision 3 (NDIS 6.80).
    pub SynchronousOidRequestHandler: Option<FILTER_OID_REQUEST>,
    /// Revision 3 (end of revision 3).
    pub SynchronousOidRequestCompleteHandler: Option<FILTER_OID_REQUEST_COMPLETE>,
}

/// `DRIVER_UNLOAD`.
pub type DRIVER_UNLOAD = unsafe extern "system" fn(DriverObject: *mut DRIVER_OBJECT);
/// `DRIVER_DISPATCH`.
pub type DRIVER_DISPATCH =
    unsafe extern "system" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP) -> NTSTATUS;

/// `IRP_MJ_MAXIMUM_FUNCTION + 1`: entries of a major-function table.
pub const IRP_MJ_FUNCTION_COUNT: usize = 0x1C;

/// `DRIVER_OBJECT` (x64/ARM64 layout). The driver writes only `DriverUnload`.
#[repr(C)]
#[derive(Debug)]
pub struct DRIVER_OBJECT {
    /// `IO_TYPE_DRIVER` (4).
    pub Type: i16,
    /// Size of the object.
    pub Size: i16,
    /// First device object.
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// `DRVO_*` flags.
    pub Flags: u32,
    /// Image base.
    pub DriverStart: *mut c_void,
    /// Image size.
    pub DriverSize: u32,
    /// Loader entry.
    pub DriverSection: *mut c_void,
    /// Driver extension.
    pub DriverExtension: *mut c_void,
    /// `\Driver\<name>`.
    pub DriverName: UNICODE_STRING,
    /// Hardware database path.
    pub HardwareDatabase: *mut UNICODE_STRING,
    /// Fast I/O table.
    pub FastIoDispatch: *mut c_void,
    /// `DriverEntry`.
    pub DriverInit: *mut c_void,
    /// StartIo routine.
    pub DriverStartIo: *mut c_void,
    /// Unload routine.
    pub DriverUnload: Option<DRIVER_UNLOAD>,
    /// Dispatch table (NDIS owns it for NDIS drivers).
    pub MajorFunction: [Option<DRIVER_DISPATCH>; IRP_MJ_FUNCTION_COUNT],
}

/// `DEVICE_OBJECT`: opaque here; NDIS hands the driver its own reserved extension instead.
#[repr(C)]
#[derive(Debug)]
pub struct DEVICE_OBJECT {
    _opaque: [u8; 0],
}

/// `IO_STATUS_BLOCK`: `Status` overlays a `PVOID Pointer` (8 bytes), then `Information`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IO_STATUS_BLOCK {
    /// Completion status (the low half of the `Status`/`Pointer` union).
    pub Status: NTSTATUS,
    /// The high half of the `Pointer` member of the union; never written by the driver.
    pub PointerHigh: u32,
    /// Bytes transferred (for `METHOD_BUFFERED`: bytes of `SystemBuffer` to copy back).
    pub Information: usize,
}

/// `IRP` (x64/ARM64 layout, abi-facts 1.3). Unions are flattened to the member this driver
/// reads: `AssociatedIrp` to `SystemBuffer`, `Tail` to `Tail.Overlay`. The I/O manager owns it;
/// a driver reads `SystemBuffer` and `Tail.Overlay.CurrentStackLocation` and writes `IoStatus`.
#[repr(C)]
#[derive(Debug)]
pub struct IRP {
    /// `IO_TYPE_IRP` (6).
    pub Type: i16,
    /// Bytes allocated for the IRP with its stack locations.
    pub Size: u16,
    /// Processor the IRP was allocated on.
    pub AllocationProcessorNumber: u16,
    /// Reserved.
    pub Reserved: u16,
    /// MDL of a direct-I/O buffer (NULL for `METHOD_BUFFERED`).
    pub MdlAddress: *mut MDL,
    /// `IRP_*` flags.
    pub Flags: u32,
    /// Alignment padding before the `AssociatedIrp` union.
    pub Padding0: u32,
    /// `AssociatedIrp.SystemBuffer`: the buffer of a `METHOD_BUFFERED` request (input on the way
    /// in, output on the way out; NULL when both lengths are 0).
    pub SystemBuffer: *mut c_void,
    /// `ThreadListEntry` (a `LIST_ENTRY`).
    pub ThreadListEntry: [*mut c_void; 2],
    /// Completion status and information.
    pub IoStatus: IO_STATUS_BLOCK,
    /// `KernelMode` (0) or `UserMode` (1).
    pub RequestorMode: i8,
    /// Set by the I/O manager when a lower driver returned pending.
    pub PendingReturned: u8,
    /// Stack locations allocated.
    pub StackCount: i8,
    /// Current stack location number (1-based).
    pub CurrentLocation: i8,
    /// Cancelled.
    pub Cancel: u8,
    /// IRQL at which the cancel spin lock was taken.
    pub CancelIrql: u8,
    /// APC environment.
    pub ApcEnvironment: i8,
    /// Allocation flags.
    pub AllocationFlags: u8,
    /// The caller's I/O status block.
    pub UserIosb: *mut IO_STATUS_BLOCK,
    /// The caller's event.
    pub UserEvent: *mut c_void,
    /// `Overlay` union (`AsynchronousParameters` / `AllocationSize`).
    pub Overlay: [u64; 2],
    /// Cancel routine.
    pub CancelRoutine: *mut c_void,
    /// The caller's buffer (`METHOD_NEITHER` output; not used here).
    pub UserBuffer: *mut c_void,
    /// `Tail.Overlay.DriverContext`.
    pub DriverContext: [*mut c_void; 4],
    /// `Tail.Overlay.Thread`.
    pub Thread: *mut c_void,
    /// `Tail.Overlay.AuxiliaryBuffer`.
    pub AuxiliaryBuffer: *mut u8,
    /// `Tail.Overlay.ListEntry`.
    pub ListEntry: [*mut c_void; 2],
    /// `Tail.Overlay.CurrentStackLocation` (what `IoGetCurrentIrpStackLocation` returns).
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    /// `Tail.Overlay.OriginalFileObject`.
    pub OriginalFileObject: *mut c_void,
    /// `Tail.Overlay.IrpExtension`.
    pub IrpExtension: *mut c_void,
}

/// `Parameters.DeviceIoControl` of an `IO_STACK_LOCATION` (each field `POINTER_ALIGNMENT`,
/// hence the padding: abi-facts 1.4 and the windows-sys warning in 1.9).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STACK_LOCATION_DEVICE_IO_CONTROL {
    /// Output buffer length in bytes.
    pub OutputBufferLength: u32,
    /// Padding (`POINTER_ALIGNMENT`).
    pub Padding0: u32,
    /// Input buffer length in bytes.
    pub InputBufferLength: u32,
    /// Padding.
    pub Padding1: u32,
    /// The control code.
    pub IoControlCode: u32,
    /// Padding.
    pub Padding2: u32,
    /// `METHOD_NEITHER` input pointer (not used here).
    pub Type3InputBuffer: *mut c_void,
}

/// `Parameters.Create` of an `IO_STACK_LOCATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STACK_LOCATION_CREATE {
    /// `PIO_SECURITY_CONTEXT`.
    pub SecurityContext: *mut c_void,
    /// Create disposition (high 8 bits) and options (low 24 bits).
    pub Options: u32,
    /// Padding (`POINTER_ALIGNMENT`).
    pub Padding0: u32,
    /// File attributes.
    pub FileAttributes: u16,
    /// Share access.
    pub ShareAccess: u16,
    /// Padding.
    pub Padding1: u32,
    /// EA length.
    pub EaLength: u32,
    /// Padding.
    pub Padding2: u32,
}

/// The `Parameters` union of an `IO_STACK_LOCATION` (0x20 bytes on 64-bit), with the members
/// this driver or the model uses.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_STACK_LOCATION_PARAMETERS {
    /// `IRP_MJ_DEVICE_CONTROL`.
    pub DeviceIoControl: IO_STACK_LOCATION_DEVICE_IO_CONTROL,
    /// `IRP_MJ_CREATE`.
    pub Create: IO_STACK_LOCATION_CREATE,
    /// The raw four pointer-sized words (`Others`).
    pub Others: [usize; 4],
}

impl core::fmt::Debug for IO_STACK_LOCATION_PARAMETERS {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IO_STACK_LOCATION_PARAMETERS { .. }")
    }
}

/// `IO_STACK_LOCATION` (x64/ARM64 layout, abi-facts 1.4).
#[repr(C)]
#[derive(Debug)]
pub struct IO_STACK_LOCATION {
    /// `IRP_MJ_*`.
    pub MajorFunction: u8,
    /// `IRP_MN_*`.
    pub MinorFunction: u8,
    /// `SL_*` flags.
    pub Flags: u8,
    /// `SL_*` control flags.
    pub Control: u8,
    /// Padding before the pointer-aligned `Parameters` union.
    pub Padding0: u32,
    /// Per-major-function parameters.
    pub Parameters: IO_STACK_LOCATION_PARAMETERS,
    /// The target device.
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// The file object of the handle (`PFILE_OBJECT`).
    pub FileObject: *mut c_void,
    /// Completion routine.
    pub CompletionRoutine: *mut c_void,
    /// Its context.
    pub Context: *mut c_void,
}

/// `NDIS_DEVICE_OBJECT_ATTRIBUTES`, passed to `NdisRegisterDeviceEx`.
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_DEVICE_OBJECT_ATTRIBUTES {
    /// Type 0x85, revision 1, size 0x38.
    pub Header: NDIS_OBJECT_HEADER,
    /// `\Device\<name>`.
    pub DeviceName: PNDIS_STRING,
    /// `\DosDevices\<name>`.
    pub SymbolicName: PNDIS_STRING,
    /// Table of `IRP_MJ_FUNCTION_COUNT` dispatch routines.
    pub MajorFunctions: *mut Option<DRIVER_DISPATCH>,
    /// Size of the reserved extension NDIS allocates for the driver.
    pub ExtensionSize: u32,
    /// SDDL string securing the device (`PCUNICODE_STRING`).
    pub DefaultSDDLString: *const UNICODE_STRING,
    /// Reserved, NULL.
    pub DeviceClassGuid: *const GUID,
}

/// `NDIS_TIMER_FUNCTION` (called at DISPATCH_LEVEL).
pub type NDIS_TIMER_FUNCTION = unsafe extern "system" fn(
    SystemSpecific1: *mut c_void,
    FunctionContext: *mut c_void,
    SystemSpecific2: *mut c_void,
    SystemSpecific3: *mut c_void,
);

/// `NDIS_TIMER_CHARACTERISTICS`, passed to `NdisAllocateTimerObject`.
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_TIMER_CHARACTERISTICS {
    /// Type 0x97, revision 1, size 0x18.
    pub Header: NDIS_OBJECT_HEADER,
    /// Pool tag NDIS uses for the timer object (mandatory).
    pub AllocationTag: u32,
    /// The timer callback.
    pub TimerFunction: Option<NDIS_TIMER_FUNCTION>,
    /// Default context passed to the callback.
    pub FunctionContext: *mut c_void,
}

/// `NDIS_CONFIGURATION_OBJECT`, passed to `NdisOpenConfigurationEx`.
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_CONFIGURATION_OBJECT {
    /// Type 0xA9, revision 1, size `NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1`.
    pub Header: NDIS_OBJECT_HEADER,
    /// The handle whose configuration is opened (here: the filter *driver* handle).
    pub NdisHandle: NDIS_HANDLE,
    /// `NDIS_CONFIG_FLAG_*` (0 for a driver handle).
    pub Flags: u32,
}

/// `NDIS_PARAMETER_TYPE` (a C enum, 32 bits).
pub type NDIS_PARAMETER_TYPE = i32;

/// `BINARY_DATA`: a counted byte buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BINARY_DATA {
    /// Bytes in `Buffer`.
    pub Length: u16,
    /// The bytes.
    pub Buffer: *mut c_void,
}

/// The `ParameterData` union of `NDIS_CONFIGURATION_PARAMETER`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NDIS_CONFIGURATION_PARAMETER_DATA {
    /// `NdisParameterInteger` / `NdisParameterHexInteger`.
    pub IntegerData: u32,
    /// `NdisParameterString` / `NdisParameterMultiString`.
    pub StringData: NDIS_STRING,
    /// `NdisParameterBinary`.
    pub BinaryData: BINARY_DATA,
}

impl core::fmt::Debug for NDIS_CONFIGURATION_PARAMETER_DATA {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NDIS_CONFIGURATION_PARAMETER_DATA { .. }")
    }
}

/// `NDIS_CONFIGURATION_PARAMETER`: what `NdisReadConfiguration` returns a pointer to (owned by
/// NDIS until the configuration handle is closed).
#[repr(C)]
#[derive(Debug)]
pub struct NDIS_CONFIGURATION_PARAMETER {
    /// The type of the value found.
    pub ParameterType: NDIS_PARAMETER_TYPE,
    /// The value.
    pub ParameterData: NDIS_CONFIGURATION_PARAMETER_DATA,
}
