//! The `kernel` build's runtime roles, without the WDK crates (see the table in the parent).

use core::alloc::{GlobalAlloc, Layout};
use core::panic::PanicInfo;
use core::ptr;

use crate::sys::{ExAllocatePool2, ExFreePoolWithTag, KeBugCheckEx, POOL_FLAG_NON_PAGED};

/// Pool tag of every allocation: reads `Nbsh` in poolmon and `!poolused`.
const POOL_TAG: u32 = u32::from_le_bytes(*b"Nbsh");

/// `MEMORY_ALLOCATION_ALIGNMENT` on 64-bit Windows: every pool block starts on a 16-byte boundary.
/// (Blocks of a page or more are page-aligned, but nothing here relies on it.)
const POOL_ALIGNMENT: usize = 16;

/// Non-paged pool allocator; usable at IRQL <= DISPATCH_LEVEL.
struct PoolAllocator;

// SAFETY: `alloc` returns NULL or a fresh non-paged block of at least `layout.size()` bytes whose
// alignment (16) satisfies `layout.align()`, because larger alignments are refused with NULL;
// `dealloc` frees only such blocks, with the tag they were allocated with; nothing here unwinds.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > POOL_ALIGNMENT {
            return ptr::null_mut();
        }
        // SAFETY: non-paged allocation is allowed at IRQL <= DISPATCH_LEVEL (this allocator's
        // documented bound); the tag is non-zero; the call takes no pointers.
        unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, layout.size(), POOL_TAG) }.cast()
    }

    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        // SAFETY: `GlobalAlloc` hands back only pointers `alloc` returned, i.e. pool blocks with
        // `POOL_TAG`, each once; freeing non-paged pool is allowed at IRQL <= DISPATCH_LEVEL.
        unsafe { ExFreePoolWithTag(block.cast(), POOL_TAG) };
    }
}

#[global_allocator]
static ALLOCATOR: PoolAllocator = PoolAllocator;

/// Bug-check code of a Rust panic in this driver: `NBSH` (0x4E425348).
const PANIC_BUGCHECK_CODE: u32 = u32::from_be_bytes(*b"NBSH");

/// Stops the machine with [`PANIC_BUGCHECK_CODE`]; parameters: 1 = line, 2 = column, 3 = address
/// of the source file name (not NUL-terminated), 4 = its length (all 0 without a location).
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let (line, column, file, file_len) = info.location().map_or((0, 0, 0, 0), |location| {
        (
            usize::try_from(location.line()).unwrap_or(usize::MAX),
            usize::try_from(location.column()).unwrap_or(usize::MAX),
            location.file().as_ptr().addr(),
            location.file().len(),
        )
    });
    // SAFETY: KeBugCheckEx takes plain integers and may be called at any IRQL.
    unsafe { KeBugCheckEx(PANIC_BUGCHECK_CODE, line, column, file, file_len) }
}

/// LLVM references `_fltused` from any object that touches floating point, and the MSVC CRT that
/// normally defines it is not linked (`/NODEFAULTLIB`). Its value is never read.
#[allow(non_upper_case_globals, reason = "the symbol name is fixed by the toolchain")]
#[unsafe(no_mangle)]
static _fltused: i32 = 0;
