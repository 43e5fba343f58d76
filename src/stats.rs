//! Per-module statistics: per-CPU counters by direction, and a bounded per-handle table.
//!
//! Hot-path rules: no allocation (both tables are allocated at attach, at PASSIVE), no lock, no
//! panic. The data path accumulates a whole callback's worth of counts in a [`BatchCounts`] on
//! its stack and flushes them once per callback:
//! * a callback whose flags say it runs at DISPATCH_LEVEL cannot be preempted or migrate, so it
//!   owns its CPU's slot (cache-line aligned, so CPUs do not share lines) and updates it with plain
//!   relaxed loads and stores, no locked instruction;
//! * a callback at PASSIVE may migrate or be preempted mid-update, so it adds into one shared
//!   slot with atomic read-modify-writes instead (it never touches a per-CPU slot, so the two
//!   kinds of update never race on one counter).
//!
//! Handle usage goes through a per-callback cache of the last few handles ([`HandleRuns`]), so
//! the shared handle table sees one update per handle per callback, not one per segment.
//!
//! Readers (IOCTL, ETW snapshots) sum the slots. A snapshot taken while traffic flows is not a
//! single instant: each counter is exact, but two counters may come from slightly different
//! moments (for example `segments` may include a batch whose `net_buffers` is not yet added).
//!
//! A reset never writes a counter the data path adds to: zeroing a per-CPU counter from the
//! resetting thread would race the owning CPU's plain load-add-store, which could store the old
//! total back and undo the reset. Instead the counters only ever grow, and a reset records their
//! current sums in a baseline slot that readers subtract. A batch racing a reset may land partly
//! before and partly after it; nothing counted before a reset survives it, except through the
//! longest-chain maximum (reset by zeroing, which a racing batch can only raise to its own
//! value). Both are documented in docs/architecture.md ("Statistics consistency").

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::shmem::{ANOMALY_KINDS, Anomalies};

/// Traffic direction.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// FilterReceiveNetBufferLists (from the miniport up).
    Receive = 0,
    /// FilterSendNetBufferLists (from the protocol down).
    Send = 1,
}

impl Direction {
    /// Both directions, in counter order.
    pub const ALL: [Self; 2] = [Self::Receive, Self::Send];

    /// Name used in ETW and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Send => "send",
        }
    }

    /// Counter index.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one direction on one CPU.
#[derive(Debug, Default)]
pub struct DirCounters {
    /// NBLs that passed through (walked or not).
    pub nbls: AtomicU64,
    /// NET_BUFFERs that passed through.
    pub net_buffers: AtomicU64,
    /// NET_BUFFERs whose shared-memory slot was walked (shared-memory info valid and walk on).
    pub walked: AtomicU64,
    /// Walked NET_BUFFERs with at least one segment.
    pub with_shared_memory: AtomicU64,
    /// Segments walked.
    pub segments: AtomicU64,
    /// Sum of segment lengths.
    pub shared_bytes: AtomicU64,
    /// Longest chain walked (segments, at most the bound).
    pub max_chain: AtomicU32,
    /// Anomalies by [`AnomalyKind`](crate::shmem::AnomalyKind) index.
    pub anomalies: [AtomicU64; ANOMALY_KINDS],
    /// NBLs rejected because the module was not running (sends completed with
    /// `NDIS_STATUS_PAUSED`, receives returned or left).
    pub rejected_nbls: AtomicU64,
}

/// One CPU's counters, both directions, on its own cache lines.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct CpuStats {
    /// By [`Direction::index`].
    pub dir: [DirCounters; 2],
}

/// What one callback adds to the counters, accumulated on the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// NBLs.
    pub nbls: u64,
    /// NET_BUFFERs.
    pub net_buffers: u64,
    /// NET_BUFFERs walked.
    pub walked: u64,
    /// Walked NET_BUFFERs with shared memory.
    pub with_shared_memory: u64,
    /// Segments.
    pub segments: u64,
    /// Shared bytes.
    pub shared_bytes: u64,
    /// Longest chain.
    pub max_chain: u32,
    /// Anomalies by kind.
    pub anomalies: [u64; ANOMALY_KINDS],
}

