//! The per-attachment filter module context and its I/O gate.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::pool::{self, AlignedBlock};
use crate::stats::{BatchCounts, CpuStats, DirSnapshot, Direction, HandleEntry, HandleTable, PerCpuStats};
use crate::sync::SpinLock;
use crate::sys::{KeGetCurrentProcessorNumberEx, NDIS_HANDLE, UNICODE_STRING};

/// `'NbsM'`: marks a live module context (cleared before it is freed).
pub const MODULE_SIGNATURE: u32 = pool::TAG_MODULE;

/// Module states (the NDIS filter module state machine; ndis-reference A.4).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Inside FilterAttach.
    Attaching = 1,
    /// Attached, not running: sends are completed with NDIS_STATUS_PAUSED, receives returned.
    Paused = 2,
    /// Inside FilterRestart.
    Restarting = 3,
    /// Traffic passes and is walked.
    Running = 4,
    /// FilterPause returned pending; waiting for the module's NBLs to come back.
    Pausing = 5,
    /// Inside FilterDetach.
    Detaching = 6,
}

impl ModuleState {
    /// From the stored value.
    #[must_use]
    pub const fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Attaching,
            2 => Self::Paused,
            3 => Self::Restarting,
            4 => Self::Running,
            5 => Self::Pausing,
            _ => Self::Detaching,
        }
    }
}

/// Counts everything of a module that is in flight, and admits new traffic only while running.
///
/// One 64-bit word: bit 63 = running (set by FilterRestart, cleared by FilterPause), the low
/// bits = callbacks in progress + NBLs passed on and not yet back (sends below us not yet
/// completed, receives above us not yet returned). FilterPause clears the running bit; whoever
/// then brings the count to zero (FilterPause itself, or the last completion/return) completes
/// the pause. New traffic sees the bit clear and takes the paused path, so the count only falls
/// while pausing and the pause always finishes.
#[derive(Debug, Default)]
pub struct IoGate(AtomicU64);

const RUNNING: u64 = 1 << 63;

impl IoGate {
    /// Admits one callback if the module is running.
    #[must_use]
    #[inline]
    pub fn try_enter(&self) -> bool {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            if v & RUNNING == 0 {
                return false;
            }
            match self.0.compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
    }

    /// Adds `n` NBLs that are being passed on (call only while admitted: the count is >= 1).
    #[inline]
    pub fn add(&self, n: u64) {
        if n != 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Releases `n` (a callback leaving, or NBLs that came back). Returns true when this
    /// brought a pausing module to zero: the caller must then complete the pause.
    #[must_use]
    #[inline]
    pub fn release(&self, n: u64) -> bool {
        n != 0 && self.0.fetch_sub(n, Ordering::Release) == n
    }

    /// FilterRestart: open the gate.
    pub fn open(&self) {
        self.0.fetch_or(RUNNING, Ordering::Release);
    }

    /// FilterPause: close the gate. Returns true if nothing is in flight (pause done now);
    /// otherwise the last [`release`](Self::release) reports it.
    #[must_use]
    pub fn close(&self) -> bool {
        self.0.fetch_and(!RUNNING, Ordering::AcqRel) == RUNNING
    }

    /// In-flight count (callbacks + NBLs passed on), for diagnostics.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.0.load(Ordering::Relaxed) & !RUNNING
    }

    /// Whether the gate is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed) & RUNNING != 0
    }
}

/// Maximum UTF-16 units of the adapter name kept per module.
pub const NAME_CAPACITY: usize = 128;

/// A bounded copy of an `NDIS_STRING`.
#[derive(Clone, Copy, Debug)]
pub struct WideName {
    len: u16,
    buf: [u16; NAME_CAPACITY],
}

impl WideName {
    /// The empty name.
    pub const EMPTY: Self = Self { len: 0, buf: [0; NAME_CAPACITY] };

    /// Copies (and truncates to [`NAME_CAPACITY`]) the string `s` points to.
    ///
    /// # Safety
    /// `s` must be NULL or point to a valid `UNICODE_STRING` whose `Buffer` holds `Length`
    /// bytes.
    #[must_use]
    pub unsafe fn from_unicode_string(s: *const UNICODE_STRING) -> Self {
        let mut name = Self::EMPTY;
        if s.is_null() {
            return name;
        }
        // SAFETY: the caller guarantees `s` is valid.
        let us = unsafe { &*s };
        if us.Buffer.is_null() {
            return name;
        }
        let n = (usize::from(us.Length) / 2).min(NAME_CAPACITY);
        // SAFETY: the caller guarantees `Buffer` holds `Length` bytes, and `n * 2 <= Length`.
        let src = unsafe { core::slice::from_raw_parts(us.Buffer.cast_const(), n) };
        if let Some(dst) = name.buf.get_mut(..n) {
            dst.copy_from_slice(src);
        }
        name.len = u16::try_from(n).unwrap_or(0);
        name
    }

