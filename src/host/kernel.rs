//! The kernel services the driver imports from ntoskrnl.exe, implemented for the host:
//! tracked pool, debug print, bug check, processor numbers, spin locks with IRQL tracking.
//!
//! Each model thread carries a simulated processor number and IRQL (thread-locals). Contract
//! breaches (freeing with the wrong tag, double free, releasing a lock not held, acquiring a lock
//! already held by the same thread, leaking pool at unload) are recorded as violations.

#![allow(non_snake_case, reason = "the kernel's exported names")]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys::{
    DISPATCH_LEVEL, KIRQL, KSPIN_LOCK, PASSIVE_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAGS, PROCESSOR_NUMBER,
};

use super::violations::violation;

thread_local! {
    static CPU: Cell<u32> = const { Cell::new(0) };
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static MODEL_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether the calling thread is running model code (an NDIS/kernel export, or the model's own
/// bookkeeping) rather than driver code. The allocation test counts only driver allocations.
#[must_use]
pub fn in_model() -> bool {
    MODEL_DEPTH.with(Cell::get) > 0
}

/// Marks model code for its lifetime (entered by every export and model entry point).
#[derive(Debug)]
pub struct ModelScope(());

impl ModelScope {
    /// Enters model code.
    #[must_use]
    pub fn enter() -> Self {
        MODEL_DEPTH.with(|d| d.set(d.get() + 1));
        Self(())
    }
}

impl Drop for ModelScope {
    fn drop(&mut self) {
        MODEL_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Number of processors the model reports (`KeQueryMaximumProcessorCountEx`).
pub static PROCESSORS: AtomicUsize = AtomicUsize::new(1);

/// Makes the calling thread simulate processor `cpu`.
pub fn set_current_cpu(cpu: u32) {
    CPU.with(|c| c.set(cpu));
}

/// The calling thread's simulated processor.
#[must_use]
pub fn current_cpu() -> u32 {
    CPU.with(Cell::get)
}

/// The calling thread's simulated IRQL.
#[must_use]
pub fn current_irql() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets the calling thread's simulated IRQL; returns the previous one.
pub fn set_irql(irql: KIRQL) -> KIRQL {
    IRQL.with(|c| c.replace(irql))
}

/// Calls driver code `f` at `irql` on the calling thread (and outside model scope, so that what
/// the driver does is the driver's: see [`in_model`]).
pub fn at_irql<R>(irql: KIRQL, f: impl FnOnce() -> R) -> R {
    let old = set_irql(irql);
    let depth = MODEL_DEPTH.with(|d| d.replace(0));
    let r = f();
    MODEL_DEPTH.with(|d| d.set(depth));
    set_irql(old);
    r
}

/// `ExAllocatePool2` calls since the process started (the data path must make none).
pub static POOL_ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A live pool allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolBlock {
    /// Size in bytes.
    pub size: usize,
    /// Pool tag.
    pub tag: u32,
}

static POOL: Mutex<Option<HashMap<usize, PoolBlock>>> = Mutex::new(None);

fn pool<R>(f: impl FnOnce(&mut HashMap<usize, PoolBlock>) -> R) -> R {
    let mut g = POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(g.get_or_insert_with(HashMap::new))
}

/// Live allocations (address, block).
#[must_use]
pub fn pool_allocations() -> Vec<(usize, PoolBlock)> {
    pool(|p| p.iter().map(|(a, b)| (*a, *b)).collect())
}

/// Forgets every allocation record (the memory is not freed: a new model starts clean even
/// after a test that leaked on purpose).
pub fn pool_reset() {
    pool(HashMap::clear);
}

/// Tag as its four characters.
#[must_use]
pub fn tag_str(tag: u32) -> String {
    tag.to_le_bytes().iter().map(|b| if b.is_ascii_graphic() { char::from(*b) } else { '?' }).collect()
}

/// `ExAllocatePool2`: zeroed, 16-byte aligned, tracked.
#[unsafe(no_mangle)]
pub extern "system" fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: u32) -> *mut c_void {
    let _scope = ModelScope::enter();
    POOL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if Flags & POOL_FLAG_NON_PAGED == 0 {
        violation(
            "ExAllocatePool2",
            format!("paged pool requested (flags {Flags:#x}); the data path needs non-paged"),
        );
    }
    if Tag == 0 {
        violation("ExAllocatePool2", "zero pool tag".into());
    }
    if current_irql() > DISPATCH_LEVEL {
        violation("ExAllocatePool2", "called above DISPATCH_LEVEL".into());
    }
    let Ok(layout) = Layout::from_size_align(NumberOfBytes.max(1), 16) else {
        return std::ptr::null_mut();
    };
    // SAFETY: non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    if !p.is_null() {
        pool(|m| m.insert(p.addr(), PoolBlock { size: NumberOfBytes, tag: Tag }));
    }
    p.cast()
}

/// `ExFreePoolWithTag`: checks the block is live and the tag matches.
#[unsafe(no_mangle)]
pub extern "system" fn ExFreePoolWithTag(P: *mut c_void, Tag: u32) {
    let _scope = ModelScope::enter();
    let Some(block) = pool(|m| m.remove(&P.addr())) else {
        violation("ExFreePoolWithTag", format!("{P:p} is not a live pool block (double free?)"));
        return;
    };
    if block.tag != Tag {
        violation(
            "ExFreePoolWithTag",
            format!("{P:p} allocated with tag '{}' freed with '{}'", tag_str(block.tag), tag_str(Tag)),
        );
    }
    let layout = Layout::from_size_align(block.size.max(1), 16).expect("layout was valid at allocation");
    // SAFETY: allocated by ExAllocatePool2 with this layout, removed from the table above.
    unsafe { dealloc(P.cast(), layout) };
}

static DEBUG_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `DbgPrintEx` (the fixed-arity form the driver declares: `"%s"` and one string).
///
/// # Safety
/// `Format` and `Text` must be NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DbgPrintEx(
    ComponentId: u32,
    Level: u32,
    Format: *const u8,
    Text: *const u8,
) -> u32 {
    let _scope = ModelScope::enter();
    // SAFETY: the caller passes NUL-terminated strings.
    let format = unsafe { CStr::from_ptr(Format.cast()) }.to_string_lossy();
    if format != "%s" {
        violation("DbgPrintEx", format!("format {format:?}: the declaration only carries one %s argument"));
    }
    // SAFETY: as above.
    let text = unsafe { CStr::from_ptr(Text.cast()) }.to_string_lossy().into_owned();
    if std::env::var_os("NBSHM_MODEL_DEBUG").is_some() {
        eprint!("[DbgPrintEx {ComponentId}/{Level}] {text}");
    }
    DEBUG_LOG.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(text);
    0
}

/// Takes the debug output printed so far.
#[must_use]
pub fn take_debug_log() -> Vec<String> {
    std::mem::take(&mut *DEBUG_LOG.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// `KeBugCheckEx`: the machine would stop; the model panics with the code.
#[unsafe(no_mangle)]
pub extern "system" fn KeBugCheckEx(BugCheckCode: u32, P1: usize, P2: usize, P3: usize, P4: usize) -> ! {
    let _scope = ModelScope::enter();
    panic!("KeBugCheckEx({BugCheckCode:#010x}, {P1:#x}, {P2:#x}, {P3:#x}, {P4:#x})");
}

/// `KeGetCurrentProcessorNumberEx`.
///
/// # Safety
/// `ProcNumber` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeGetCurrentProcessorNumberEx(ProcNumber: *mut PROCESSOR_NUMBER) -> u32 {
    let _scope = ModelScope::enter();
    let cpu = current_cpu();
    if !ProcNumber.is_null() {
        // SAFETY: the caller passes a writable PROCESSOR_NUMBER.
        unsafe {
            ProcNumber.write(PROCESSOR_NUMBER {
                Group: 0,
                Number: u8::try_from(cpu).unwrap_or(u8::MAX),
                Reserved: 0,
            });
        }
    }
    cpu
}

/// `KeQueryMaximumProcessorCountEx`.
#[unsafe(no_mangle)]
pub extern "system" fn KeQueryMaximumProcessorCountEx(GroupNumber: u16) -> u32 {
    let _scope = ModelScope::enter();
    let _ = GroupNumber;
    u32::try_from(PROCESSORS.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
}

thread_local! {
    static THREAD_ID: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

fn lock_word(l: *mut KSPIN_LOCK) -> &'static AtomicUsize {
    // SAFETY: a KSPIN_LOCK is a usize the caller keeps alive while it is used; AtomicUsize has
    // the same layout.
    unsafe { &*l.cast::<AtomicUsize>() }
}

/// `KeAcquireSpinLockRaiseToDpc`: raises to DISPATCH and spins.
///
/// # Safety
/// `SpinLock` must be a live, initialized spin lock.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KSPIN_LOCK) -> KIRQL {
    let _scope = ModelScope::enter();
    let me = THREAD_ID.with(|t| *t);
    let word = lock_word(SpinLock);
    if word.load(Ordering::Relaxed) == me {
        violation("KeAcquireSpinLockRaiseToDpc", "lock already held by this thread (deadlock)".into());
        panic!("recursive spin lock acquisition");
    }
    if current_irql() > DISPATCH_LEVEL {
        violation("KeAcquireSpinLockRaiseToDpc", "called above DISPATCH_LEVEL".into());
    }
    let old = set_irql(DISPATCH_LEVEL);
    while word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
    old
}

/// `KeReleaseSpinLock`: the lock must be held by this thread.
///
/// # Safety
/// `SpinLock` must be a live spin lock.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReleaseSpinLock(SpinLock: *mut KSPIN_LOCK, NewIrql: KIRQL) {
    let _scope = ModelScope::enter();
    let me = THREAD_ID.with(|t| *t);
    let word = lock_word(SpinLock);
    if word.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed).is_err() {
        violation("KeReleaseSpinLock", "lock not held by this thread".into());
    }
    if current_irql() != DISPATCH_LEVEL {
        violation("KeReleaseSpinLock", "not at DISPATCH_LEVEL while holding a spin lock".into());
    }
    set_irql(NewIrql);
}

/// `KeFlushQueuedDpcs`: waits for any timer callback the model is running.
#[unsafe(no_mangle)]
pub extern "system" fn KeFlushQueuedDpcs() {
    let _scope = ModelScope::enter();
    if current_irql() != PASSIVE_LEVEL {
        violation("KeFlushQueuedDpcs", "must be called at PASSIVE_LEVEL".into());
    }
    super::ndis::flush_timer_callbacks();
}
