//! The NDIS and kernel functions the driver calls: declared once, for every build.
//!
//! * Kernel builds (`kernel`, and `wdk` which implies it) link them from `ndis.sys` and
//!   `ntoskrnl.exe` (`#[link]` names the import libraries: the WDK's own under `wdk`, the ones
//!   `cargo xtask sys` makes from the `.def` lists next to this file otherwise).
//! * The host build links them to the user-mode NDIS model in `src/host`, which defines each
//!   symbol with the same signature, so the driver code runs unchanged on Linux.
//!
//! One source of truth: `import_lists_match_def_files` (tests/imports.rs) fails when a function
//! declared here is missing from its `.def` list, or a `.def` list names a function that is
//! neither declared here nor needed by the `tracelogging` crate.
//!
//! Signatures: ndis-reference.md E.2 and the WDK DDI pages; parameter names are the WDK's.

use core::ffi::c_void;

use super::types::{
    DEVICE_OBJECT, DRIVER_OBJECT, IRP, KIRQL, KSPIN_LOCK, NDIS_CONFIGURATION_OBJECT,
    NDIS_CONFIGURATION_PARAMETER, NDIS_DEVICE_OBJECT_ATTRIBUTES, NDIS_FILTER_ATTRIBUTES,
    NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_HANDLE, NDIS_PARAMETER_TYPE, NDIS_PORT_NUMBER, NDIS_STATUS,
    NDIS_TIMER_CHARACTERISTICS, PNDIS_HANDLE, PNDIS_STRING, PNET_BUFFER_LIST, POOL_FLAGS, PROCESSOR_NUMBER,
};