    /// The UTF-16 units.
    #[must_use]
    pub fn as_slice(&self) -> &[u16] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// Everything the driver keeps per attached adapter (non-paged pool, tag `NbsM`).
#[derive(Debug)]
pub struct FilterModule {
    /// [`MODULE_SIGNATURE`] while live.
    pub(crate) signature: u32,
    /// Stable id of this attachment (control device, ETW).
    pub id: u32,
    /// `NdisFilterHandle` from FilterAttach: what every NdisF* call takes.
    pub(crate) filter_handle: NDIS_HANDLE,
    /// Traffic admission and in-flight count.
    pub(crate) io: IoGate,
    /// [`ModuleState`] as u32.
    pub(crate) state: AtomicU32,
    /// The filter module's own interface index.
    pub if_index: u32,
    /// Interface index of the miniport at the bottom of the stack.
    pub base_if_index: u32,
    /// `NDIS_MEDIUM`.
    pub media_type: i32,
    /// Adapter friendly name (`BaseMiniportInstanceName`).
    pub name: WideName,
    /// Per-CPU counters.
    pub stats: PerCpuStats,
    /// Per-handle usage.
    pub handles: HandleTable,
    /// Pool blocks backing `stats` and `handles`.
    pub(crate) stats_block: Option<AlignedBlock>,
    pub(crate) handles_block: Option<AlignedBlock>,
    /// Next module in the driver's list (protected by the list lock).
    pub(crate) next: *mut FilterModule,
    /// Statistics-reset generation (control device), for diagnostics.
    pub(crate) resets: AtomicU32,
    /// `PauseReason` of the pause in progress (for the FilterPaused event of a pended pause).
    pub(crate) pause_reason: AtomicU32,
    /// The usage timer object (NULL if none).
    pub(crate) timer: AtomicPtr<core::ffi::c_void>,
    /// Whether the usage timer should run (set by FilterRestart, cleared by FilterPause). Its
    /// lock orders arming against disarming, so that a control-device re-arm (new
    /// `UsageIntervalMs`) never re-queues the timer of a module that is pausing.
    pub(crate) timer_armed: SpinLock<bool>,
}

/// What a module looks like from outside (control device, rundown, tests).
#[derive(Clone, Copy, Debug)]
pub struct ModuleSummary {
    /// Module id.
    pub id: u32,
    /// Interface index.
    pub if_index: u32,
    /// Base miniport interface index.
    pub base_if_index: u32,
    /// `NDIS_MEDIUM`.
    pub media_type: i32,
    /// State.
    pub state: ModuleState,
    /// Adapter name.
    pub name: WideName,
    /// Receive totals.
    pub receive: DirSnapshot,
    /// Send totals.
    pub send: DirSnapshot,
    /// Distinct handles recorded.
    pub distinct_handles: u32,
    /// Handle-table capacity.
    pub handle_capacity: u32,
    /// Segments whose handle did not fit the table.
    pub handle_overflow_segments: u64,
    /// NBLs and callbacks in flight.
    pub in_flight: u64,
}

impl FilterModule {
    /// Allocates a module with its statistics and handle table (PASSIVE_LEVEL).
    #[must_use]
    pub(crate) fn allocate(
        id: u32,
        filter_handle: NDIS_HANDLE,
        cpus: usize,
        handle_capacity: usize,
    ) -> Option<NonNull<Self>> {
        let cpus = cpus.max(1);
        let stats_block = pool::alloc_aligned(
            PerCpuStats::bytes_for(cpus),
            core::mem::align_of::<CpuStats>(),
            pool::TAG_STATS,
        )?;
        let Some(handles_block) = pool::alloc_aligned(
            HandleTable::bytes_for(handle_capacity),
            core::mem::align_of::<HandleEntry>(),
            pool::TAG_HANDLES,
        ) else {
            // SAFETY: just allocated, nothing refers to it.
            unsafe { stats_block.free() };
            return None;
        };
        let Some(mem) = pool::alloc_zeroed(core::mem::size_of::<Self>(), pool::TAG_MODULE) else {
            // SAFETY: just allocated, nothing refers to them.
            unsafe {
                stats_block.free();
            }
            // SAFETY: as above.
            unsafe { handles_block.free() };
            return None;
        };
        let module = mem.cast::<Self>();
        // SAFETY: the block is zeroed, 64-byte aligned, sized for `cpus` slots, and lives until
        // `free`.
        let stats = unsafe { PerCpuStats::from_raw(stats_block.as_ptr(), cpus) };
        // SAFETY: the block is zeroed, 64-byte aligned, sized for `handle_capacity` entries and
        // lives until `free`; `handle_capacity` is a power of two (config clamps it).
        let handles = unsafe { HandleTable::from_raw(handles_block.as_ptr(), handle_capacity) };
        // SAFETY: `mem` is a fresh allocation of size_of::<Self>() bytes, 16-byte aligned
        // (pool alignment, which covers Self's alignment).
        unsafe {
            module.as_ptr().write(Self {
                signature: MODULE_SIGNATURE,
                id,
                filter_handle,
                io: IoGate::default(),
                state: AtomicU32::new(ModuleState::Attaching as u32),
                if_index: 0,
                base_if_index: 0,
                media_type: 0,
                name: WideName::EMPTY,
                stats,
                handles,
                stats_block: Some(stats_block),
                handles_block: Some(handles_block),
                next: core::ptr::null_mut(),
                resets: AtomicU32::new(0),
                pause_reason: AtomicU32::new(0),
                timer: AtomicPtr::new(core::ptr::null_mut()),
                timer_armed: SpinLock::new(false),
            });
        }
        Some(module)
    }

