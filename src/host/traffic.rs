//! Traffic for the model: VMQ-style shared-memory allocations, NBL generation with injected
//! defects, and a multi-threaded runner (CPUs sending and indicating, pause/restart churn, the
//! usage timer), shared by the tests and `nbshm-sim`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::shmem::{ANOMALY_KINDS, AnomalyKind};
use crate::stats::{DirSnapshot, Direction};
use crate::sys::{
    NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL, NDIS_RECEIVE_FLAGS_RESOURCES,
    NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, NDIS_SEND_FLAGS_DISPATCH_LEVEL,
};

use super::kernel;
use super::model::{Model, Rng};
use super::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};

/// A defect to inject: each makes exactly one anomaly in one NET_BUFFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inject {
    /// A chain that loops back on itself (counted as `overlong`).
    Cycle,
    /// A chain longer than `MaxSegmentsPerNetBuffer`.
    Overlong,
    /// A segment whose offset + length exceeds 32 bits.
    OffsetOverflow,
    /// A segment with a NULL handle.
    NullHandle,
    /// A segment of length 0.
    ZeroLength,
    /// A link that cannot be a segment (misaligned).
    BadPointer,
}

impl Inject {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Cycle,
        Self::Overlong,
        Self::OffsetOverflow,
        Self::NullHandle,
        Self::ZeroLength,
        Self::BadPointer,
    ];

    /// The `--inject` name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cycle => "cycle",
            Self::Overlong => "overlong",
            Self::OffsetOverflow => "offset_overflow",
            Self::NullHandle => "null_handle",
            Self::ZeroLength => "zero_length",
            Self::BadPointer => "bad_pointer",
        }
    }

    /// Parses a `--inject` name.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The anomaly the driver must count for it.
    #[must_use]
    pub const fn anomaly(self) -> AnomalyKind {
        match self {
            Self::Cycle | Self::Overlong => AnomalyKind::Overlong,
            Self::OffsetOverflow => AnomalyKind::OffsetOverflow,
            Self::NullHandle => AnomalyKind::NullHandle,
            Self::ZeroLength => AnomalyKind::ZeroLength,
            Self::BadPointer => AnomalyKind::BadPointer,
        }
    }
}

/// What traffic to generate.
#[derive(Clone, Debug)]
pub struct TrafficSpec {
    /// NBLs per miniport and direction.
    pub nbls: u64,
    /// NET_BUFFERs per NBL.
    pub nbs_per_nbl: u32,
    /// NBLs per send/indicate call.
    pub batch: u32,
    /// Segments per shared-memory NET_BUFFER.
    pub segments: u32,
    /// Fraction of NET_BUFFERs (sends) / indications (receives) with shared memory.
    pub shared_fraction: f64,
    /// Shared-memory allocations (distinct handles) per miniport.
    pub handles: u32,
    /// Fraction of receive indications made with RESOURCES.
    pub resources_fraction: f64,
    /// Fraction of calls made at DISPATCH_LEVEL.
    pub dispatch_fraction: f64,
    /// Defects to inject: (kind, count), over all miniports and directions.
    pub inject: Vec<(Inject, u64)>,
    /// Packet sizes to cycle through (e.g. from a capture); empty: a built-in mix.
    pub sizes: Vec<u32>,
    /// Pause/restart cycles per run, spread over the miniports during traffic.
    pub churn: u32,
    /// Seed.
    pub seed: u64,
    /// Generate receives.
    pub receive: bool,
    /// Generate sends.
    pub send: bool,
    /// Print a progress line to stderr every this often (None: quiet).
    pub progress: Option<Duration>,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        Self {
            nbls: 10_000,
            nbs_per_nbl: 1,
            batch: 16,
            segments: 1,
            shared_fraction: 0.9,
            handles: 8,
            resources_fraction: 0.2,
            dispatch_fraction: 0.5,
            inject: Vec::new(),
            sizes: Vec::new(),
            churn: 0,
            seed: 1,
            receive: true,
            send: true,
            progress: None,
        }
    }
}

