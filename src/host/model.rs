//! The user-mode NDIS model: the stand-in for ndis.sys (and for the miniports below and the
//! protocols above a filter) that drives the driver's real callbacks.
//!
//! It loads the driver (DriverEntry), creates miniports and drives attach, restart, pause and
//! detach in NDIS order; it sends and indicates NBL chains from threads acting as CPUs, at
//! PASSIVE or DISPATCH, with and without RESOURCES; a worker thread completes sends and another
//! returns receives asynchronously, splitting and reordering chains. It tracks the owner of
//! every NBL and records each breach of the contract as a violation (src/host/violations.rs).
//! One model exists per process at a time; [`Model::new`] waits for the previous one to drop.

use std::collections::HashSet;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::CONFIG;
use crate::shmem::{ANOMALY_KINDS, AnomalyKind};
use crate::stats::{DirSnapshot, Direction};
use crate::sys::{
    DISPATCH_LEVEL, DRIVER_OBJECT, FILTER_ATTACH, FILTER_DETACH, FILTER_PAUSE,
    FILTER_RECEIVE_NET_BUFFER_LISTS, FILTER_RESTART, FILTER_RETURN_NET_BUFFER_LISTS,
    FILTER_SEND_NET_BUFFER_LISTS, FILTER_SEND_NET_BUFFER_LISTS_COMPLETE, FILTER_STATUS,
    NDIS_FILTER_ATTACH_PARAMETERS, NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4, NDIS_FILTER_PAUSE_PARAMETERS,
    NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1, NDIS_FILTER_RESTART_PARAMETERS,
    NDIS_FILTER_RESTART_PARAMETERS_REVISION_1, NDIS_HANDLE, NDIS_OBJECT_HEADER,
    NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS, NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS,
    NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS, NDIS_PAUSE_NDIS_INTERNAL, NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
    NDIS_RECEIVE_FLAGS_RESOURCES, NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID,
    NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
    NDIS_SEND_FLAGS_DISPATCH_LEVEL, NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4,
    NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1, NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1,
    NDIS_STATUS, NDIS_STATUS_PENDING, NDIS_STATUS_SUCCESS, NDIS_TIMER_FUNCTION, NET_BUFFER_LIST, NET_LUID,
    NTSTATUS, NdisMedium802_3, PASSIVE_LEVEL, UNICODE_STRING,
};

use super::device::DeviceState;
use super::kernel::{self, at_irql};
use super::packets::{self, ModelNbl, NblSpec, Owner};
use super::registry::{ConfigState, RegValue};
use super::violations::{self, violation};

/// The driver's registered handlers, as the model copied them from the characteristics.
#[derive(Clone, Copy, Debug)]
pub struct Handlers {
    pub(crate) attach: FILTER_ATTACH,
    pub(crate) detach: FILTER_DETACH,
    pub(crate) restart: FILTER_RESTART,
    pub(crate) pause: FILTER_PAUSE,
    pub(crate) send: Option<FILTER_SEND_NET_BUFFER_LISTS>,
    pub(crate) send_complete: Option<FILTER_SEND_NET_BUFFER_LISTS_COMPLETE>,
    pub(crate) receive: Option<FILTER_RECEIVE_NET_BUFFER_LISTS>,
    pub(crate) return_: Option<FILTER_RETURN_NET_BUFFER_LISTS>,
    pub(crate) status: Option<FILTER_STATUS>,
    /// Characteristics revision the driver registered.
    pub revision: u8,
    /// NDIS minor version the driver registered.
    pub ndis_minor: u8,
}

/// Options of a model instance.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Simulated processors (`KeQueryMaximumProcessorCountEx`).
    pub cpus: u32,
    /// Lowest NDIS 6 minor version accepted at registration (6.30: `NDIS_MIN_API` on ARM64,
    /// enforced for every build so the x64 and ARM64 drivers register alike).
    pub min_ndis_minor: u8,
    /// Highest NDIS 6 minor version the emulated OS supports (6.89: Windows 11 24H2).
    pub max_ndis_minor: u8,
    /// `NetCfgInstanceId` of the INF (the registration's UniqueName must equal it).
    pub inf_unique_name: String,
    /// `AddService` name of the INF (the registration's ServiceName must equal it).
    pub inf_service_name: String,
    /// Replace `FirstNetBuffer` with a trap while the model holds an NBL.
    pub poison: bool,
    /// Complete sends / return receives from worker threads (else synchronously, inside the
    /// hand-off call).
    pub asynchronous: bool,
    /// Upper bound of the random delay before a worker completes or returns a batch.
    pub max_delay: Duration,
    /// Seed of the model's own random choices (splitting, ordering, delays).
    pub seed: u64,
    /// How long lifecycle operations wait for NBLs to come back before recording a violation.
    pub drain_timeout: Duration,
    /// Benchmark mode: the data-path exports do no checking, tracking or allocation (they note
    /// the chain they were given and return), so a benchmark times the filter, not the model.
    /// Use with the `lean_*` methods and NBLs the benchmark owns.
    pub lean: bool,
    /// The service's `Parameters` key: its values, or None if the key does not exist.
    pub registry: Option<Vec<(String, RegValue)>>,
    /// Make `NdisRegisterDeviceEx` fail with this status (after checking its arguments).
    pub device_registration_failure: Option<NTSTATUS>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        let (unique, service) = inf_names();
        Self {
            cpus: 2,
            min_ndis_minor: 30,
            max_ndis_minor: 89,
            inf_unique_name: unique,
            inf_service_name: service,
            poison: true,
            asynchronous: true,
            max_delay: Duration::from_micros(200),
            seed: 1,
            drain_timeout: Duration::from_secs(20),
            lean: false,
            registry: Some(Vec::new()),
            device_registration_failure: None,
        }
    }
}

/// The NetCfgInstanceId and AddService name of `inf/nbshm.inx`.
#[must_use]
pub fn inf_names() -> (String, String) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/inf/nbshm.inx");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let inf = super::inf::Inf::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let unique = inf.value("Nbshm_Install", "NetCfgInstanceId").expect("NetCfgInstanceId");
    let service = inf.values("Nbshm_Install.Services", "AddService").expect("AddService")[0].clone();
    (unique, service)
}

/// A tiny deterministic PRNG (SplitMix64) for the model's own choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 if `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss, reason = "53 bits of randomness are plenty")]
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

/// The filter module's state on a miniport, as NDIS tracks it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpState {
    /// No module.
    Detached = 0,
    /// Inside FilterAttach.
    Attaching = 1,
    /// Attached, paused.
    Paused = 2,
    /// Inside FilterRestart.
    Restarting = 3,
    /// Running.
    Running = 4,
    /// FilterPause called, not yet complete.
    Pausing = 5,
}

impl MpState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Attaching,
            2 => Self::Paused,
            3 => Self::Restarting,
            4 => Self::Running,
            5 => Self::Pausing,
            _ => Self::Detached,
        }
    }
}

/// Admission of one side of the stack (the protocol's sends, the miniport's indications):
/// open while that side runs; closing waits for the calls in progress.
#[derive(Debug, Default)]
pub struct Gate(AtomicU64);

const OPEN: u64 = 1 << 63;

impl Gate {
    /// Enters if open.
    pub fn enter(&self) -> bool {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            if v & OPEN == 0 {
                return false;
            }
            match self.0.compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
    }
    /// Leaves.
    pub fn leave(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
    /// Opens.
    pub fn open(&self) {
        self.0.fetch_or(OPEN, Ordering::AcqRel);
    }
    /// Closes and waits until no call is in progress.
    pub fn close(&self) {
        self.0.fetch_and(!OPEN, Ordering::AcqRel);
        while self.0.load(Ordering::Acquire) & !OPEN != 0 {
            std::thread::yield_now();
        }
    }
    /// Whether open.
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed) & OPEN != 0
    }
}