    /// Frees a module and its tables.
    ///
    /// # Safety
    /// `module` must come from [`allocate`](Self::allocate), be unreachable (out of the list,
    /// no callback running, NDIS done with it) and not be used afterwards.
    pub(crate) unsafe fn free(module: NonNull<Self>) {
        // SAFETY: the caller guarantees exclusive access.
        let m = unsafe { &mut *module.as_ptr() };
        m.signature = 0;
        if let Some(b) = m.stats_block.take() {
            // SAFETY: nothing refers to the stats any more (caller's guarantee).
            unsafe { b.free() };
        }
        if let Some(b) = m.handles_block.take() {
            // SAFETY: as above.
            unsafe { b.free() };
        }
        // SAFETY: `module` came from `alloc_zeroed` with TAG_MODULE.
        unsafe { pool::free(module.cast(), pool::TAG_MODULE) };
    }

    /// The module NDIS passes back as `FilterModuleContext`.
    ///
    /// # Safety
    /// `ctx` must be a context this driver gave `NdisFSetAttributes` and whose module has not
    /// been detached.
    #[must_use]
    #[inline(always)]
    pub(crate) unsafe fn from_context<'a>(ctx: NDIS_HANDLE) -> &'a Self {
        // SAFETY: the caller guarantees `ctx` is a live module.
        let m = unsafe { &*ctx.cast::<Self>() };
        debug_assert_eq!(m.signature, MODULE_SIGNATURE, "FilterModuleContext is not a live nbshm module");
        m
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> ModuleState {
        ModuleState::from_u32(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, s: ModuleState) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// Adds a callback's counts: into this CPU's own slot at DISPATCH_LEVEL (plain stores, see
    /// `crate::stats`), into the shared slot otherwise.
    #[inline]
    pub(crate) fn add_counts(&self, dir: Direction, batch: &BatchCounts, at_dispatch: bool) {
        if at_dispatch {
            // SAFETY: NULL asks only for the index; callable at any IRQL.
            let cpu = unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) };
            if let Some(d) = self.stats.exclusive_slot(cpu).and_then(|s| s.dir.get(dir.index())) {
                d.add_batch_exclusive(batch);
                return;
            }
        }
        if let Some(d) = self.stats.shared_slot().dir.get(dir.index()) {
            d.add_batch(batch);
        }
    }

    /// Counts `n` NBLs rejected because the module was not running (rare: the shared slot).
    #[inline]
    pub(crate) fn count_rejected(&self, dir: Direction, n: u64) {
        if let Some(d) = self.stats.shared_slot().dir.get(dir.index()) {
            d.rejected_nbls.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Summary for the control device and rundown.
    #[must_use]
    pub fn summary(&self) -> ModuleSummary {
        ModuleSummary {
            id: self.id,
            if_index: self.if_index,
            base_if_index: self.base_if_index,
            media_type: self.media_type,
            state: self.state(),
            name: self.name,
            receive: self.stats.snapshot(Direction::Receive),
            send: self.stats.snapshot(Direction::Send),
            distinct_handles: self.handles.distinct(),
            handle_capacity: u32::try_from(self.handles.capacity()).unwrap_or(u32::MAX),
            handle_overflow_segments: self.handles.overflow_segments(),
            in_flight: self.io.in_flight(),
        }
    }

    /// Statistics resets since attach.
    #[must_use]
    pub fn resets(&self) -> u32 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Zeroes the statistics and the handle table.
    pub fn reset_stats(&self) {
        self.stats.reset();
        self.handles.reset();
        self.resets.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_admits_only_while_open_and_reports_the_last_release() {
        let g = IoGate::default();
        assert!(!g.try_enter());
        g.open();
        assert!(g.try_enter());
        g.add(3);
        assert!(!g.release(1));
        assert!(!g.close(), "3 NBLs still out");
        assert!(!g.try_enter(), "closed");
        assert!(!g.release(2));
        assert!(g.release(1), "the last one completes the pause");
        assert_eq!(g.in_flight(), 0);
    }

    #[test]
    fn gate_close_with_nothing_in_flight_is_immediate() {
        let g = IoGate::default();
        g.open();
        assert!(g.try_enter());
        assert!(!g.release(1), "running: no pause to complete");
        assert!(g.close());
    }
}