/// Declares one import module: an `extern "system"` block (linked to `$lib` in kernel builds)
/// and a list of the declared names for the `.def` consistency test.
macro_rules! kernel_imports {
    (
        $(#[$list_meta:meta])*
        $list:ident = $module:literal, $lib:literal {
            $( $(#[$fn_meta:meta])* fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )*
        }
    ) => {
        #[cfg_attr(feature = "kernel", link(name = $lib))]
        unsafe extern "system" {
            $( $(#[$fn_meta])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }

        $(#[$list_meta])*
        pub const $list: (&str, &[&str]) = ($module, &[ $( stringify!($name) ),* ]);
    };
}

kernel_imports! {
    /// Functions imported from `ndis.sys`.
    NDIS_IMPORTS = "ndis.sys", "ndis" {
        /// Registers the filter driver (PASSIVE).
        fn NdisFRegisterFilterDriver(
            DriverObject: *mut DRIVER_OBJECT,
            FilterDriverContext: NDIS_HANDLE,
            FilterDriverCharacteristics: *mut NDIS_FILTER_DRIVER_CHARACTERISTICS,
            NdisFilterDriverHandle: PNDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// Deregisters the filter driver; detaches remaining modules (PASSIVE).
        fn NdisFDeregisterFilterDriver(NdisFilterDriverHandle: NDIS_HANDLE);
        /// Sets the module context during FilterAttach (PASSIVE).
        fn NdisFSetAttributes(
            NdisFilterHandle: NDIS_HANDLE,
            FilterModuleContext: NDIS_HANDLE,
            FilterAttributes: *mut NDIS_FILTER_ATTRIBUTES,
        ) -> NDIS_STATUS;
        /// Passes sends down (<= DISPATCH).
        fn NdisFSendNetBufferLists(
            NdisFilterHandle: NDIS_HANDLE,
            NetBufferLists: PNET_BUFFER_LIST,
            PortNumber: NDIS_PORT_NUMBER,
            SendFlags: u32,
        );
        /// Completes sends up (<= DISPATCH).
        fn NdisFSendNetBufferListsComplete(
            NdisFilterHandle: NDIS_HANDLE,
            NetBufferLists: PNET_BUFFER_LIST,
            SendCompleteFlags: u32,
        );
        /// Indicates receives up (<= DISPATCH).
        fn NdisFIndicateReceiveNetBufferLists(
            NdisFilterHandle: NDIS_HANDLE,
            NetBufferLists: PNET_BUFFER_LIST,
            PortNumber: NDIS_PORT_NUMBER,
            NumberOfNetBufferLists: u32,
            ReceiveFlags: u32,
        );
        /// Returns receives down (<= DISPATCH).
        fn NdisFReturnNetBufferLists(
            NdisFilterHandle: NDIS_HANDLE,
            NetBufferLists: PNET_BUFFER_LIST,
            ReturnFlags: u32,
        );
        /// Completes a pause that FilterPause returned as pending (<= DISPATCH).
        fn NdisFPauseComplete(NdisFilterHandle: NDIS_HANDLE);
        /// Passes a status indication up (<= DISPATCH).
        fn NdisFIndicateStatus(NdisFilterHandle: NDIS_HANDLE, StatusIndication: *mut c_void);
        /// Allocates a timer object (<= DISPATCH).
        fn NdisAllocateTimerObject(
            NdisHandle: NDIS_HANDLE,
            TimerCharacteristics: *mut NDIS_TIMER_CHARACTERISTICS,
            pTimerObject: PNDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// Arms a timer: `DueTime` < 0 is relative, in 100 ns units; a non-zero period repeats.
        /// Returns TRUE if it was already queued (<= DISPATCH).
        fn NdisSetTimerObject(
            TimerObject: NDIS_HANDLE,
            DueTime: i64,
            MillisecondsPeriod: i32,
            FunctionContext: *mut c_void,
        ) -> u8;
        /// Disarms a timer; for a periodic timer it must be called at PASSIVE and it waits for
        /// queued callbacks. Returns TRUE if the timer was queued.
        fn NdisCancelTimerObject(TimerObject: NDIS_HANDLE) -> u8;
        /// Frees a timer object (cancelled and drained first).
        fn NdisFreeTimerObject(TimerObject: NDIS_HANDLE);
        /// Creates a named device object and its symbolic link for an NDIS driver; NDIS routes
        /// its IRPs to `MajorFunctions` (PASSIVE).
        fn NdisRegisterDeviceEx(
            NdisHandle: NDIS_HANDLE,
            DeviceObjectAttributes: *mut NDIS_DEVICE_OBJECT_ATTRIBUTES,
            pDeviceObject: *mut *mut DEVICE_OBJECT,
            NdisDeviceHandle: PNDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// Deletes a device registered with `NdisRegisterDeviceEx` (PASSIVE).
        fn NdisDeregisterDeviceEx(NdisDeviceHandle: NDIS_HANDLE);
        /// Opens the registry key of `ConfigObject->NdisHandle` (PASSIVE).
        fn NdisOpenConfigurationEx(
            ConfigObject: *mut NDIS_CONFIGURATION_OBJECT,
            ConfigurationHandle: PNDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// Opens a named subkey of an open configuration key (PASSIVE); close it with
        /// `NdisCloseConfiguration`.
        fn NdisOpenConfigurationKeyByName(
            Status: *mut NDIS_STATUS,
            ConfigurationHandle: NDIS_HANDLE,
            SubKeyName: PNDIS_STRING,
            SubKeyHandle: PNDIS_HANDLE,
        );
        /// Reads a named value; the parameter it returns lives until the handle is closed
        /// (PASSIVE).
        fn NdisReadConfiguration(
            Status: *mut NDIS_STATUS,
            ParameterValue: *mut *mut NDIS_CONFIGURATION_PARAMETER,
            ConfigurationHandle: NDIS_HANDLE,
            Keyword: PNDIS_STRING,
            ParameterType: NDIS_PARAMETER_TYPE,
        );
        /// Closes a configuration handle and frees what reads through it returned (PASSIVE).
        fn NdisCloseConfiguration(ConfigurationHandle: NDIS_HANDLE);
    }
}

kernel_imports! {
    /// Functions imported from `hal.dll` (none today; see hal.def).
    HAL_IMPORTS = "hal.dll", "hal" {}
}

kernel_imports! {
    /// Functions imported from `ntoskrnl.exe` (the `Etw*` ones come from `tracelogging`).
    NTOSKRNL_IMPORTS = "ntoskrnl.exe", "ntoskrnl" {
        /// Allocates pool (<= DISPATCH for non-paged). Zeroes unless `POOL_FLAG_UNINITIALIZED`.
        fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: u32) -> *mut c_void;
        /// Frees pool allocated with `Tag` (<= DISPATCH).
        fn ExFreePoolWithTag(P: *mut c_void, Tag: u32);
        /// Debug print. Declared with the one argument the driver passes (`"%s"`, text): on x64
        /// and ARM64 Windows, integer and pointer arguments of a variadic call travel exactly as
        /// in this fixed-arity call.
        fn DbgPrintEx(ComponentId: u32, Level: u32, Format: *const u8, Text: *const u8) -> u32;
        /// Bug-checks the machine; never returns.
        fn KeBugCheckEx(
            BugCheckCode: u32,
            BugCheckParameter1: usize,
            BugCheckParameter2: usize,
            BugCheckParameter3: usize,
            BugCheckParameter4: usize,
        ) -> !;
        /// System-wide index of the current processor (any IRQL).
        fn KeGetCurrentProcessorNumberEx(ProcNumber: *mut PROCESSOR_NUMBER) -> u32;
        /// Maximum number of processors, hot-add included (any IRQL).
        fn KeQueryMaximumProcessorCountEx(GroupNumber: u16) -> u32;
        /// Acquires a spin lock, raising to DISPATCH; returns the previous IRQL.
        fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KSPIN_LOCK) -> KIRQL;
        /// Releases a spin lock and lowers to `NewIrql`.
        fn KeReleaseSpinLock(SpinLock: *mut KSPIN_LOCK, NewIrql: KIRQL);
        /// Waits until every DPC queued before the call has run (PASSIVE).
        fn KeFlushQueuedDpcs();
        /// Completes an IRP (`IoCompleteRequest` is the WDK's macro over this export); the
        /// driver must not touch the IRP afterwards (<= DISPATCH).
        fn IofCompleteRequest(Irp: *mut IRP, PriorityBoost: i8);
    }
}

/// Import modules the driver may use, with their declared functions.
pub const ALL_IMPORTS: &[(&str, &[&str])] = &[NDIS_IMPORTS, NTOSKRNL_IMPORTS, HAL_IMPORTS];

/// Functions that the `tracelogging` crate (feature `kernel_mode`) imports from ntoskrnl.exe.
/// (It also declares `UuidCreate` from rpcrt4 for `Guid::new`, which a driver never calls: see
/// rpcrt4.def.)
pub const TRACELOGGING_IMPORTS: &[&str] =
    &["EtwRegister", "EtwUnregister", "EtwWriteTransfer", "EtwSetInformation", "EtwActivityIdControl"];