impl BatchCounts {
    /// Adds one walked NET_BUFFER's chain summary.
    #[inline]
    pub fn add_chain(&mut self, segments: u32, shared_bytes: u64, anomalies: Anomalies) {
        self.walked += 1;
        if segments > 0 {
            self.with_shared_memory += 1;
        }
        self.segments += u64::from(segments);
        self.shared_bytes += shared_bytes;
        self.max_chain = self.max_chain.max(segments);
        if !anomalies.is_empty() {
            for kind in anomalies.iter() {
                if let Some(slot) = self.anomalies.get_mut(kind.index()) {
                    *slot += 1;
                }
            }
        }
    }
}

/// Adds `v` to `c` unless it is zero (a zero add is a wasted locked instruction).
#[inline(always)]
fn add(c: &AtomicU64, v: u64) {
    if v != 0 {
        c.fetch_add(v, Relaxed);
    }
}

/// Adds `v` to `c` with a plain load and store: only for a counter no one else writes.
#[inline(always)]
fn add_exclusive(c: &AtomicU64, v: u64) {
    if v != 0 {
        c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
    }
}

impl DirCounters {
    /// Adds a batch into a slot this CPU owns (DISPATCH_LEVEL): plain loads and stores.
    #[inline]
    pub fn add_batch_exclusive(&self, b: &BatchCounts) {
        add_exclusive(&self.nbls, b.nbls);
        add_exclusive(&self.net_buffers, b.net_buffers);
        add_exclusive(&self.walked, b.walked);
        add_exclusive(&self.with_shared_memory, b.with_shared_memory);
        add_exclusive(&self.segments, b.segments);
        add_exclusive(&self.shared_bytes, b.shared_bytes);
        if b.max_chain > self.max_chain.load(Relaxed) {
            self.max_chain.store(b.max_chain, Relaxed);
        }
        for (c, v) in self.anomalies.iter().zip(b.anomalies) {
            add_exclusive(c, v);
        }
    }

    /// Adds a batch into the shared slot (any IRQL): one relaxed atomic add per non-zero counter.
    #[inline]
    pub fn add_batch(&self, b: &BatchCounts) {
        add(&self.nbls, b.nbls);
        add(&self.net_buffers, b.net_buffers);
        add(&self.walked, b.walked);
        add(&self.with_shared_memory, b.with_shared_memory);
        add(&self.segments, b.segments);
        add(&self.shared_bytes, b.shared_bytes);
        if b.max_chain > self.max_chain.load(Relaxed) {
            self.max_chain.fetch_max(b.max_chain, Relaxed);
        }
        for (c, v) in self.anomalies.iter().zip(b.anomalies) {
            add(c, v);
        }
    }

    /// Stores `s` (the baseline slot only: no data path writes it).
    fn store(&self, s: &DirSnapshot) {
        self.nbls.store(s.nbls, Relaxed);
        self.net_buffers.store(s.net_buffers, Relaxed);
        self.walked.store(s.walked, Relaxed);
        self.with_shared_memory.store(s.with_shared_memory, Relaxed);
        self.segments.store(s.segments, Relaxed);
        self.shared_bytes.store(s.shared_bytes, Relaxed);
        for (c, v) in self.anomalies.iter().zip(s.anomalies) {
            c.store(v, Relaxed);
        }
        self.rejected_nbls.store(s.rejected_nbls, Relaxed);
    }
}

