//! The `wdk` build's runtime roles, filled by windows-drivers-rs as in its WDM sample (see the
//! table in the parent). Built only on Windows with the WDK (`cargo make`), not on Linux.

use core::ffi::CStr;

// Panic handler: `KeBugCheckEx` with wdk-panic's code.
extern crate wdk_panic;

use wdk_alloc::WdkAllocator;

/// wdk-alloc's non-paged pool allocator. It does not honour alignments above the pool's 16 bytes
/// (the own allocator refuses them instead).
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

// `_fltused`: wdk-sys defines it.

/// Hands one formatted text to `DbgPrintEx` through wdk-sys' binding.
pub(crate) fn emit(level: u32, text: &CStr) {
    // SAFETY: both strings are NUL-terminated and outlive the call; the format takes exactly the
    // one `%s` argument passed.
    let _ = unsafe {
        wdk_sys::ntddk::DbgPrintEx(crate::sys::DPFLTR_IHVNETWORK_ID, level, c"%s".as_ptr(), text.as_ptr())
    };
}