/// What the model expects the driver to have counted for one miniport and direction, from the
/// NBLs the filter actually passed on (and the ones it rejected while not running).
#[derive(Debug, Default)]
pub struct Expect {
    nbls: AtomicU64,
    net_buffers: AtomicU64,
    walked: AtomicU64,
    with_shared_memory: AtomicU64,
    segments: AtomicU64,
    shared_bytes: AtomicU64,
    max_chain: AtomicU32,
    anomalies: [AtomicU64; ANOMALY_KINDS],
    rejected_nbls: AtomicU64,
}

impl Expect {
    /// As a snapshot comparable with the driver's.
    #[must_use]
    pub fn snapshot(&self) -> DirSnapshot {
        DirSnapshot {
            nbls: self.nbls.load(Ordering::Relaxed),
            net_buffers: self.net_buffers.load(Ordering::Relaxed),
            walked: self.walked.load(Ordering::Relaxed),
            with_shared_memory: self.with_shared_memory.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            shared_bytes: self.shared_bytes.load(Ordering::Relaxed),
            max_chain: self.max_chain.load(Ordering::Relaxed),
            anomalies: std::array::from_fn(|i| self.anomalies[i].load(Ordering::Relaxed)),
            rejected_nbls: self.rejected_nbls.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [
            &self.nbls,
            &self.net_buffers,
            &self.walked,
            &self.with_shared_memory,
            &self.segments,
            &self.shared_bytes,
            &self.rejected_nbls,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.max_chain.store(0, Ordering::Relaxed);
        for a in &self.anomalies {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// Per-miniport traffic counters (what crossed the filter, from the model's side).
#[derive(Debug, Default)]
pub struct MpCounters {
    /// NBLs the protocol sent to the filter.
    pub sent_nbls: AtomicU64,
    /// NBLs completed back to the protocol.
    pub send_completed_nbls: AtomicU64,
    /// NBLs the miniport indicated to the filter.
    pub indicated_nbls: AtomicU64,
    /// NBLs back with the miniport.
    pub returned_nbls: AtomicU64,
    /// NBLs the filter indicated up from another thread while FilterRestart was still running:
    /// the window between the filter opening its data path (the last thing FilterRestart does)
    /// and NDIS marking the module Running (when FilterRestart returns). Every filter has it;
    /// the model tolerates it and counts it. An indication from inside FilterRestart itself is a
    /// violation.
    pub restart_window_indications: AtomicU64,
}

/// One simulated adapter under the filter.
#[derive(Debug)]
pub struct Miniport {
    magic: u64,
    /// Position in the model's list.
    pub index: usize,
    /// IfIndex given to the filter module.
    pub if_index: u32,
    /// Adapter friendly name.
    pub name: String,
    name_w: Box<[u16]>,
    name_us: Box<UNICODE_STRING>,
    guid_w: Box<[u16]>,
    guid_us: Box<UNICODE_STRING>,
    /// `NDIS_MEDIUM` reported at attach.
    pub media: i32,
    state: AtomicU8,
    pub(crate) context: AtomicPtr<c_void>,
    pause_pending: AtomicBool,
    pause_done: Mutex<bool>,
    pause_cv: Condvar,
    /// The protocol's sends.
    pub above: Gate,
    /// The miniport's indications.
    pub below: Gate,
    sends_out: AtomicI64,
    receives_out: AtomicI64,
    /// Traffic counters.
    pub counters: MpCounters,
    expect: [Expect; 2],
    handles: Mutex<HashSet<usize>>,
    pub(crate) statuses_passed: Mutex<Vec<usize>>,
    pauses_pended: AtomicU64,
}

// SAFETY: the raw pointers inside (`UNICODE_STRING` buffers) point into boxes the miniport owns
// and never changes after construction; everything mutable is atomic or behind a lock.
unsafe impl Send for Miniport {}
// SAFETY: as above.
unsafe impl Sync for Miniport {}

const MINIPORT_MAGIC: u64 = 0x4E42_5348_4D50_2121; // "NBSHMP!!"

fn wide(s: &str) -> (Box<[u16]>, Box<UNICODE_STRING>) {
    let mut w: Box<[u16]> = s.encode_utf16().collect();
    let bytes = u16::try_from(w.len() * 2).unwrap_or(u16::MAX);
    let us = Box::new(UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: w.as_mut_ptr() });
    (w, us)
}

impl Miniport {
    fn new(index: usize, if_index: u32, name: &str, media: i32) -> Self {
        let (name_w, name_us) = wide(name);
        let (guid_w, guid_us) = wide(&format!("{{00000000-0000-4000-8000-{:012x}}}", index + 1));
        Self {
            magic: MINIPORT_MAGIC,
            index,
            if_index,
            name: name.to_owned(),
            name_w,
            name_us,
            guid_w,
            guid_us,
            media,
            state: AtomicU8::new(MpState::Detached as u8),
            context: AtomicPtr::new(ptr::null_mut()),
            pause_pending: AtomicBool::new(false),
            pause_done: Mutex::new(false),
            pause_cv: Condvar::new(),
            above: Gate::default(),
            below: Gate::default(),
            sends_out: AtomicI64::new(0),
            receives_out: AtomicI64::new(0),
            counters: MpCounters::default(),
            expect: [Expect::default(), Expect::default()],
            handles: Mutex::new(HashSet::new()),
            statuses_passed: Mutex::new(Vec::new()),
            pauses_pended: AtomicU64::new(0),
        }
    }

    /// The handle NDIS gives this miniport's filter module.
    #[must_use]
    pub fn filter_handle(&self) -> NDIS_HANDLE {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// The filter module's state.
    #[must_use]
    pub fn state(&self) -> MpState {
        MpState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: MpState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// The module context the filter set.
    #[must_use]
    pub fn module_context(&self) -> NDIS_HANDLE {
        self.context.load(Ordering::Acquire)
    }

    /// What the driver must have counted in `dir`.
    #[must_use]
    pub fn expected(&self, dir: Direction) -> DirSnapshot {
        self.expect[dir.index()].snapshot()
    }

    /// Distinct non-NULL handles in the chains the filter walked.
    #[must_use]
    pub fn expected_handles(&self) -> usize {
        self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Those handles, sorted.
    #[must_use]
    pub fn expected_handle_set(&self) -> Vec<usize> {
        let mut v: Vec<usize> =
            self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// How many times FilterPause returned pending on this miniport.
    #[must_use]
    pub fn pauses_pended(&self) -> u64 {
        self.pauses_pended.load(Ordering::Relaxed)
    }

    /// Forgets the expectations (with a driver statistics reset).
    pub fn reset_expectations(&self) {
        for e in &self.expect {
            e.reset();
        }
        self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Accounts an NBL the filter passed on: what the driver must have walked.
    pub(crate) fn expect_forwarded(&self, m: &ModelNbl) {
        let dir = m.track.dir;
        let e = &self.expect[dir.index()];
        let walk = match dir {
            Direction::Send => CONFIG.send_path_walk(),
            Direction::Receive => {
                CONFIG.receive_path_walk()
                    && m.track.flags_in.load(Ordering::Relaxed) & NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
                        != 0
            }
        };
        let bound = CONFIG.max_segments();
        e.nbls.fetch_add(1, Ordering::Relaxed);
        e.net_buffers.fetch_add(m.track.spec.nbs.len() as u64, Ordering::Relaxed);
        if !walk {
            return;
        }
        let mut handles = Vec::new();
        for nb in &m.track.spec.nbs {
            let c = nb.chain.reference_walk(bound, |s| {
                if s.handle != 0 {
                    handles.push(s.handle);
                }
            });
            e.walked.fetch_add(1, Ordering::Relaxed);
            if c.segments > 0 {
                e.with_shared_memory.fetch_add(1, Ordering::Relaxed);
            }
            e.segments.fetch_add(u64::from(c.segments), Ordering::Relaxed);
            e.shared_bytes.fetch_add(c.shared_bytes, Ordering::Relaxed);
            e.max_chain.fetch_max(c.segments, Ordering::Relaxed);
            for k in AnomalyKind::ALL {
                if c.anomalies & (1 << k.index()) != 0 {
                    e.anomalies[k.index()].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if !handles.is_empty() {
            self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(handles);
        }
    }

    pub(crate) fn expect_rejected(&self, dir: Direction) {
        self.expect[dir.index()].rejected_nbls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn pause_completed(&self, api: &'static str) {
        if !self.pause_pending.swap(false, Ordering::AcqRel) {
            violation(api, format!("miniport {}: no pause is pending", self.index));
            return;
        }
        *self.pause_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.pause_cv.notify_all();
    }
}

// --- Timers --------------------------------------------------------------------------------------

#[derive(Debug)]
struct TimerRec {
    function: NDIS_TIMER_FUNCTION,
    context: usize,
    armed: bool,
    period: Duration,
    due: Instant,
    freed: bool,
}

/// The model's NDIS timer objects. Timers fire when the model says so ([`Model::fire_timers`]
/// or the traffic runner's timer thread), at DISPATCH_LEVEL.
#[derive(Debug, Default)]
pub struct Timers {
    list: Mutex<Vec<TimerRec>>,
    firing: Mutex<()>,
}

impl Timers {
    pub(crate) fn allocate(&self, function: NDIS_TIMER_FUNCTION, context: usize) -> NDIS_HANDLE {
        let mut l = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.push(TimerRec {
            function,
            context,
            armed: false,
            period: Duration::ZERO,
            due: Instant::now(),
            freed: false,
        });
        ptr::without_provenance_mut(0x7100_0000 + l.len())
    }

    fn index(handle: NDIS_HANDLE) -> Option<usize> {
        handle.addr().checked_sub(0x7100_0001)
    }

    fn with<R>(
        &self,
        handle: NDIS_HANDLE,
        api: &'static str,
        f: impl FnOnce(&mut TimerRec) -> R,
    ) -> Option<R> {
        let mut l = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match Self::index(handle).and_then(|i| l.get_mut(i)) {
            Some(t) if !t.freed => Some(f(t)),
            _ => {
                violation(api, format!("{handle:p} is not a live timer object"));
                None
            }
        }
    }

    pub(crate) fn set(&self, handle: NDIS_HANDLE, due: i64, period_ms: i32, context: usize) -> bool {
        if due > 0 {
            violation("NdisSetTimerObject", "absolute due times are not used by this driver".into());
        }
        self.with(handle, "NdisSetTimerObject", |t| {
            let was = t.armed;
            t.armed = true;
            t.period = Duration::from_millis(u64::try_from(period_ms).unwrap_or(0));
            t.due = Instant::now() + Duration::from_nanos(due.unsigned_abs().saturating_mul(100));
            if context != 0 {
                t.context = context;
            }
            was
        })
        .unwrap_or(false)
    }

    pub(crate) fn cancel(&self, handle: NDIS_HANDLE) -> bool {
        let periodic = self.with(handle, "NdisCancelTimerObject", |t| !t.period.is_zero()).unwrap_or(false);
        if periodic && kernel::current_irql() != PASSIVE_LEVEL {
            violation("NdisCancelTimerObject", "a periodic timer must be cancelled at PASSIVE_LEVEL".into());
        }
        let was = self.with(handle, "NdisCancelTimerObject", |t| std::mem::replace(&mut t.armed, false));
        if periodic {
            // As documented: cancelling a periodic timer waits for its queued callbacks.
            self.flush();
        }
        was.unwrap_or(false)
    }

    pub(crate) fn free(&self, handle: NDIS_HANDLE) {
        self.with(handle, "NdisFreeTimerObject", |t| {
            if t.armed {
                violation("NdisFreeTimerObject", "freeing an armed timer".into());
            }
            t.freed = true;
        });
    }

    pub(crate) fn flush(&self) {
        drop(self.firing.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Fires the armed timers that are due (all of them if `all`); returns how many fired.
    pub fn fire(&self, all: bool) -> usize {
        let _firing = self.firing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let due: Vec<(NDIS_TIMER_FUNCTION, usize)> = {
            let mut l = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            l.iter_mut()
                .filter(|t| t.armed && !t.freed && (all || t.due <= now))
                .map(|t| {
                    if t.period.is_zero() {
                        t.armed = false;
                    } else {
                        t.due = now + t.period;
                    }
                    (t.function, t.context)
                })
                .collect()
        };
        for (f, ctx) in &due {
            at_irql(DISPATCH_LEVEL, || {
                // SAFETY: the driver's timer callback with the context it registered.
                unsafe {
                    f(
                        ptr::null_mut(),
                        ptr::with_exposed_provenance_mut(*ctx),
                        ptr::null_mut(),
                        ptr::null_mut(),
                    );
                };
            });
        }
        due.len()
    }

    /// The period of every armed, live timer (zero for a one-shot timer).
    #[must_use]
    pub fn armed_periods(&self) -> Vec<Duration> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|t| t.armed && !t.freed)
            .map(|t| t.period)
            .collect()
    }

    /// Live (allocated, not freed) timer objects.
    #[must_use]
    pub fn live(&self) -> usize {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|t| !t.freed)
            .count()
    }
}

// --- Shared state ---------------------------------------------------------------------------------

enum Work {
    Complete(Arc<Miniport>, Vec<usize>),
    Return(Arc<Miniport>, Vec<usize>),
}

/// State shared by the NDIS functions and the model's threads.
pub struct Shared {
    pub(crate) opts: ModelOptions,
    pub(crate) handlers: RwLock<Option<Handlers>>,
    pub(crate) driver_context: AtomicPtr<c_void>,
    pub(crate) registered: AtomicBool,
    pub(crate) in_driver_entry: AtomicBool,
    pub(crate) in_unload: AtomicBool,
    driver_object: Box<DRIVER_OBJECT>,
    driver_handle_marker: Box<u64>,
    miniports: RwLock<Vec<Arc<Miniport>>>,
    pub(crate) timers: Timers,
    live_nbls: AtomicI64,
    /// Completion/return callbacks the model's workers are inside.
    worker_callbacks: AtomicI64,
    next_nbl_id: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
    completer: Mutex<Option<Sender<Work>>>,
    returner: Mutex<Option<Sender<Work>>>,
    home: Mutex<()>,
    home_cv: Condvar,
    pub(crate) config: ConfigState,
    pub(crate) device: DeviceState,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("opts", &self.opts).finish_non_exhaustive()
    }
}

// SAFETY: the only non-thread-safe parts are the DRIVER_OBJECT (written by the driver inside
// DriverEntry, on the thread that loads it, and read-only afterwards) and the marker box; the rest
// is atomics and locks.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());
static MODEL_LOCK: Mutex<()> = Mutex::new(());

/// The live model's shared state (panics if no model exists: the driver called NDIS without
/// one).
pub(crate) fn shared() -> &'static Shared {
    try_shared().expect("an NDIS or kernel function was called with no model alive")
}

pub(crate) fn try_shared() -> Option<&'static Shared> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: set by Model::new to a leaked Box, cleared (and freed) by Model's Drop only after
    // every thread of the model has been joined and the driver unloaded.
    (!p.is_null()).then(|| unsafe { &*p })
}

impl Shared {
    pub(crate) fn driver_object_ptr(&self) -> *mut DRIVER_OBJECT {
        ptr::from_ref(&*self.driver_object).cast_mut()
    }

    pub(crate) fn driver_handle(&self) -> NDIS_HANDLE {
        ptr::from_ref(&*self.driver_handle_marker).cast_mut().cast()
    }

    pub(crate) fn handlers(&self) -> Option<Handlers> {
        *self.handlers.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn miniport_list(&self) -> Vec<Arc<Miniport>> {
        self.miniports.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn miniport_by_handle(&self, handle: NDIS_HANDLE, api: &'static str) -> Option<Arc<Miniport>> {
        let found = self
            .miniports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|m| m.filter_handle() == handle && m.magic == MINIPORT_MAGIC)
            .cloned();
        if found.is_none() {
            violation(api, format!("{handle:p} is not a filter module handle NDIS gave out"));
        }
        found
    }

    /// The miniport side takes sends the filter passed down.
    pub(crate) fn below_receives(&self, mp: &Arc<Miniport>, nbls: Vec<usize>) {
        if nbls.is_empty() {
            return;
        }
        let tx = self.completer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match tx {
            Some(tx) if self.opts.asynchronous => {
                let _ = tx.send(Work::Complete(Arc::clone(mp), nbls));
            }
            _ => complete_sends(self, mp, nbls, &mut Rng::new(self.opts.seed)),
        }
    }

    /// The protocol side takes receives the filter indicated up (not RESOURCES).
    pub(crate) fn above_receives(&self, mp: &Arc<Miniport>, nbls: Vec<usize>) {
        if nbls.is_empty() {
            return;
        }
        let tx = self.returner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match tx {
            Some(tx) if self.opts.asynchronous => {
                let _ = tx.send(Work::Return(Arc::clone(mp), nbls));
            }
            _ => return_receives(self, mp, nbls, &mut Rng::new(self.opts.seed)),
        }
    }

    /// An NBL is back with its originator: verify it and free it.
    pub(crate) fn came_home(&self, mp: &Miniport, nbl: *mut NET_BUFFER_LIST) {
        // SAFETY: a model NBL now owned by the model again.
        let Some(m) = (unsafe { ModelNbl::from_nbl(nbl) }) else { return };
        if !m.unchanged() {
            violation("pass-through", format!("NBL #{} came back modified", m.track.id));
        }
        match m.track.dir {
            Direction::Send => {
                mp.counters.send_completed_nbls.fetch_add(1, Ordering::Relaxed);
                mp.sends_out.fetch_sub(1, Ordering::AcqRel);
            }
            Direction::Receive => {
                mp.counters.returned_nbls.fetch_add(1, Ordering::Relaxed);
                mp.receives_out.fetch_sub(1, Ordering::AcqRel);
            }
        }
        // SAFETY: home, and nobody refers to it any more.
        unsafe { packets::free(nbl) };
        if self.live_nbls.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.home.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.home_cv.notify_all();
        }
    }

    /// NDIS's teardown of one module: pause it if needed, then detach it.
    pub(crate) fn teardown_miniport(&self, mp: &Arc<Miniport>) {
        match mp.state() {
            MpState::Running => {
                pause_stack(self, mp);
                detach_module(self, mp);
            }
            MpState::Paused => detach_module(self, mp),
            _ => {}
        }
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + self.opts.drain_timeout;
        while !done() {
            if Instant::now() > deadline {
                violation("model", format!("timed out waiting for {what}"));
                return false;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        true
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        v.swap(i, j);
    }
}

/// Splits `nbls` into up to three reordered chains and hands each to `give`.
fn regroup(mut nbls: Vec<usize>, rng: &mut Rng, mut give: impl FnMut(*mut NET_BUFFER_LIST)) {
    shuffle(&mut nbls, rng);
    let parts = 1 + usize::try_from(rng.below(3)).unwrap_or(0);
    let per = nbls.len().div_ceil(parts).max(1);
    for group in nbls.chunks(per) {
        let mut head: *mut NET_BUFFER_LIST = ptr::null_mut();
        for &a in group.iter().rev() {
            let p: *mut NET_BUFFER_LIST = ptr::with_exposed_provenance_mut(a);
            // SAFETY: a model NBL held by the model.
            unsafe { (*p).Next = head };
            head = p;
        }
        give(head);
    }
}

fn complete_sends(sh: &Shared, mp: &Arc<Miniport>, nbls: Vec<usize>, rng: &mut Rng) {
    let Some(h) = sh.handlers() else { return };
    let Some(complete) = h.send_complete else { return };
    for &a in &nbls {
        // SAFETY: model NBLs the filter passed down.
        if let Some(m) = unsafe { ModelNbl::from_nbl(ptr::with_exposed_provenance_mut(a)) } {
            m.unpoison();
            m.nbl.Status = NDIS_STATUS_SUCCESS;
            m.transfer(Owner::Below, Owner::Filter, "send completion");
        }
    }
    let dispatch = rng.chance(0.7);
    let ctx = mp.module_context();
    if ctx.is_null() {
        // Only after a drain timed out (already a violation): the module is gone.
        violation(
            "model",
            format!("send completion for miniport {} after its module was detached", mp.index),
        );
        return;
    }
    regroup(nbls, rng, |head| {
        let (irql, flags) = if dispatch {
            (DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL)
        } else {
            (PASSIVE_LEVEL, 0)
        };
        sh.worker_callbacks.fetch_add(1, Ordering::AcqRel);
        at_irql(irql, || {
            // SAFETY: the driver's handler with its module context and NBLs it passed down.
            unsafe { complete(ctx, head, flags) };
        });
        sh.worker_callbacks.fetch_sub(1, Ordering::AcqRel);
    });
}

fn return_receives(sh: &Shared, mp: &Arc<Miniport>, nbls: Vec<usize>, rng: &mut Rng) {
    let Some(h) = sh.handlers() else { return };
    let Some(ret) = h.return_ else { return };
    for &a in &nbls {
        // SAFETY: model NBLs the filter indicated up.
        if let Some(m) = unsafe { ModelNbl::from_nbl(ptr::with_exposed_provenance_mut(a)) } {
            m.unpoison();
            m.transfer(Owner::Above, Owner::Filter, "receive return");
        }
    }
    let dispatch = rng.chance(0.7);
    let ctx = mp.module_context();
    if ctx.is_null() {
        // Only after a drain timed out (already a violation): the module is gone.
        violation("model", format!("receive return for miniport {} after its module was detached", mp.index));
        return;
    }
    regroup(nbls, rng, |head| {
        let (irql, flags) =
            if dispatch { (DISPATCH_LEVEL, NDIS_RETURN_FLAGS_DISPATCH_LEVEL) } else { (PASSIVE_LEVEL, 0) };
        sh.worker_callbacks.fetch_add(1, Ordering::AcqRel);
        at_irql(irql, || {
            // SAFETY: the driver's handler with its module context and NBLs it indicated up.
            unsafe { ret(ctx, head, flags) };
        });
        sh.worker_callbacks.fetch_sub(1, Ordering::AcqRel);
    });
}

fn worker(rx: &Receiver<Work>, cpu: u32, seed: u64, max_delay: Duration) {
    let _scope = kernel::ModelScope::enter();
    kernel::set_current_cpu(cpu);
    let mut rng = Rng::new(seed);
    while let Ok(w) = rx.recv() {
        let Some(sh) = try_shared() else { return };
        if !max_delay.is_zero() {
            let ns = rng.below(u64::try_from(max_delay.as_nanos()).unwrap_or(u64::MAX));
            std::thread::sleep(Duration::from_nanos(ns));
        }
        match w {
            Work::Complete(mp, nbls) => complete_sends(sh, &mp, nbls, &mut rng),
            Work::Return(mp, nbls) => return_receives(sh, &mp, nbls, &mut rng),
        }
    }
}

fn pause_stack(sh: &Shared, mp: &Arc<Miniport>) {
    // NDIS pauses top-down: the protocol stops sending and waits for its sends to complete...
    mp.above.close();
    sh.wait_until(&format!("miniport {}'s sends to complete before FilterPause", mp.index), || {
        mp.sends_out.load(Ordering::Acquire) == 0
    });
    // ...then the filter pauses (the miniport may still indicate receives meanwhile)...
    pause_module(sh, mp);
    // ...then the miniport stops indicating and waits for its receives to come back.
    mp.below.close();
    sh.wait_until(&format!("miniport {}'s receives to be returned", mp.index), || {
        mp.receives_out.load(Ordering::Acquire) == 0
    });
}

fn pause_module(sh: &Shared, mp: &Arc<Miniport>) {
    let Some(h) = sh.handlers() else { return };
    if mp.state() != MpState::Running {
        violation("model", format!("pause of miniport {} in state {:?}", mp.index, mp.state()));
        return;
    }
    *mp.pause_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = false;
    mp.pause_pending.store(true, Ordering::Release);
    mp.set_state(MpState::Pausing);
    let mut params = NDIS_FILTER_PAUSE_PARAMETERS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS,
            Revision: NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1,
            Size: NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1,
        },
        Flags: 0,
        PauseReason: NDIS_PAUSE_NDIS_INTERNAL,
    };
    // SAFETY: the driver's handler, its module context, parameters on our stack; PASSIVE.
    let status = at_irql(PASSIVE_LEVEL, || unsafe { (h.pause)(mp.module_context(), &raw mut params) });
    if status == NDIS_STATUS_PENDING {
        mp.pauses_pended.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + sh.opts.drain_timeout;
        let mut done = mp.pause_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                violation("FilterPause", format!("miniport {}: pended pause never completed", mp.index));
                break;
            }
            done = mp.pause_cv.wait_timeout(done, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    } else if status == NDIS_STATUS_SUCCESS {
        if !mp.pause_pending.swap(false, Ordering::AcqRel) {
            violation("FilterPause", "returned SUCCESS after calling NdisFPauseComplete".into());
        }
    } else {
        violation("FilterPause", format!("returned {status:#x}: a pause cannot fail"));
        mp.pause_pending.store(false, Ordering::Release);
    }
    mp.set_state(MpState::Paused);
}

fn detach_module(sh: &Shared, mp: &Arc<Miniport>) {
    let Some(h) = sh.handlers() else { return };
    if mp.state() != MpState::Paused {
        violation("model", format!("detach of miniport {} in state {:?}", mp.index, mp.state()));
        return;
    }
    // SAFETY: the driver's handler with its module context; PASSIVE.
    at_irql(PASSIVE_LEVEL, || unsafe { (h.detach)(mp.module_context()) });
    mp.context.store(ptr::null_mut(), Ordering::Release);
    mp.set_state(MpState::Detached);
}

thread_local! {
    /// The miniport whose FilterRestart this thread is running.
    static IN_RESTART: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    static FORWARDED: std::cell::RefCell<Option<Vec<u64>>> = const { std::cell::RefCell::new(None) };
    static LEAN_LAST: std::cell::Cell<*mut NET_BUFFER_LIST> = const { std::cell::Cell::new(ptr::null_mut()) };
}

/// Whether the calling thread is inside FilterRestart of miniport `index`.
pub(crate) fn in_filter_restart(index: usize) -> bool {
    IN_RESTART.with(|r| r.get() == Some(index))
}

/// Lean mode: what the data-path exports do instead of checking (note the chain, return).
/// Returns true if the model is lean (the export must then return at once).
pub(crate) fn lean_note(head: *mut NET_BUFFER_LIST) -> bool {
    let lean = try_shared().is_some_and(|s| s.opts.lean);
    if lean && !head.is_null() {
        LEAN_LAST.with(|l| l.set(head));
    }
    lean
}

/// Notes (for the caller of `send`/`indicate` on this thread) that the filter passed NBL `id`
/// on: the filter decides inside its callback, on the calling thread.
pub(crate) fn note_forwarded(id: u64) {
    FORWARDED.with(|f| {
        if let Some(v) = f.borrow_mut().as_mut() {
            v.push(id);
        }
    });
}

/// Outcome of handing a chain to the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handed {
    /// NBLs in the chain.
    pub nbls: u64,
    /// NET_BUFFERs in the chain.
    pub net_buffers: u64,
    /// NBLs the filter passed on during the call (the rest it rejected).
    pub forwarded: u64,
    /// Bit `i` set: the `i`-th NBL of the chain (first 64) was passed on.
    pub forwarded_mask: u64,
}

fn record_forwarded(handed: &mut Handed, first_id: u64) {
    let ids = FORWARDED.with(|f| f.borrow_mut().take()).unwrap_or_default();
    handed.forwarded = ids.len() as u64;
    for id in ids {
        if let Some(bit) = id.checked_sub(first_id).filter(|b| *b < 64) {
            handed.forwarded_mask |= 1 << bit;
        }
    }
}

/// A model instance (one per process at a time).
pub struct Model {
    _guard: MutexGuard<'static, ()>,
    shared: &'static Shared,
    loaded: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("loaded", &self.loaded).finish_non_exhaustive()
    }
}

impl Model {
    /// Creates the model (waits for any other model in this process to be dropped).
    #[must_use]
    pub fn new(opts: ModelOptions) -> Self {
        let guard = MODEL_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        violations::reset();
        kernel::pool_reset();
        let _ = kernel::take_debug_log();
        super::etw::reset();
        kernel::PROCESSORS.store(opts.cpus.max(1) as usize, Ordering::Relaxed);
        kernel::set_current_cpu(0);
        kernel::set_irql(PASSIVE_LEVEL);
        // SAFETY: DRIVER_OBJECT is plain data; all-zero is a valid (empty) object.
        let driver_object: Box<DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
        let shared = Box::leak(Box::new(Shared {
            opts,
            handlers: RwLock::new(None),
            driver_context: AtomicPtr::new(ptr::null_mut()),
            registered: AtomicBool::new(false),
            in_driver_entry: AtomicBool::new(false),
            in_unload: AtomicBool::new(false),
            driver_object,
            driver_handle_marker: Box::new(0x4452_4956),
            miniports: RwLock::new(Vec::new()),
            timers: Timers::default(),
            live_nbls: AtomicI64::new(0),
            worker_callbacks: AtomicI64::new(0),
            next_nbl_id: AtomicU64::new(1),
            workers: Mutex::new(Vec::new()),
            completer: Mutex::new(None),
            returner: Mutex::new(None),
            home: Mutex::new(()),
            home_cv: Condvar::new(),
            config: ConfigState::default(),
            device: DeviceState::default(),
        }));
        SHARED.store(ptr::from_mut(shared), Ordering::Release);
        if shared.opts.asynchronous {
            let cpus = shared.opts.cpus.max(1);
            let (ctx, crx) = mpsc::channel();
            let (rtx, rrx) = mpsc::channel();
            let (seed, delay) = (shared.opts.seed, shared.opts.max_delay);
            let mut w = shared.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            w.push(std::thread::spawn(move || worker(&crx, cpus - 1, seed ^ 0xC0, delay)));
            w.push(std::thread::spawn(move || worker(&rrx, 0, seed ^ 0x2E, delay)));
            *shared.completer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ctx);
            *shared.returner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rtx);
        }
        Self { _guard: guard, shared, loaded: false }
    }

    /// Options in use.
    #[must_use]
    pub fn options(&self) -> &ModelOptions {
        &self.shared.opts
    }

    /// Calls DriverEntry. Afterwards the driver must have registered and set DriverUnload.
    pub fn load(&mut self) -> NTSTATUS {
        let _scope = kernel::ModelScope::enter();
        let sh = self.shared;
        let regpath_w: Vec<u16> =
            "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\nbshm".encode_utf16().collect();
        let bytes = u16::try_from(regpath_w.len() * 2).unwrap_or(u16::MAX);
        let regpath =
            UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: regpath_w.as_ptr().cast_mut() };
        sh.in_driver_entry.store(true, Ordering::Release);
        // SAFETY: the driver's entry point with a valid driver object and registry path; PASSIVE.
        let status = at_irql(PASSIVE_LEVEL, || unsafe {
            crate::filter::driver_entry(sh.driver_object_ptr(), &raw const regpath)
        });
        sh.in_driver_entry.store(false, Ordering::Release);
        if sh.config.open_handles() != 0 {
            violation(
                "NdisCloseConfiguration",
                format!("{} configuration handles left open by DriverEntry", sh.config.open_handles()),
            );
        }
        if status >= 0 {
            if !sh.registered.load(Ordering::Acquire) {
                violation("DriverEntry", "succeeded without registering the filter driver".into());
            }
            if sh.driver_object.DriverUnload.is_none() {
                violation("DriverEntry", "succeeded without setting DriverUnload".into());
            }
            if sh.driver_context.load(Ordering::Acquire) != sh.driver_object_ptr().cast() {
                // Not a rule, but what the driver documents it registers.
                violation("DriverEntry", "FilterDriverContext is not the driver object".into());
            }
            self.loaded = true;
        } else {
            if sh.registered.load(Ordering::Acquire) {
                violation("DriverEntry", "failed but left the filter driver registered".into());
            }
            if sh.device.is_registered() {
                violation("DriverEntry", "failed but left the control device registered".into());
            }
        }
        status
    }

    /// Calls DriverUnload (which must deregister; NDIS then pauses and detaches every module),
    /// then checks that all pool and timers were freed.
    pub fn unload(&mut self) {
        let _scope = kernel::ModelScope::enter();
        let sh = self.shared;
        let Some(unload) = sh.driver_object.DriverUnload else {
            violation("DriverUnload", "not set".into());
            return;
        };
        sh.in_unload.store(true, Ordering::Release);
        // SAFETY: the driver's unload routine with its driver object; PASSIVE.
        at_irql(PASSIVE_LEVEL, || unsafe { unload(sh.driver_object_ptr()) });
        sh.in_unload.store(false, Ordering::Release);
        self.loaded = false;
        if sh.registered.load(Ordering::Acquire) {
            violation("DriverUnload", "returned without NdisFDeregisterFilterDriver".into());
        }
        if sh.device.is_registered() {
            violation("DriverUnload", "returned without NdisDeregisterDeviceEx".into());
        }
        if sh.config.open_handles() != 0 {
            violation(
                "NdisCloseConfiguration",
                format!("{} configuration handles open at unload", sh.config.open_handles()),
            );
        }
        for (addr, block) in kernel::pool_allocations() {
            violation(
                "pool",
                format!(
                    "leak at unload: {} bytes tagged '{}' at {addr:#x}",
                    block.size,
                    kernel::tag_str(block.tag)
                ),
            );
        }
        if sh.timers.live() != 0 {
            violation(
                "NdisFreeTimerObject",
                format!("{} timer objects still allocated at unload", sh.timers.live()),
            );
        }
    }

    /// The handlers the driver registered.
    #[must_use]
    pub fn handlers(&self) -> Option<Handlers> {
        self.shared.handlers()
    }

    /// Adds a miniport and attaches the filter to it (FilterAttach). Returns its index and the
    /// attach status.
    pub fn add_miniport(&self, name: &str) -> (usize, NDIS_STATUS) {
        self.add_miniport_with_media(name, NdisMedium802_3)
    }

    /// As [`add_miniport`](Self::add_miniport) with a given `NDIS_MEDIUM`.
    pub fn add_miniport_with_media(&self, name: &str, media: i32) -> (usize, NDIS_STATUS) {
        let sh = self.shared;
        let index = {
            let mut l = sh.miniports.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let index = l.len();
            l.push(Arc::new(Miniport::new(index, 10 + u32::try_from(index).unwrap_or(0), name, media)));
            index
        };
        let status = self.attach(index);
        (index, status)
    }

    /// The miniport at `index`.
    #[must_use]
    pub fn miniport(&self, index: usize) -> Arc<Miniport> {
        Arc::clone(&self.shared.miniport_list()[index])
    }

    /// Every miniport.
    #[must_use]
    pub fn miniports(&self) -> Vec<Arc<Miniport>> {
        self.shared.miniport_list()
    }

    /// FilterAttach on miniport `index` (which must be detached).
    pub fn attach(&self, index: usize) -> NDIS_STATUS {
        let _scope = kernel::ModelScope::enter();
        let sh = self.shared;
        let mp = self.miniport(index);
        let Some(h) = sh.handlers() else {
            violation("model", "attach without a registered driver".into());
            return crate::sys::NDIS_STATUS_FAILURE;
        };
        assert_eq!(mp.state(), MpState::Detached, "attach of an attached miniport");
        // SAFETY: NDIS_FILTER_ATTACH_PARAMETERS is plain data; all-zero is valid.
        let mut p: NDIS_FILTER_ATTACH_PARAMETERS = unsafe { std::mem::zeroed() };
        p.Header = NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS,
            Revision: NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4,
            Size: NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4,
        };
        p.IfIndex = mp.if_index;
        p.NetLuid = NET_LUID { Value: 0x0006_0000_0000_0000 | u64::from(mp.if_index) };
        p.FilterModuleGuidName = ptr::from_ref(&*mp.guid_us).cast_mut();
        p.BaseMiniportIfIndex = mp.if_index - 1;
        p.BaseMiniportInstanceName = ptr::from_ref(&*mp.name_us).cast_mut();
        p.BaseMiniportName = ptr::from_ref(&*mp.guid_us).cast_mut();
        p.MediaConnectState = 1;
        p.MediaDuplexState = 2;
        p.XmitLinkSpeed = 10_000_000_000;
        p.RcvLinkSpeed = 10_000_000_000;
        p.MiniportMediaType = mp.media;
        p.MacAddressLength = 6;
        p.CurrentMacAddress[..6].copy_from_slice(&[
            0x00,
            0x15,
            0x5D,
            0,
            0,
            u8::try_from(mp.index).unwrap_or(0),
        ]);
        p.LowerIfIndex = mp.if_index - 1;
        mp.context.store(ptr::null_mut(), Ordering::Release);
        // A new module starts counting from zero: so do the expectations of what it must count.
        mp.reset_expectations();
        mp.set_state(MpState::Attaching);
        let ctx = sh.driver_context.load(Ordering::Acquire);
        // SAFETY: the driver's handler with our handle, its driver context and parameters on
        // our stack (valid for the call); PASSIVE.
        let status = at_irql(PASSIVE_LEVEL, || unsafe { (h.attach)(mp.filter_handle(), ctx, &raw mut p) });
        // Keep the strings alive until here.
        let _ = (&mp.name_w, &mp.guid_w);
        if status == NDIS_STATUS_SUCCESS {
            if mp.module_context().is_null() {
                violation("FilterAttach", "succeeded without NdisFSetAttributes".into());
            }
            mp.set_state(MpState::Paused);
        } else {
            mp.context.store(ptr::null_mut(), Ordering::Release);
            mp.set_state(MpState::Detached);
        }
        status
    }

    /// Restarts the stack of miniport `index`: the miniport, then the filter (FilterRestart),
    /// then the protocol.
    pub fn restart(&self, index: usize) -> NDIS_STATUS {
        let _scope = kernel::ModelScope::enter();
        let sh = self.shared;
        let mp = self.miniport(index);
        let Some(h) = sh.handlers() else { return crate::sys::NDIS_STATUS_FAILURE };
        if mp.state() != MpState::Paused {
            violation("model", format!("restart of miniport {index} in state {:?}", mp.state()));
            return crate::sys::NDIS_STATUS_FAILURE;
        }
        mp.below.open();
        mp.set_state(MpState::Restarting);
        let mut p = NDIS_FILTER_RESTART_PARAMETERS {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS,
                Revision: NDIS_FILTER_RESTART_PARAMETERS_REVISION_1,
                Size: NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1,
            },
            MiniportMediaType: mp.media,
            MiniportPhysicalMediaType: 14, // NdisPhysicalMedium802_3
            RestartAttributes: ptr::null_mut(),
            LowerIfIndex: mp.if_index - 1,
            LowerIfNetLuid: NET_LUID::default(),
            Flags: 0,
        };
        IN_RESTART.with(|r| r.set(Some(index)));
        // SAFETY: the driver's handler with its module context and parameters on our stack.
        let status = at_irql(PASSIVE_LEVEL, || unsafe { (h.restart)(mp.module_context(), &raw mut p) });
        IN_RESTART.with(|r| r.set(None));
        if status == NDIS_STATUS_SUCCESS {
            mp.set_state(MpState::Running);
            mp.above.open();
        } else {
            if status == NDIS_STATUS_PENDING {
                violation("FilterRestart", "pended, but the driver imports no NdisFRestartComplete".into());
            }
            mp.set_state(MpState::Paused);
            mp.below.close();
        }
        status
    }

    /// Pauses the stack of miniport `index` in NDIS order (protocol, filter, miniport).
    pub fn pause(&self, index: usize) {
        let _scope = kernel::ModelScope::enter();
        let mp = self.miniport(index);
        pause_stack(self.shared, &mp);
    }

    /// FilterPause alone, leaving the protocol and the miniport running: what the filter sees
    /// if traffic reaches it while it is paused (the data path must then reject it).
    pub fn pause_filter_only(&self, index: usize) {
        let _scope = kernel::ModelScope::enter();
        let mp = self.miniport(index);
        pause_module(self.shared, &mp);
    }

    /// Calls `NdisFRegisterFilterDriver` directly with `chars`, as if from DriverEntry, to test
    /// the model's validation. Returns the status; a success is undone at once.
    ///
    /// # Safety
    /// `chars` handlers, if called, must be sound (they are not called by this function).
    pub unsafe fn register_raw(
        &self,
        chars: &mut crate::sys::NDIS_FILTER_DRIVER_CHARACTERISTICS,
    ) -> NDIS_STATUS {
        let sh = self.shared;
        let mut handle: NDIS_HANDLE = ptr::null_mut();
        sh.in_driver_entry.store(true, Ordering::Release);
        // SAFETY: the model's own export with valid pointers.
        let status = unsafe {
            super::ndis::NdisFRegisterFilterDriver(
                sh.driver_object_ptr(),
                ptr::null_mut(),
                chars,
                &raw mut handle,
            )
        };
        sh.in_driver_entry.store(false, Ordering::Release);
        if status == NDIS_STATUS_SUCCESS {
            sh.registered.store(false, Ordering::Release);
            *sh.handlers.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        status
    }

    /// FilterDetach on miniport `index` (which must be paused).
    pub fn detach(&self, index: usize) {
        let _scope = kernel::ModelScope::enter();
        let mp = self.miniport(index);
        detach_module(self.shared, &mp);
    }

    fn build_chain(
        &self,
        mp: &Miniport,
        dir: Direction,
        specs: Vec<NblSpec>,
        flags: u32,
        port: u32,
    ) -> (*mut NET_BUFFER_LIST, Handed, u64) {
        let mut handed = Handed::default();
        let mut nbls = Vec::with_capacity(specs.len());
        let first_id = self.shared.next_nbl_id.fetch_add(specs.len() as u64, Ordering::Relaxed);
        for (i, spec) in specs.into_iter().enumerate() {
            handed.nbls += 1;
            handed.net_buffers += spec.nbs.len() as u64;
            let b = ModelNbl::build(first_id + i as u64, mp.index, dir, spec);
            b.track.flags_in.store(flags, Ordering::Relaxed);
            b.track.port_in.store(port, Ordering::Relaxed);
            b.track.resources.store(
                dir == Direction::Receive && flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0,
                Ordering::Relaxed,
            );
            b.transfer(Owner::Model, Owner::Filter, "model");
            nbls.push(b);
        }
        self.shared.live_nbls.fetch_add(i64::try_from(nbls.len()).unwrap_or(i64::MAX), Ordering::AcqRel);
        (packets::chain(nbls), handed, first_id)
    }

    /// The protocol above miniport `index` sends `specs` as one chain (FilterSendNetBufferLists)
    /// with `flags` (the model runs the call at DISPATCH_LEVEL iff the DISPATCH flag is set).
    /// Does nothing and returns None if the protocol is paused.
    pub fn send(&self, index: usize, specs: Vec<NblSpec>, flags: u32, port: u32) -> Option<Handed> {
        let _scope = kernel::ModelScope::enter();
        let mp = self.miniport(index);
        if !mp.above.enter() {
            return None;
        }
        let r = self.send_entered(&mp, specs, flags, port);
        mp.above.leave();
        Some(r)
    }

    fn send_entered(&self, mp: &Arc<Miniport>, specs: Vec<NblSpec>, flags: u32, port: u32) -> Handed {
        let Some(h) = self.shared.handlers() else { return Handed::default() };
        let (head, mut handed, first_id) = self.build_chain(mp, Direction::Send, specs, flags, port);
        mp.counters.sent_nbls.fetch_add(handed.nbls, Ordering::Relaxed);
        mp.sends_out.fetch_add(i64::try_from(handed.nbls).unwrap_or(0), Ordering::AcqRel);
        let irql = if flags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0 { DISPATCH_LEVEL } else { PASSIVE_LEVEL };
        FORWARDED.with(|f| *f.borrow_mut() = Some(Vec::new()));
        match h.send {
            // SAFETY: the driver's handler with its module context and a chain it now owns.
            Some(send) => at_irql(irql, || unsafe { send(mp.module_context(), head, port, flags) }),
            None => violation("model", "no send handler: the model has no bypass path".into()),
        }
        record_forwarded(&mut handed, first_id);
        handed
    }

    /// The miniport `index` indicates `specs` as one chain (FilterReceiveNetBufferLists).
    /// With RESOURCES, the NBLs come back when the call returns. Returns None if the miniport
    /// is paused.
    pub fn indicate(&self, index: usize, specs: Vec<NblSpec>, flags: u32, port: u32) -> Option<Handed> {
        let _scope = kernel::ModelScope::enter();
        let mp = self.miniport(index);
        if !mp.below.enter() {
            return None;
        }
        let r = self.indicate_entered(&mp, specs, flags, port);
        mp.below.leave();
        Some(r)
    }

    fn indicate_entered(&self, mp: &Arc<Miniport>, specs: Vec<NblSpec>, flags: u32, port: u32) -> Handed {
        let Some(h) = self.shared.handlers() else { return Handed::default() };
        let (head, mut handed, first_id) = self.build_chain(mp, Direction::Receive, specs, flags, port);
        mp.counters.indicated_nbls.fetch_add(handed.nbls, Ordering::Relaxed);
        mp.receives_out.fetch_add(i64::try_from(handed.nbls).unwrap_or(0), Ordering::AcqRel);
        // SAFETY: the chain was just built.
        let members = unsafe { packets::chain_members(head) };
        let irql =
            if flags & NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL != 0 { DISPATCH_LEVEL } else { PASSIVE_LEVEL };
        let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
        FORWARDED.with(|f| *f.borrow_mut() = Some(Vec::new()));
        match h.receive {
            Some(receive) => at_irql(irql, || {
                // SAFETY: the driver's handler with its module context and the chain.
                unsafe { receive(mp.module_context(), head, port, count, flags) };
            }),
            None => violation("model", "no receive handler: the model has no bypass path".into()),
        }
        record_forwarded(&mut handed, first_id);
        if flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0 {
            // NDIS takes RESOURCES NBLs back as soon as the callback returns.
            for p in members {
                // SAFETY: model NBLs of this indication.
                let Some(m) = (unsafe { ModelNbl::from_nbl(p) }) else { continue };
                if !m.transfer(Owner::Filter, Owner::Home, "FilterReceiveNetBufferLists (RESOURCES)") {
                    continue;
                }
                if !m.track.forwarded.load(Ordering::Acquire) {
                    mp.expect_rejected(Direction::Receive);
                }
                self.shared.came_home(mp, p);
            }
        }
        handed
    }

    /// The miniport `index` indicates a status (FilterStatus). Returns whether the filter passed
    /// that very indication up with `NdisFIndicateStatus`.
    pub fn indicate_status(&self, index: usize) -> bool {
        let _scope = kernel::ModelScope::enter();
        let mp = self.miniport(index);
        let Some(status) = self.shared.handlers().and_then(|h| h.status) else {
            violation("model", "no FilterStatus handler".into());
            return false;
        };
        // An NDIS_STATUS_INDICATION header (type 0x98, revision 1); the filter must not read
        // past it, only pass the pointer on.
        let mut indication = [0u8; 0x48];
        indication[0] = crate::sys::NDIS_OBJECT_TYPE_STATUS_INDICATION;
        indication[1] = 1;
        indication[2] = 0x48;
        let p = indication.as_mut_ptr();
        // SAFETY: the driver's handler with its module context and an indication on our stack.
        at_irql(DISPATCH_LEVEL, || unsafe { status(mp.module_context(), p.cast()) });
        mp.statuses_passed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&p.addr())
    }

    /// Lean mode: FilterSendNetBufferLists with `head` (NBLs the caller owns). Returns the chain
    /// the filter passed down, or NULL if it completed it (not running).
    ///
    /// # Safety
    /// The chain must be NBLs the caller owns (e.g. built with `packets::chain`), valid for the
    /// call.
    pub unsafe fn lean_send(
        &self,
        index: usize,
        head: *mut NET_BUFFER_LIST,
        flags: u32,
    ) -> *mut NET_BUFFER_LIST {
        let ctx = self.miniport(index).module_context();
        let send = self.shared.handlers().and_then(|h| h.send);
        LEAN_LAST.with(|l| l.set(ptr::null_mut()));
        if let Some(send) = send {
            let irql =
                if flags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0 { DISPATCH_LEVEL } else { PASSIVE_LEVEL };
            // SAFETY: the driver's handler with its module context and a chain the caller owns.
            at_irql(irql, || unsafe { send(ctx, head, 0, flags) });
        }
        LEAN_LAST.with(std::cell::Cell::get)
    }

    /// Lean mode: FilterSendNetBufferListsComplete for a chain the filter passed down.
    ///
    /// # Safety
    /// The chain must be NBLs the caller owns (e.g. built with `packets::chain`), valid for the
    /// call.
    pub unsafe fn lean_send_complete(&self, index: usize, head: *mut NET_BUFFER_LIST, flags: u32) {
        let ctx = self.miniport(index).module_context();
        if let Some(complete) = self.shared.handlers().and_then(|h| h.send_complete) {
            let irql = if flags & NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL != 0 {
                DISPATCH_LEVEL
            } else {
                PASSIVE_LEVEL
            };
            // SAFETY: the driver's handler with the chain it passed down.
            at_irql(irql, || unsafe { complete(ctx, head, flags) });
        }
    }

    /// Lean mode: FilterReceiveNetBufferLists. Returns the chain the filter indicated up, or NULL.
    ///
    /// # Safety
    /// The chain must be NBLs the caller owns (e.g. built with `packets::chain`), valid for the
    /// call.
    pub unsafe fn lean_receive(
        &self,
        index: usize,
        head: *mut NET_BUFFER_LIST,
        count: u32,
        flags: u32,
    ) -> *mut NET_BUFFER_LIST {
        let ctx = self.miniport(index).module_context();
        let receive = self.shared.handlers().and_then(|h| h.receive);
        LEAN_LAST.with(|l| l.set(ptr::null_mut()));
        if let Some(receive) = receive {
            let irql =
                if flags & NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL != 0 { DISPATCH_LEVEL } else { PASSIVE_LEVEL };
            // SAFETY: the driver's handler with its module context and a chain the caller owns.
            at_irql(irql, || unsafe { receive(ctx, head, 0, count, flags) });
        }
        LEAN_LAST.with(std::cell::Cell::get)
    }

    /// Lean mode: FilterReturnNetBufferLists for a chain the filter indicated up.
    ///
    /// # Safety
    /// The chain must be NBLs the caller owns (e.g. built with `packets::chain`), valid for the
    /// call.
    pub unsafe fn lean_return(&self, index: usize, head: *mut NET_BUFFER_LIST, flags: u32) {
        let ctx = self.miniport(index).module_context();
        if let Some(ret) = self.shared.handlers().and_then(|h| h.return_) {
            let irql =
                if flags & NDIS_RETURN_FLAGS_DISPATCH_LEVEL != 0 { DISPATCH_LEVEL } else { PASSIVE_LEVEL };
            // SAFETY: the driver's handler with the chain it indicated up.
            at_irql(irql, || unsafe { ret(ctx, head, flags) });
        }
    }

    /// Waits until every NBL is home (completed or returned) and the model's workers have
    /// left the driver's completion/return callbacks. Records a violation on timeout.
    pub fn quiesce(&self) -> bool {
        let sh = self.shared;
        let deadline = Instant::now() + sh.opts.drain_timeout;
        let mut g = sh.home.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while sh.live_nbls.load(Ordering::Acquire) != 0 || sh.worker_callbacks.load(Ordering::Acquire) != 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                violation(
                    "model",
                    format!(
                        "{} NBLs never came home (held, dropped or lost)",
                        sh.live_nbls.load(Ordering::Acquire)
                    ),
                );
                return false;
            }
            g = sh
                .home_cv
                .wait_timeout(g, left.min(Duration::from_millis(10)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }

    /// NBLs not yet home.
    #[must_use]
    pub fn live_nbls(&self) -> i64 {
        self.shared.live_nbls.load(Ordering::Acquire)
    }

    /// Fires the armed timers (all, or only the due ones). Returns how many fired.
    pub fn fire_timers(&self, all: bool) -> usize {
        let _scope = kernel::ModelScope::enter();
        self.shared.timers.fire(all)
    }

    /// The period of every armed timer.
    #[must_use]
    pub fn armed_timer_periods(&self) -> Vec<Duration> {
        self.shared.timers.armed_periods()
    }

    /// Violations recorded so far.
    #[must_use]
    pub fn violations(&self) -> Vec<violations::Violation> {
        violations::list()
    }

    /// Number of violations recorded so far.
    #[must_use]
    pub fn violation_count(&self) -> u64 {
        violations::count()
    }

    /// Sum of the per-miniport counters.
    #[must_use]
    pub fn totals(&self) -> [u64; 4] {
        let mut t = [0u64; 4];
        for mp in self.miniports() {
            t[0] += mp.counters.sent_nbls.load(Ordering::Relaxed);
            t[1] += mp.counters.send_completed_nbls.load(Ordering::Relaxed);
            t[2] += mp.counters.indicated_nbls.load(Ordering::Relaxed);
            t[3] += mp.counters.returned_nbls.load(Ordering::Relaxed);
        }
        t
    }

    /// Runs `f` as simulated processor `cpu` on the calling thread.
    pub fn on_cpu<R>(cpu: u32, f: impl FnOnce() -> R) -> R {
        let old = kernel::current_cpu();
        kernel::set_current_cpu(cpu);
        let r = f();
        kernel::set_current_cpu(old);
        r
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if self.loaded {
            if std::thread::panicking() {
                // A failing test: still unload (so the next test starts with no module attached),
                // but never let a second panic abort the process.
                let this = std::panic::AssertUnwindSafe(&mut *self);
                let _ = std::panic::catch_unwind(move || {
                    let this = this;
                    this.0.unload();
                });
            } else {
                self.unload();
            }
        }
        let sh = self.shared;
        // Stop the workers (dropping the senders ends their loops).
        *sh.completer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *sh.returner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let workers =
            std::mem::take(&mut *sh.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for w in workers {
            let _ = w.join();
        }
        if self.loaded {
            // A panicking test: leave the shared state leaked rather than free memory the driver
            // may still point into.
            SHARED.store(ptr::null_mut(), Ordering::Release);
            return;
        }
        SHARED.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: leaked in `new`; no thread of the model is left and the driver is unloaded,
        // so nothing refers to it.
        drop(unsafe { Box::from_raw(ptr::from_ref(sh).cast_mut()) });
    }
}