/// Totals of one direction, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirSnapshot {
    /// NBLs that passed through.
    pub nbls: u64,
    /// NET_BUFFERs that passed through.
    pub net_buffers: u64,
    /// NET_BUFFERs walked.
    pub walked: u64,
    /// Walked NET_BUFFERs with shared memory.
    pub with_shared_memory: u64,
    /// Segments walked.
    pub segments: u64,
    /// Shared bytes.
    pub shared_bytes: u64,
    /// Longest chain walked.
    pub max_chain: u32,
    /// Anomalies by kind.
    pub anomalies: [u64; ANOMALY_KINDS],
    /// NBLs rejected while not running.
    pub rejected_nbls: u64,
}

impl DirSnapshot {
    /// Sum of all anomaly counters.
    #[must_use]
    pub fn anomalies_total(&self) -> u64 {
        self.anomalies.iter().sum()
    }

    fn accumulate(&mut self, c: &DirCounters) {
        self.nbls += c.nbls.load(Relaxed);
        self.net_buffers += c.net_buffers.load(Relaxed);
        self.walked += c.walked.load(Relaxed);
        self.with_shared_memory += c.with_shared_memory.load(Relaxed);
        self.segments += c.segments.load(Relaxed);
        self.shared_bytes += c.shared_bytes.load(Relaxed);
        self.max_chain = self.max_chain.max(c.max_chain.load(Relaxed));
        for (s, a) in self.anomalies.iter_mut().zip(&c.anomalies) {
            *s += a.load(Relaxed);
        }
        self.rejected_nbls += c.rejected_nbls.load(Relaxed);
    }

    /// `self - base`, counter by counter (a counter below its base, which a reader racing a reset
    /// could see, gives 0); `max_chain` is taken as is.
    fn minus(mut self, base: &Self) -> Self {
        self.nbls = self.nbls.saturating_sub(base.nbls);
        self.net_buffers = self.net_buffers.saturating_sub(base.net_buffers);
        self.walked = self.walked.saturating_sub(base.walked);
        self.with_shared_memory = self.with_shared_memory.saturating_sub(base.with_shared_memory);
        self.segments = self.segments.saturating_sub(base.segments);
        self.shared_bytes = self.shared_bytes.saturating_sub(base.shared_bytes);
        for (s, b) in self.anomalies.iter_mut().zip(&base.anomalies) {
            *s = s.saturating_sub(*b);
        }
        self.rejected_nbls = self.rejected_nbls.saturating_sub(base.rejected_nbls);
        self
    }
}

/// The counter slots of one module: one per processor, the shared slot PASSIVE callers use, and
/// the baseline of the last reset (memory owned by the module, allocated at attach).
#[derive(Debug)]
pub struct PerCpuStats {
    slots: *const CpuStats,
    /// Processors; the shared slot is at index `count`, the baseline at `count + 1`.
    count: usize,
}

// SAFETY: the slots are only accessed through atomics.
unsafe impl Send for PerCpuStats {}
// SAFETY: as above.
unsafe impl Sync for PerCpuStats {}

impl PerCpuStats {
    /// Bytes needed for `cpus` per-CPU slots, the shared slot and the baseline.
    #[must_use]
    pub const fn bytes_for(cpus: usize) -> usize {
        (cpus + 2) * core::mem::size_of::<CpuStats>()
    }

    /// Wraps `cpus` slots at `mem`.
    ///
    /// # Safety
    /// `mem` must be zeroed, 64-byte aligned memory of [`bytes_for(cpus)`](Self::bytes_for)
    /// bytes that outlives the returned value (an all-zero `CpuStats` is a valid value: all its
    /// fields are atomics). `cpus` must be at least 1.
    #[must_use]
    pub const unsafe fn from_raw(mem: *mut u8, cpus: usize) -> Self {
        Self { slots: mem.cast_const().cast(), count: cpus }
    }

    /// The memory passed to [`from_raw`](Self::from_raw).
    #[must_use]
    pub fn as_raw(&self) -> *mut u8 {
        self.slots.cast_mut().cast()
    }

