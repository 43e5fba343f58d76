"""x64 layouts and constants the harness plays ndis.sys and ntoskrnl.exe with.

Every number here is restated from the project's contract, /work/shared/ndis-reference.md
(sections C, D and E) and research/abi-facts.md (sections 1-3); none is read from the driver's
Rust sources, so a disagreement between the driver and the contract shows up as a failing check.
"""

# --- Object headers (ndis-reference D.1, D.2, D.3) -------------------------------------------
NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES = 0x85
NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS = 0x8B
NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES = 0x8D
NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS = 0x97
NDIS_OBJECT_TYPE_STATUS_INDICATION = 0x98
NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS = 0x99
NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS = 0x9A
NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS = 0x9B
NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT = 0xA9

NDIS_FILTER_CHARACTERISTICS_REVISION_2 = 2
NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2 = 0xE0
NDIS_FILTER_ATTRIBUTES_REVISION_1 = 1
NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1 = 0x08
NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4 = 4
NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4 = 0xE0
NDIS_FILTER_RESTART_PARAMETERS_REVISION_1 = 1
NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1 = 0x2C
NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1 = 1
NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1 = 0x0C
NDIS_TIMER_CHARACTERISTICS_REVISION_1 = 1
NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1 = 0x18
NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1 = 1
NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1 = 0x38
NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1 = 0x14

# --- Status codes (ndis-reference D.5) ---------------------------------------------------------
NDIS_STATUS_SUCCESS = 0x00000000
NDIS_STATUS_PENDING = 0x00000103
NDIS_STATUS_FAILURE = 0xC0000001
NDIS_STATUS_RESOURCES = 0xC000009A
NDIS_STATUS_INVALID_PARAMETER = 0xC000000D
NDIS_STATUS_PAUSED = 0xC023002A
STATUS_SUCCESS = 0

# --- Flags (ndis-reference D.4) -----------------------------------------------------------------
NDIS_SEND_FLAGS_DISPATCH_LEVEL = 0x1
NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL = 0x1
NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL = 0x1
NDIS_RECEIVE_FLAGS_RESOURCES = 0x2
NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID = 0x1000
NDIS_RETURN_FLAGS_DISPATCH_LEVEL = 0x1

NDIS_MEDIUM_802_3 = 0
NDIS_MEDIUM_WAN = 3

# --- IRQL ------------------------------------------------------------------------------------
PASSIVE_LEVEL = 0
DISPATCH_LEVEL = 2

# --- UNICODE_STRING / NDIS_STRING (ndis-reference C.0) --------------------------------------
UNICODE_STRING_SIZE = 0x10  # Length u16 @0, MaximumLength u16 @2, Buffer @8

# --- DRIVER_OBJECT (abi-facts 1.1) ------------------------------------------------------------
DRIVER_OBJECT_DRIVER_UNLOAD = 0x68
DRIVER_OBJECT_MAJOR_FUNCTION = 0x70
IRP_MJ_MAXIMUM_FUNCTION = 0x1B  # MajorFunction has 28 entries

# --- NDIS_FILTER_DRIVER_CHARACTERISTICS (ndis-reference C.7) ---------------------------------
CHARS_FIELDS = {
    "Header": 0x00,
    "MajorNdisVersion": 0x04,
    "MinorNdisVersion": 0x05,
    "MajorDriverVersion": 0x06,
    "MinorDriverVersion": 0x07,
    "Flags": 0x08,
    "FriendlyName": 0x10,
    "UniqueName": 0x20,
    "ServiceName": 0x30,
}
CHARS_HANDLERS = {
    "SetOptionsHandler": 0x40,
    "SetFilterModuleOptionsHandler": 0x48,
    "AttachHandler": 0x50,
    "DetachHandler": 0x58,
    "RestartHandler": 0x60,
    "PauseHandler": 0x68,
    "SendNetBufferListsHandler": 0x70,
    "SendNetBufferListsCompleteHandler": 0x78,
    "CancelSendNetBufferListsHandler": 0x80,
    "ReceiveNetBufferListsHandler": 0x88,
    "ReturnNetBufferListsHandler": 0x90,
    "OidRequestHandler": 0x98,
    "OidRequestCompleteHandler": 0xA0,
    "CancelOidRequestHandler": 0xA8,
    "DevicePnPEventNotifyHandler": 0xB0,
    "NetPnPEventHandler": 0xB8,
    "StatusHandler": 0xC0,
    # revision 2 (NDIS 6.1)
    "DirectOidRequestHandler": 0xC8,
    "DirectOidRequestCompleteHandler": 0xD0,
    "CancelDirectOidRequestHandler": 0xD8,
}
MANDATORY_HANDLERS = ("AttachHandler", "DetachHandler", "RestartHandler", "PauseHandler")

# --- NDIS_FILTER_ATTACH_PARAMETERS (ndis-reference C.9) --------------------------------------
ATTACH = {
    "Header": 0x00,
    "IfIndex": 0x04,
    "NetLuid": 0x08,
    "FilterModuleGuidName": 0x10,
    "BaseMiniportIfIndex": 0x18,
    "BaseMiniportInstanceName": 0x20,
    "BaseMiniportName": 0x28,
    "MediaConnectState": 0x30,
    "MediaDuplexState": 0x34,
    "XmitLinkSpeed": 0x38,
    "RcvLinkSpeed": 0x40,
    "MiniportMediaType": 0x48,
    "MiniportPhysicalMediaType": 0x4C,
    "MacAddressLength": 0x60,
    "CurrentMacAddress": 0x62,
    "BaseMiniportNetLuid": 0x88,
    "LowerIfIndex": 0x90,
    "LowerIfNetLuid": 0x98,
    "Flags": 0xA0,
}