/// Ethernet frame sizes of a typical mixed workload (ACKs, MTU-sized, mid-size).
const DEFAULT_SIZES: [u32; 8] = [64, 1514, 1514, 590, 1514, 66, 1514, 1024];

/// A VMQ-style shared-memory allocation: an opaque handle and a size.
#[derive(Debug)]
struct Region {
    handle: usize,
    size: u32,
    next: u32,
}

/// Generates NBL specs for one miniport and direction.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    regions: Vec<Region>,
    sizes: Vec<u32>,
    size_at: usize,
    nbs_per_nbl: u32,
    segments: u32,
    shared_fraction: f64,
}

/// Handle values the generators hand out: distinct across every generator of the process,
/// 64-byte aligned like pool pointers, in the x64 kernel's system range (a handle is opaque to
/// the driver, which never dereferences it; nothing is allocated for it).
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0xFFFF_C000_1000_0000);

impl Generator {
    /// A generator with `handles` regions of 4 MiB each.
    #[must_use]
    pub fn new(spec: &TrafficSpec, seed: u64) -> Self {
        let regions = (0..spec.handles.max(1))
            .map(|_| Region { handle: NEXT_HANDLE.fetch_add(64, Ordering::Relaxed), size: 4 << 20, next: 0 })
            .collect();
        Self {
            rng: Rng::new(seed),
            regions,
            sizes: if spec.sizes.is_empty() { DEFAULT_SIZES.to_vec() } else { spec.sizes.clone() },
            size_at: usize::try_from(seed % 7).unwrap_or(0),
            nbs_per_nbl: spec.nbs_per_nbl.max(1),
            segments: spec.segments.max(1),
            shared_fraction: spec.shared_fraction,
        }
    }

    fn size(&mut self) -> u32 {
        let s = self.sizes[self.size_at % self.sizes.len()];
        self.size_at += 1;
        s.max(1)
    }

    /// Segments for `length` bytes in one region, split `segments` ways (the first segment is a
    /// lookahead of up to 128 bytes when split).
    fn segments_for(&mut self, length: u32) -> Vec<SegmentSpec> {
        let r = usize::try_from(self.rng.below(self.regions.len() as u64)).unwrap_or(0);
        let region = &mut self.regions[r];
        let n = self.segments.min(length).max(1);
        let mut out = Vec::with_capacity(n as usize);
        let mut left = length;
        for i in 0..n {
            let len = if i + 1 == n {
                left
            } else if i == 0 && n > 1 {
                left.min(128).min(left - (n - 1))
            } else {
                (left / (n - i)).max(1)
            };
            let len = len.max(1);
            if region.next + 2048 > region.size {
                region.next = 0;
            }
            out.push(SegmentSpec { handle: region.handle, offset: region.next, length: len, flags: 0 });
            region.next += len.next_multiple_of(64);
            left = left.saturating_sub(len);
        }
        out
    }

    /// A clean chain for `length` bytes.
    fn chain(&mut self, length: u32) -> ChainSpec {
        ChainSpec::List(self.segments_for(length))
    }

    /// A chain for `length` bytes carrying exactly one defect of `kind`.
    fn defect(&mut self, kind: Inject, length: u32, bound: u32) -> ChainSpec {
        let mut segs = self.segments_for(length);
        match kind {
            Inject::Cycle => {
                let back_to = usize::try_from(self.rng.below(segs.len() as u64)).unwrap_or(0);
                return ChainSpec::Cycle { segments: segs, back_to };
            }
            Inject::Overlong => {
                let extra = bound as usize + 1 + usize::try_from(self.rng.below(3)).unwrap_or(0);
                let base = segs[0];
                segs = (0..extra)
                    .zip(0u32..)
                    .map(|(_, i)| SegmentSpec { offset: base.offset + 64 * i, length: 64, ..base })
                    .collect();
            }
            Inject::OffsetOverflow => {
                segs[0].offset = u32::MAX - segs[0].length / 2;
            }
            Inject::NullHandle => segs[0].handle = 0,
            Inject::ZeroLength => segs[0].length = 0,
            Inject::BadPointer => {
                let last = segs.last().map_or(0, |s| s.handle);
                return ChainSpec::Broken { segments: segs, link: last | 0x3 };
            }
        }
        ChainSpec::List(segs)
    }