    fn at(&self, i: usize) -> &CpuStats {
        let slot = self.slots.wrapping_add(i.min(self.count + 1));
        // SAFETY: the index is at most `count + 1`, and `from_raw`'s contract makes every one of
        // the `count + 2` slots valid for our lifetime.
        unsafe { &*slot }
    }

    fn baseline(&self) -> &CpuStats {
        self.at(self.count + 1)
    }

    /// Sums one direction over the counting slots (per-CPU and shared): totals since attach.
    fn raw(&self, dir: Direction) -> DirSnapshot {
        let mut s = DirSnapshot::default();
        for i in 0..=self.count {
            if let Some(d) = self.at(i).dir.get(dir.index()) {
                s.accumulate(d);
            }
        }
        s
    }

    /// The slot processor `cpu` owns while at DISPATCH_LEVEL; None for a processor beyond the
    /// count taken at attach (hot-added): it uses the shared slot instead.
    #[must_use]
    #[inline]
    pub fn exclusive_slot(&self, cpu: u32) -> Option<&CpuStats> {
        let i = cpu as usize;
        (i < self.count).then(|| self.at(i))
    }

    /// The slot for callers at PASSIVE (or without a slot of their own): atomic updates only.
    #[must_use]
    #[inline]
    pub fn shared_slot(&self) -> &CpuStats {
        self.at(self.count)
    }

    /// Number of per-CPU slots.
    #[must_use]
    pub const fn cpus(&self) -> usize {
        self.count
    }

    /// One direction's counts since attach or the last reset.
    #[must_use]
    pub fn snapshot(&self, dir: Direction) -> DirSnapshot {
        let mut base = DirSnapshot::default();
        if let Some(d) = self.baseline().dir.get(dir.index()) {
            base.accumulate(d);
        }
        self.raw(dir).minus(&base)
    }

    /// Starts the counts afresh: the current sums become the baseline, the longest-chain maxima
    /// go back to 0 (see the module docs for what a concurrent batch sees). PASSIVE_LEVEL.
    pub fn reset(&self) {
        for dir in Direction::ALL {
            let raw = self.raw(dir);
            if let Some(d) = self.baseline().dir.get(dir.index()) {
                d.store(&raw);
            }
        }
        for i in 0..=self.count {
            for d in &self.at(i).dir {
                d.max_chain.store(0, Relaxed);
            }
        }
    }
}

// --- Per-handle table ---------------------------------------------------------------------------

/// Usage of one shared-memory handle within one module.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HandleEntry {
    /// The handle value; 0 = free slot.
    pub key: AtomicUsize,
    /// Segments by direction.
    pub segments: [AtomicU64; 2],
    /// Bytes by direction.
    pub bytes: [AtomicU64; 2],
    /// `u32::MAX - smallest offset seen` (so that a zeroed entry means "none yet").
    pub min_offset_inv: AtomicU32,
    /// Largest `offset + length` seen.
    pub max_end: AtomicU64,
}

/// Snapshot of one handle's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleSnapshot {
    /// The handle value.
    pub handle: usize,
    /// Segments by direction.
    pub segments: [u64; 2],
    /// Bytes by direction.
    pub bytes: [u64; 2],
    /// Smallest offset seen.
    pub min_offset: u32,
    /// Largest `offset + length` seen.
    pub max_end: u64,
}

/// Probes per lookup before a handle counts as overflow (keeps the worst case bounded).
pub const HANDLE_PROBES: usize = 16;

/// A fixed-capacity, lock-free open-addressing table of handles (linear probing, insert-only
/// until reset). When a handle finds no slot within [`HANDLE_PROBES`] probes its segments are
/// counted in [`HandleTable::overflow_segments`] instead: nothing is lost, it is just not
/// attributed to a handle.
#[derive(Debug)]
pub struct HandleTable {
    entries: *const HandleEntry,
    capacity: usize,
    used: AtomicU32,
    overflow_segments: AtomicU64,
}

