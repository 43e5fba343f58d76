//! Kernel glue: the image's entry point and the runtime roles a `no_std` driver must fill.
//!
//! | role | `kernel` build (`own.rs`) | `wdk` build (`wdk.rs`) |
//! |---|---|---|
//! | `#[global_allocator]` | `ExAllocatePool2` / `ExFreePoolWithTag` | `wdk_alloc::WdkAllocator` |
//! | `#[panic_handler]` | `KeBugCheckEx(NBSH, …)` | `wdk_panic` (`KeBugCheckEx(RPNC, …)`) |
//! | `_fltused` | defined here | defined by wdk-sys |
//! | debug print | [`crate::dbgprint`] → `crate::sys::DbgPrintEx` | [`crate::dbgprint`] → `wdk_sys::ntddk::DbgPrintEx` |
//!
//! `DriverEntry` is the same in both: it forwards to [`crate::filter::driver_entry`], which also
//! sets the unload routine. Compiled only for the kernel builds (feature `kernel`).

#[cfg(not(feature = "wdk"))]
mod own;
#[cfg(feature = "wdk")]
mod wdk;

#[cfg(feature = "wdk")]
pub(crate) use wdk::emit;

pub use crate::dbgprint::print;
use crate::sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

/// The image's entry point (`/ENTRY:DriverEntry`): the I/O manager calls it once, at
/// PASSIVE_LEVEL, with the driver object and the service key path.
///
/// # Safety
/// Only the I/O manager may call it, once, with its own arguments.
// SAFETY: `DriverEntry` is the entry symbol the linker and the I/O manager look for; no other item
// in the crate graph exports that name (wdk-sys' test stub `DriverEntry` is never enabled here).
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the I/O manager's one call at PASSIVE_LEVEL with its driver object and service key
    // is exactly the contract of `filter::driver_entry`.
    unsafe { crate::filter::driver_entry(driver, registry_path) }
}