    /// One NBL. For receives, `vmq` says whether the indication carries shared memory (the
    /// VALID flag); without it the slot holds a value that is not a chain, which the driver must
    /// not touch. `defect` puts one defect into its first NET_BUFFER.
    pub fn nbl(&mut self, dir: Direction, vmq: bool, defect: Option<(Inject, u32)>) -> NblSpec {
        let mut nbs = Vec::with_capacity(self.nbs_per_nbl as usize);
        for i in 0..self.nbs_per_nbl {
            let data_length = self.size();
            let chain = match (dir, vmq, defect) {
                (_, _, Some((kind, bound))) if i == 0 => self.defect(kind, data_length, bound),
                (Direction::Receive, false, _) => {
                    ChainSpec::Raw(0x0BAD_0000_0000 | usize::from(self.rng.chance(0.5)))
                }
                (Direction::Receive, true, _) => self.chain(data_length),
                (Direction::Send, _, _) => {
                    if self.rng.chance(self.shared_fraction) {
                        self.chain(data_length)
                    } else {
                        ChainSpec::None
                    }
                }
            };
            nbs.push(NbSpec { data_length, chain });
        }
        NblSpec { nbs }
    }
}

/// Model-side and driver-side figures of a run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// NBLs the protocols sent.
    pub sent_nbls: u64,
    /// NBLs completed back to the protocols.
    pub send_completed_nbls: u64,
    /// NBLs the miniports indicated.
    pub indicated_nbls: u64,
    /// NBLs back with the miniports.
    pub returned_nbls: u64,
    /// Driver statistics, both directions, all modules.
    pub driver: DirSnapshot,
    /// Distinct handles in the driver's tables (sum over modules).
    pub driver_distinct_handles: u64,
    /// What the model expects the driver to have counted (from the NBLs it passed on).
    pub generated: DirSnapshot,
    /// Distinct handles the model saw walked (sum over miniports).
    pub generated_distinct_handles: u64,
    /// Defects injected and passed through the walk, by anomaly kind.
    pub injected: [u64; ANOMALY_KINDS],
    /// Contract violations.
    pub contract_violations: u64,
    /// Wall time of the traffic phase.
    pub elapsed: Duration,
    /// Pause/restart cycles done.
    pub churn_cycles: u64,
    /// Pauses the filter completed later (returned pending).
    pub pauses_pended: u64,
}

impl RunReport {
    /// Nanoseconds of traffic per NET_BUFFER.
    #[must_use]
    pub fn ns_per_net_buffer(&self) -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "a rate")]
        let r = self.elapsed.as_nanos() as f64 / self.driver.net_buffers.max(1) as f64;
        r
    }
}

/// Adds `b` into `a`.
pub fn add_snapshot(a: &mut DirSnapshot, b: &DirSnapshot) {
    a.nbls += b.nbls;
    a.net_buffers += b.net_buffers;
    a.walked += b.walked;
    a.with_shared_memory += b.with_shared_memory;
    a.segments += b.segments;
    a.shared_bytes += b.shared_bytes;
    a.max_chain = a.max_chain.max(b.max_chain);
    for (x, y) in a.anomalies.iter_mut().zip(b.anomalies) {
        *x += y;
    }
    a.rejected_nbls += b.rejected_nbls;
}

struct Quota {
    miniport: usize,
    dir: Direction,
    left: AtomicU64,
    generator: Mutex<Generator>,
}

/// Injection bookkeeping: what is still to inject, and what reached the walk.
struct Injector {
    left: Mutex<Vec<(Inject, u64)>>,
    landed: [AtomicU64; ANOMALY_KINDS],
}

impl Injector {
    fn take(&self) -> Option<Inject> {
        let mut l = self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = l.iter().position(|(_, n)| *n > 0)?;
        l[i].1 -= 1;
        Some(l[i].0)
    }
    fn put_back(&self, kind: Inject) {
        let mut l = self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = l.iter_mut().find(|(k, _)| *k == kind) {
            e.1 += 1;
        }
    }
    fn pending(&self) -> u64 {
        self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(_, n)| n).sum()
    }
}