// SAFETY: entries are only accessed through atomics.
unsafe impl Send for HandleTable {}
// SAFETY: as above.
unsafe impl Sync for HandleTable {}

/// Segments of one handle accumulated on the stack before they go to the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct HandleRun {
    handle: usize,
    segments: u64,
    bytes: u64,
    min_offset: u32,
    max_end: u64,
}

impl HandleRun {
    /// Adds a segment; returns the previous run when `handle` differs from it (to flush).
    #[inline]
    pub fn add(&mut self, handle: usize, offset: u32, length: u32) -> Option<Self> {
        let end = u64::from(offset) + u64::from(length);
        if self.segments != 0 && self.handle == handle {
            self.segments += 1;
            self.bytes += u64::from(length);
            self.min_offset = self.min_offset.min(offset);
            self.max_end = self.max_end.max(end);
            return None;
        }
        let prev = *self;
        *self = Self { handle, segments: 1, bytes: u64::from(length), min_offset: offset, max_end: end };
        (prev.segments != 0).then_some(prev)
    }

    /// Takes the pending run, if any.
    #[inline]
    pub fn take(&mut self) -> Option<Self> {
        let prev = core::mem::take(self);
        (prev.segments != 0).then_some(prev)
    }
}

/// Handles cached per callback besides the current one.
pub const HANDLE_RUNS: usize = 3;

/// A callback's cache of the handles it saw last, besides the current run (which the data path
/// keeps as a local, in registers: a segment of the same handle costs a compare and a few adds,
/// see [`HandleRun::same`]). A handle that is in neither evicts the oldest run to the table, so a
/// batch spread over a few VMQ buffers costs one table update per buffer per callback.
#[derive(Clone, Copy, Debug, Default)]
pub struct HandleRuns {
    earlier: [HandleRun; HANDLE_RUNS],
    next: usize,
}

impl HandleRun {
    /// Whether `handle` (non-NULL) is this run's; a fresh run has handle 0, which never matches.
    #[must_use]
    #[inline(always)]
    pub const fn same(&self, handle: usize) -> bool {
        self.handle == handle
    }

    /// Adds a segment of this run's handle.
    #[inline(always)]
    pub fn merge(&mut self, offset: u32, length: u32) {
        self.segments += 1;
        self.bytes += u64::from(length);
        self.min_offset = self.min_offset.min(offset);
        self.max_end = self.max_end.max(u64::from(offset) + u64::from(length));
    }
}

impl HandleRuns {
    /// Switches the current run `current` to a segment of another (non-NULL) `handle`: returns
    /// the new current run; `current` joins the earlier ones (evicting the oldest to the table).
    #[inline(never)]
    #[must_use]
    pub fn switch(
        &mut self,
        table: &HandleTable,
        dir: Direction,
        current: HandleRun,
        handle: usize,
        offset: u32,
        length: u32,
    ) -> HandleRun {
        // A handle seen earlier in this callback: take it back.
        if let Some(r) = self.earlier.iter_mut().find(|r| r.segments != 0 && r.handle == handle) {
            let mut back = core::mem::replace(r, current);
            back.merge(offset, length);
            return back;
        }
        let slot = self.next % HANDLE_RUNS;
        self.next = self.next.wrapping_add(1);
        if let Some(r) = self.earlier.get_mut(slot) {
            let old = core::mem::replace(r, current);
            if old.segments != 0 {
                table.record(dir, &old);
            }
        }
        HandleRun {
            handle,
            segments: 1,
            bytes: u64::from(length),
            min_offset: offset,
            max_end: u64::from(offset) + u64::from(length),
        }
    }

    /// Records the current run and every cached one in the table.
    #[inline]
    pub fn flush(&mut self, table: &HandleTable, dir: Direction, current: HandleRun) {
        for r in core::iter::once(current).chain(self.earlier.iter().copied()) {
            if r.segments != 0 {
                table.record(dir, &r);
            }
        }
        self.earlier = [HandleRun::default(); HANDLE_RUNS];
    }
}