# --- NDIS_FILTER_RESTART_PARAMETERS / PAUSE_PARAMETERS (ndis-reference C.10) -----------------
RESTART_PARAMETERS_SIZE = 0x30
RESTART = {"Header": 0x00, "MiniportMediaType": 0x04, "MiniportPhysicalMediaType": 0x08,
           "RestartAttributes": 0x10, "LowerIfIndex": 0x18, "LowerIfNetLuid": 0x20, "Flags": 0x28}
PAUSE_PARAMETERS_SIZE = 0x0C
PAUSE = {"Header": 0x00, "Flags": 0x04, "PauseReason": 0x08}
NDIS_PAUSE_NDIS_INTERNAL = 0x1

# --- NDIS_FILTER_ATTRIBUTES (C.10), NDIS_TIMER_CHARACTERISTICS (abi-facts 2.2) ---------------
TIMER = {"Header": 0x00, "AllocationTag": 0x04, "TimerFunction": 0x08, "FunctionContext": 0x10}

# --- NDIS_CONFIGURATION_OBJECT (abi-facts 2.4) ------------------------------------------------
CONFIG_OBJECT = {"Header": 0x00, "NdisHandle": 0x08, "Flags": 0x10}
# NDIS_CONFIGURATION_PARAMETER: the type, then the value union (IntegerData or NDIS_STRING).
CONFIG_PARAMETER = {"ParameterType": 0x00, "ParameterData": 0x08}
CONFIG_PARAMETER_SIZE = 0x18
NdisParameterInteger = 0
NdisParameterHexInteger = 1
NdisParameterString = 2

# --- NDIS_DEVICE_OBJECT_ATTRIBUTES (abi-facts 2.5) ------------------------------------------
DEVICE_ATTRS = {"Header": 0x00, "DeviceName": 0x08, "SymbolicName": 0x10, "MajorFunctions": 0x18,
                "ExtensionSize": 0x20, "DefaultSDDLString": 0x28, "DeviceClassGuid": 0x30}
DEVICE_OBJECT_SIZE = 0x150
DEVICE_OBJECT_DRIVER_OBJECT = 0x08

# --- IRP, IO_STACK_LOCATION (abi-facts 1.3-1.4; x64) -----------------------------------------
IO_TYPE_IRP = 6
IRP_SIZE = 0xD0
IRP = {"Type": 0x00, "Size": 0x02, "SystemBuffer": 0x18, "IoStatus": 0x30, "RequestorMode": 0x40,
       "StackCount": 0x42, "CurrentLocation": 0x43, "CurrentStackLocation": 0xB8}
IO_STATUS_BLOCK = {"Status": 0x00, "Information": 0x08}
IO_STACK_LOCATION_SIZE = 0x48
IO_STACK = {"MajorFunction": 0x00, "MinorFunction": 0x01, "OutputBufferLength": 0x08,
            "InputBufferLength": 0x10, "IoControlCode": 0x18, "DeviceObject": 0x28,
            "FileObject": 0x30}
IRP_MJ_CREATE = 0x00
IRP_MJ_CLOSE = 0x02
IRP_MJ_DEVICE_CONTROL = 0x0E
IRP_MJ_CLEANUP = 0x12
IRP_MJ_NAMES = {IRP_MJ_CREATE: "IRP_MJ_CREATE", IRP_MJ_CLOSE: "IRP_MJ_CLOSE",
                IRP_MJ_DEVICE_CONTROL: "IRP_MJ_DEVICE_CONTROL", IRP_MJ_CLEANUP: "IRP_MJ_CLEANUP"}
DEVICE_OBJECT_DEVICE_EXTENSION = 0x40

# --- NET_BUFFER_LIST / NET_BUFFER / NET_BUFFER_SHARED_MEMORY (ndis-reference C.2-C.4) --------
NBL_SIZE = 0x150  # NDIS 6.30 headers: 24 NetBufferListInfo slots
NBL_NEXT = 0x00
NBL_FIRST_NET_BUFFER = 0x08
NBL_STATUS = 0x8C

NB_SIZE = 0xB0
NB_NEXT = 0x00
NB_DATA_LENGTH = 0x18
NB_DATA_OFFSET = 0x28
NB_SHARED_MEMORY_INFO = 0xA8

SHM_SIZE = 0x20
SHM_NEXT = 0x00
SHM_FLAGS = 0x08
SHM_HANDLE = 0x10
SHM_OFFSET = 0x18
SHM_LENGTH = 0x1C

# --- Pool (abi-facts 3) -----------------------------------------------------------------------
POOL_FLAG_UNINITIALIZED = 0x2
POOL_FLAG_NON_PAGED = 0x40
POOL_FLAG_PAGED = 0x100
POOL_ALIGNMENT = 16

# --- Processors -------------------------------------------------------------------------------
ALL_PROCESSOR_GROUPS = 0xFFFF

# --- ETW ----------------------------------------------------------------------------------------
EVENT_CONTROL_CODE_DISABLE_PROVIDER = 0
EVENT_CONTROL_CODE_ENABLE_PROVIDER = 1
EVENT_CONTROL_CODE_CAPTURE_STATE = 2
EVENT_DESCRIPTOR_SIZE = 0x10  # Id u16, Version u8, Channel u8, Level u8, Opcode u8, Task u16, Keyword u64
EVENT_DATA_DESCRIPTOR_SIZE = 0x10  # Ptr u64, Size u32, Reserved u32
TRACELOGGING_CHANNEL = 11

# --- Bug check ------------------------------------------------------------------------------
NBSH_BUGCHECK = int.from_bytes(b"NBSH", "big")  # 0x4E425348