/// Runs `spec` on every running miniport of `model` with `cpus` threads, then waits for every
/// NBL to come home and reports. The miniports must be attached and restarted.
///
/// Injected defects go only into NBLs whose shared memory the driver walks (receives with the
/// VALID flag; sends when `SendPathWalk` is on). A defective NBL the filter rejects (paused by
/// churn at that moment) is injected again later, so each requested defect is walked exactly once.
#[must_use]
pub fn run(model: &Model, spec: &TrafficSpec, cpus: u32) -> RunReport {
    let miniports = model.miniports();
    let mut quotas = Vec::new();
    for mp in &miniports {
        for dir in Direction::ALL {
            if (dir == Direction::Send && !spec.send) || (dir == Direction::Receive && !spec.receive) {
                continue;
            }
            let seed = spec.seed ^ ((mp.index as u64) << 8) ^ (dir as u64 + 1);
            quotas.push(Quota {
                miniport: mp.index,
                dir,
                left: AtomicU64::new(spec.nbls),
                generator: Mutex::new(Generator::new(spec, seed)),
            });
        }
    }
    // Defects can only be counted where the driver walks: receives (with the VALID flag), or
    // sends with SendPathWalk on. With neither, none are injected (the report says 0).
    let walkable = (spec.receive && crate::config::CONFIG.receive_path_walk())
        || (spec.send && crate::config::CONFIG.send_path_walk());
    let inject = if walkable && !quotas.is_empty() { spec.inject.clone() } else { Vec::new() };
    let injector = Injector { left: Mutex::new(inject), landed: Default::default() };
    let stop = AtomicBool::new(false);
    let churned = AtomicU64::new(0);
    let total: u64 = quotas.iter().map(|q| q.left.load(Ordering::Relaxed)).sum();
    let start = Instant::now();
    std::thread::scope(|s| {
        for cpu in 0..cpus.max(1) {
            let (quotas, injector) = (&quotas, &injector);
            s.spawn(move || cpu_thread(model, spec, quotas, injector, cpu));
        }
        // Pause/restart churn on a PASSIVE thread, spread over the run.
        if spec.churn > 0 && !miniports.is_empty() {
            let (quotas, churned, stop, n) = (&quotas, &churned, &stop, miniports.len());
            s.spawn(move || churn_thread(model, spec.churn, quotas, total, n, stop, churned));
        }
        // The usage timer, at DISPATCH, as the system would fire it.
        let stop_ref = &stop;
        s.spawn(move || {
            kernel::set_current_cpu(0);
            while !stop_ref.load(Ordering::Relaxed) {
                model.fire_timers(false);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        if let Some(every) = spec.progress {
            let (quotas, stop) = (&quotas, &stop);
            s.spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() >= every {
                        last = Instant::now();
                        let left: u64 = quotas.iter().map(|q| q.left.load(Ordering::Relaxed)).sum();
                        eprintln!(
                            "nbshm-sim: {}/{total} NBLs handed to the filter ({:.1} s)",
                            total - left,
                            start.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
        // Wait for the CPU threads' work (quotas, then any defect whose NBL was rejected and
        // must be placed again), then stop the helpers; the scope joins everything.
        while quotas.iter().any(|q| q.left.load(Ordering::Relaxed) > 0) || injector.pending() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed();
    model.quiesce();
    let mut r = RunReport { elapsed, churn_cycles: churned.load(Ordering::Relaxed), ..RunReport::default() };
    let t = model.totals();
    (r.sent_nbls, r.send_completed_nbls, r.indicated_nbls, r.returned_nbls) = (t[0], t[1], t[2], t[3]);
    for mp in &miniports {
        for dir in Direction::ALL {
            add_snapshot(&mut r.generated, &mp.expected(dir));
        }
        r.generated_distinct_handles += mp.expected_handles() as u64;
        r.pauses_pended += mp.pauses_pended();
    }
    crate::filter::for_each_module_summary(|s| {
        add_snapshot(&mut r.driver, &s.receive);
        add_snapshot(&mut r.driver, &s.send);
        r.driver_distinct_handles += u64::from(s.distinct_handles);
    });
    for (i, n) in injector.landed.iter().enumerate() {
        r.injected[i] = n.load(Ordering::Relaxed);
    }
    r.contract_violations = model.violation_count();
    r
}

fn churn_thread(
    model: &Model,
    cycles: u32,
    quotas: &[Quota],
    total: u64,
    miniports: usize,
    stop: &AtomicBool,
    churned: &AtomicU64,
) {
    kernel::set_current_cpu(0);
    for i in 0..cycles {
        // Spread the cycles over the run: wait until the next share of traffic passed (or the
        // traffic is done: the remaining cycles then run back to back).
        let target = total - total * u64::from(i + 1) / u64::from(cycles + 1);
        while !stop.load(Ordering::Relaxed)
            && quotas.iter().map(|q| q.left.load(Ordering::Relaxed)).sum::<u64>() > target
        {
            std::thread::sleep(Duration::from_micros(100));
        }
        let idx = i as usize % miniports;
        model.pause(idx);
        std::thread::sleep(Duration::from_micros(100));
        model.restart(idx);
        churned.fetch_add(1, Ordering::Relaxed);
    }
}

fn cpu_thread(model: &Model, spec: &TrafficSpec, quotas: &[Quota], injector: &Injector, cpu: u32) {
    kernel::set_current_cpu(cpu);
    let mut rng = Rng::new(spec.seed ^ (u64::from(cpu) << 32) ^ 0xC9);
    let mut at = cpu as usize;
    loop {
        let busy = quotas.iter().any(|q| q.left.load(Ordering::Relaxed) > 0);
        if !busy && injector.pending() == 0 {
            return;
        }
        if quotas.is_empty() {
            return;
        }
        let q = &quotas[at % quotas.len()];
        at += 1;
        // Take a batch of the quota (or, with the quota done, an injection-only batch).
        let want = u64::from(spec.batch.max(1));
        let mut n = 0;
        let _ = q.left.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |left| {
            n = left.min(want);
            Some(left - n)
        });
        let injection_only = n == 0;
        if injection_only {
            if injector.pending() == 0 {
                continue;
            }
            n = 1;
        }
        let dispatch = rng.chance(spec.dispatch_fraction);
        let walks = match q.dir {
            Direction::Send => crate::config::CONFIG.send_path_walk(),
            Direction::Receive => crate::config::CONFIG.receive_path_walk(),
        };
        let vmq = q.dir == Direction::Send || injection_only || rng.chance(spec.shared_fraction);
        let bound = crate::config::CONFIG.max_segments();
        let mut defects = Vec::new();
        let specs: Vec<NblSpec> = {
            let mut g = q.generator.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (0..n)
                .map(|_| {
                    let d = if walks && vmq { injector.take() } else { None };
                    defects.push(d);
                    g.nbl(q.dir, vmq, d.map(|k| (k, bound)))
                })
                .collect()
        };
        let handed = match q.dir {
            Direction::Send => {
                let flags = if dispatch { NDIS_SEND_FLAGS_DISPATCH_LEVEL } else { 0 };
                model.send(q.miniport, specs, flags, 0)
            }
            Direction::Receive => {
                let mut flags = if vmq { NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID } else { 0 };
                if dispatch {
                    flags |= NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL;
                }
                if rng.chance(spec.resources_fraction) {
                    flags |= NDIS_RECEIVE_FLAGS_RESOURCES;
                }
                model.indicate(q.miniport, specs, flags, 0)
            }
        };
        if let Some(h) = handed {
            for (i, d) in defects.iter().enumerate() {
                let Some(kind) = d else { continue };
                if i < 64 && h.forwarded_mask & (1 << i) != 0 {
                    injector.landed[kind.anomaly().index()].fetch_add(1, Ordering::Relaxed);
                } else {
                    injector.put_back(*kind);
                }
            }
        } else {
            // The side was paused (churn): nothing was handed over; retry later.
            if !injection_only {
                q.left.fetch_add(n, Ordering::AcqRel);
            }
            for kind in defects.into_iter().flatten() {
                injector.put_back(kind);
            }
            std::thread::yield_now();
        }
    }
}