impl HandleTable {
    /// Bytes needed for `capacity` entries.
    #[must_use]
    pub const fn bytes_for(capacity: usize) -> usize {
        capacity * core::mem::size_of::<HandleEntry>()
    }

    /// Wraps `capacity` entries at `mem`.
    ///
    /// # Safety
    /// `mem` must be zeroed, 64-byte aligned memory of [`bytes_for(capacity)`](Self::bytes_for)
    /// bytes that outlives the table (an all-zero `HandleEntry` is valid: all atomics).
    /// `capacity` must be a power of two and at least 1.
    #[must_use]
    pub const unsafe fn from_raw(mem: *mut u8, capacity: usize) -> Self {
        Self {
            entries: mem.cast_const().cast(),
            capacity,
            used: AtomicU32::new(0),
            overflow_segments: AtomicU64::new(0),
        }
    }

    /// The memory passed to [`from_raw`](Self::from_raw).
    #[must_use]
    pub fn as_raw(&self) -> *mut u8 {
        self.entries.cast_mut().cast()
    }

    /// Capacity in entries.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// Distinct handles recorded.
    #[must_use]
    pub fn distinct(&self) -> u32 {
        self.used.load(Relaxed)
    }

    /// Segments whose handle found no slot.
    #[must_use]
    pub fn overflow_segments(&self) -> u64 {
        self.overflow_segments.load(Relaxed)
    }

    fn entry(&self, i: usize) -> &HandleEntry {
        let entry = self.entries.wrapping_add(i & (self.capacity - 1));
        // SAFETY: the index is masked into range; `from_raw`'s contract makes every entry valid
        // for our lifetime.
        unsafe { &*entry }
    }

    #[inline]
    const fn hash(handle: usize) -> usize {
        // Handles are pool pointers: drop the always-zero low bits, then a Fibonacci mix.
        // 2^64 / phi (usize is 64 bits: sys::layout refuses other targets).
        const GOLDEN: usize = 0x9E37_79B9_7F4A_7C15;
        ((handle >> 4).wrapping_mul(GOLDEN)) >> 16
    }

    /// Records a run of segments of one (non-NULL) handle.
    #[inline]
    pub fn record(&self, dir: Direction, run: &HandleRun) {
        if run.handle == 0 {
            return;
        }
        let start = Self::hash(run.handle);
        for probe in 0..HANDLE_PROBES.min(self.capacity) {
            let e = self.entry(start.wrapping_add(probe));
            let key = e.key.load(Relaxed);
            let mine = key == run.handle
                || (key == 0
                    && match e.key.compare_exchange(0, run.handle, Relaxed, Relaxed) {
                        Ok(_) => {
                            self.used.fetch_add(1, Relaxed);
                            true
                        }
                        Err(now) => now == run.handle,
                    });
            if mine {
                if let Some(s) = e.segments.get(dir.index()) {
                    s.fetch_add(run.segments, Relaxed);
                }
                if let Some(b) = e.bytes.get(dir.index()) {
                    b.fetch_add(run.bytes, Relaxed);
                }
                let inv = u32::MAX - run.min_offset;
                if inv > e.min_offset_inv.load(Relaxed) {
                    e.min_offset_inv.fetch_max(inv, Relaxed);
                }
                if run.max_end > e.max_end.load(Relaxed) {
                    e.max_end.fetch_max(run.max_end, Relaxed);
                }
                return;
            }
        }
        self.overflow_segments.fetch_add(run.segments, Relaxed);
    }

    /// Snapshot of entry `i` (None for a free slot or `i >= capacity`).
    #[must_use]
    pub fn get(&self, i: usize) -> Option<HandleSnapshot> {
        if i >= self.capacity {
            return None;
        }
        let e = self.entry(i);
        let handle = e.key.load(Relaxed);
        (handle != 0).then(|| HandleSnapshot {
            handle,
            segments: [e.segments[0].load(Relaxed), e.segments[1].load(Relaxed)],
            bytes: [e.bytes[0].load(Relaxed), e.bytes[1].load(Relaxed)],
            min_offset: u32::MAX - e.min_offset_inv.load(Relaxed),
            max_end: e.max_end.load(Relaxed),
        })
    }

    /// Iterates the recorded handles.
    pub fn iter(&self) -> impl Iterator<Item = HandleSnapshot> + '_ {
        (0..self.capacity).filter_map(|i| self.get(i))
    }

    /// Forgets every handle (see the module docs for concurrent updates).
    pub fn reset(&self) {
        for i in 0..self.capacity {
            let e = self.entry(i);
            for c in e.segments.iter().chain(&e.bytes) {
                c.store(0, Relaxed);
            }
            e.min_offset_inv.store(0, Relaxed);
            e.max_end.store(0, Relaxed);
            e.key.store(0, Relaxed);
        }
        self.used.store(0, Relaxed);
        self.overflow_segments.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{Layout, alloc_zeroed, dealloc};

    use super::*;
    use crate::shmem::AnomalyKind;

    struct Mem(*mut u8, Layout);
    impl Mem {
        fn new(bytes: usize) -> Self {
            let l = Layout::from_size_align(bytes, 64).unwrap();
            // SAFETY: non-zero size.
            Self(unsafe { alloc_zeroed(l) }, l)
        }
    }
    impl Drop for Mem {
        fn drop(&mut self) {
            // SAFETY: allocated with this layout.
            unsafe { dealloc(self.0, self.1) }
        }
    }

    #[test]
    fn per_cpu_batches_sum_up() {
        let mem = Mem::new(PerCpuStats::bytes_for(3));
        // SAFETY: zeroed, aligned, sized, outlives `s`.
        let s = unsafe { PerCpuStats::from_raw(mem.0, 3) };
        let mut b = BatchCounts { nbls: 1, net_buffers: 2, ..Default::default() };
        let mut bad = Anomalies::NONE;
        bad.insert(AnomalyKind::NullHandle);
        b.add_chain(3, 300, bad);
        b.add_chain(0, 0, Anomalies::NONE);
        for cpu in [0, 1, 2] {
            s.exclusive_slot(cpu).unwrap().dir[Direction::Send.index()].add_batch_exclusive(&b);
        }
        assert!(s.exclusive_slot(5).is_none(), "a processor past the count has no slot of its own");
        s.shared_slot().dir[Direction::Send.index()].add_batch(&b);
        let snap = s.snapshot(Direction::Send);
        assert_eq!(snap.nbls, 4);
        assert_eq!(snap.net_buffers, 8);
        assert_eq!(snap.walked, 8);
        assert_eq!(snap.with_shared_memory, 4);
        assert_eq!(snap.segments, 12);
        assert_eq!(snap.shared_bytes, 1200);
        assert_eq!(snap.max_chain, 3);
        assert_eq!(snap.anomalies[AnomalyKind::NullHandle.index()], 4);
        assert_eq!(s.snapshot(Direction::Receive), DirSnapshot::default());
        s.reset();
        assert_eq!(s.snapshot(Direction::Send), DirSnapshot::default());
        s.exclusive_slot(1).unwrap().dir[Direction::Send.index()].add_batch_exclusive(&b);
        let after = s.snapshot(Direction::Send);
        assert_eq!((after.nbls, after.segments, after.max_chain), (1, 3, 3), "counts after the reset");
        s.reset();
        s.reset();
        assert_eq!(s.snapshot(Direction::Send), DirSnapshot::default(), "a second reset");
    }

    #[test]
    fn a_reset_between_a_cpus_load_and_store_is_not_undone() {
        let mem = Mem::new(PerCpuStats::bytes_for(2));
        // SAFETY: zeroed, aligned, sized, outlives `s`.
        let s = unsafe { PerCpuStats::from_raw(mem.0, 2) };
        let slot = &s.exclusive_slot(1).unwrap().dir[Direction::Receive.index()];
        slot.add_batch_exclusive(&BatchCounts { nbls: 1000, net_buffers: 4000, ..Default::default() });
        // CPU 1 at DISPATCH adds 1 NBL with a plain load and store; the reset (PASSIVE, another
        // CPU) lands between the two.
        let loaded = slot.nbls.load(Relaxed);
        s.reset();
        slot.nbls.store(loaded + 1, Relaxed);
        let snap = s.snapshot(Direction::Receive);
        assert_eq!((snap.nbls, snap.net_buffers), (1, 0), "only the racing batch survives the reset");
    }

    #[test]
    fn handle_runs_merge_until_the_handle_changes() {
        let mut r = HandleRun::default();
        assert!(r.add(0x10, 100, 10).is_none());
        assert!(r.add(0x10, 50, 10).is_none());
        let prev = r.add(0x20, 0, 5).unwrap();
        assert_eq!(
            (prev.handle, prev.segments, prev.bytes, prev.min_offset, prev.max_end),
            (0x10, 2, 20, 50, 110)
        );
        let last = r.take().unwrap();
        assert_eq!(last.handle, 0x20);
        assert!(r.take().is_none());
    }

    #[test]
    fn handle_runs_cache_few_handles_and_flush_the_rest() {
        let mem = Mem::new(HandleTable::bytes_for(16));
        // SAFETY: zeroed, aligned, sized, outlives `t`.
        let t = unsafe { HandleTable::from_raw(mem.0, 16) };
        let mut runs = HandleRuns::default();
        let mut cur = HandleRun::default();
        for i in 0..100u32 {
            let h = 0x1000 * (1 + (i as usize % 6));
            if cur.same(h) {
                cur.merge(i * 10, 10);
            } else {
                cur = runs.switch(&t, Direction::Receive, cur, h, i * 10, 10);
            }
        }
        runs.flush(&t, Direction::Receive, cur);
        assert_eq!(t.distinct(), 6);
        let total: u64 = t.iter().map(|e| e.segments[0]).sum();
        assert_eq!(total, 100);
        let bytes: u64 = t.iter().map(|e| e.bytes[0]).sum();
        assert_eq!(bytes, 1000);
        let e = t.iter().find(|e| e.handle == 0x1000).unwrap();
        assert_eq!((e.min_offset, e.max_end), (0, 970));
    }

    #[test]
    fn handle_table_counts_and_overflows() {
        let mem = Mem::new(HandleTable::bytes_for(4));
        // SAFETY: zeroed, aligned, sized, outlives `t`.
        let t = unsafe { HandleTable::from_raw(mem.0, 4) };
        let run = |h: usize, off: u32| {
            let mut r = HandleRun::default();
            r.add(h, off, 100);
            r.take().unwrap()
        };
        for h in 1..=6usize {
            t.record(Direction::Receive, &run(h * 0x1000, 10));
        }
        t.record(Direction::Send, &run(0x1000, 5));
        assert_eq!(t.distinct(), 4);
        assert_eq!(t.overflow_segments(), 2);
        let e = t.iter().find(|e| e.handle == 0x1000).unwrap();
        assert_eq!((e.segments, e.bytes, e.min_offset, e.max_end), ([1, 1], [100, 100], 5, 110));
        let total: u64 = t.iter().map(|e| e.segments[0] + e.segments[1]).sum();
        assert_eq!(total + t.overflow_segments(), 7);
        t.reset();
        assert_eq!(t.distinct(), 0);
        assert_eq!(t.iter().count(), 0);
    }
}
