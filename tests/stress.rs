//! Everything at once. Traffic on every simulated CPU (sends and receives, DISPATCH and PASSIVE,
//! with and without RESOURCES) into three modules, while other threads, concurrently:
//! pause and restart one stack, detach and re-attach another, fire the usage timers, start,
//! change, capture and stop ETW sessions (the rundown walks the module list), and send IOCTLs
//! (list modules, page handle tables, reset statistics, change every runtime keyword).
//!
//! Checked: no contract violation, every NBL sent is completed and every NBL indicated is
//! returned exactly once, no pool left after unload; between two reads of a module with the same
//! `resets`, no counter goes down; after a reset, no module shows more NBLs than were handed to
//! the filter since (plus one batch per CPU in flight: a reset that a CPU's count undid would
//! show the old totals; the window for that is a few instructions wide, so this is a net, and
//! `stats::tests::a_reset_between_a_cpus_load_and_store_is_not_undone` replays the interleaving
//! deterministically); and, once the churn stops, a reset followed by a known burst is counted
//! exactly. The control threads do a fixed amount of work; traffic runs until they are done.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{assert_clean, assert_stats_match, batch, enc, running};
use nbshm::config::Keyword;
use nbshm::host::device::{FILE_READ_DATA, FILE_WRITE_DATA, IoctlResult};
use nbshm::host::model::{Model, ModelOptions, MpState};
use nbshm::host::{etw, kernel};
use nbshm::sys::{
    NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL, NDIS_RECEIVE_FLAGS_RESOURCES,
    NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, NDIS_SEND_FLAGS_DISPATCH_LEVEL,
};
use nbshm_proto::ioctl::{
    IOCTL_NBSHM_LIST_MODULES, IOCTL_NBSHM_QUERY_HANDLES, IOCTL_NBSHM_RESET_STATS, IOCTL_NBSHM_SET_CONFIG,
};
use nbshm_proto::status::{STATUS_NOT_FOUND, is_error};
use nbshm_proto::{
    ALL_MODULES, DirStats, HandleListHeader, HandleRecord, HandlesRequest, ListModulesRequest,
    ModuleListHeader, ModuleRecord, ResetRequest, SetConfigRequest, decode_list,
};

const CPUS: u32 = 4;
const MINIPORTS: usize = 3;
/// NBLs per hand-off.
const BATCH: usize = 8;
/// NBLs out at most before a traffic thread waits.
const MAX_LIVE: i64 = 1024;
const RW: u32 = FILE_READ_DATA | FILE_WRITE_DATA;
/// Miniport whose stack is paused and restarted.
const PAUSED: usize = 1;
/// Miniport whose module is detached and attached again.
const DETACHED: usize = 2;

static EVENTS: AtomicU64 = AtomicU64::new(0);

fn list(m: &Model) -> Vec<ModuleRecord> {
    let r = m.ioctl(IOCTL_NBSHM_LIST_MODULES, &enc(&ListModulesRequest::new()), 8 * 1024, FILE_READ_DATA);
    assert_eq!(r.status, 0, "{r:?}");
    decode_list::<ModuleListHeader, ModuleRecord>(&r.output).expect("a module list").iter().collect()
}

fn set(m: &Model, k: Keyword, value: u32) -> IoctlResult {
    m.ioctl(IOCTL_NBSHM_SET_CONFIG, &enc(&SetConfigRequest::new(k as u32, value)), 64, RW)
}

/// The counters of one direction that only grow between resets.
fn growing(d: &DirStats) -> Vec<u64> {
    let mut v = vec![d.nbls, d.net_buffers, d.walked, d.with_shared_memory, d.segments, d.shared_bytes];
    v.extend(d.anomalies);
    v.push(d.rejected_nbls);
    v
}

/// NBLs the model has handed to the filter so far (sends and receives, every miniport).
fn handed(m: &Model) -> u64 {
    let [sent, _, indicated, _] = m.totals();
    sent + indicated
}

fn traffic(m: &Model, cpu: u32, stop: &AtomicBool) -> usize {
    kernel::set_current_cpu(cpu);
    let mut rounds = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // Back-pressure, as a NIC's descriptor rings give: the model's two completion threads
        // must keep up, or pauses would wait behind an ever longer queue.
        while m.live_nbls() > MAX_LIVE && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(50));
        }
        let idx = (rounds + cpu as usize) % MINIPORTS;
        let handles = 1 + rounds % 5;
        // Odd CPUs run at PASSIVE every fourth round: the shared-slot path.
        let dispatch = cpu.is_multiple_of(2) || !rounds.is_multiple_of(4);
        let send_flags = if dispatch { NDIS_SEND_FLAGS_DISPATCH_LEVEL } else { 0 };
        let mut recv_flags = NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID;
        if dispatch {
            recv_flags |= NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL;
        }
        if rounds.is_multiple_of(3) {
            recv_flags |= NDIS_RECEIVE_FLAGS_RESOURCES;
        }
        // A paused or detached stack hands nothing to the filter: None, and nothing to check.
        let _ = m.send(idx, batch(BATCH, 2, handles), send_flags, 0);
        let _ = m.indicate(idx, batch(BATCH, 1, handles), recv_flags, 0);
        rounds += 1;
    }
    rounds
}

fn pause_restart(m: &Model, cycles: u32) {
    for _ in 0..cycles {
        m.pause(PAUSED);
        std::thread::sleep(Duration::from_micros(300));
        assert_eq!(m.restart(PAUSED), 0);
        std::thread::sleep(Duration::from_micros(700));
    }
}

fn detach_attach(m: &Model, cycles: u32) {
    for _ in 0..cycles {
        m.pause(DETACHED);
        m.detach(DETACHED);
        assert_eq!(m.miniport(DETACHED).state(), MpState::Detached);
        std::thread::sleep(Duration::from_micros(300));
        assert_eq!(m.attach(DETACHED), 0);
        assert_eq!(m.restart(DETACHED), 0);
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sessions(cycles: u32) {
    for i in 0..cycles {
        match i % 4 {
            // Everything, verbose: per-segment events from every CPU.
            0 => etw::enable(5, u64::MAX, 0),
            // The light profile: lifecycle and usage only.
            1 => etw::enable(4, 0xB, 0),
            2 => etw::capture_state(),
            _ => etw::disable(),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    etw::disable();
}

fn timers(m: &Model, stop: &AtomicBool) {
    kernel::set_current_cpu(0);
    while !stop.load(Ordering::Relaxed) {
        m.fire_timers(true);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads, pages, resets and reconfigures; checks what the reads may and may not show.
fn control(m: &Model, rounds: u32) -> (u32, u32) {
    // Per module id: (resets, counters) of the last read.
    let mut last: HashMap<u32, (u32, Vec<u64>)> = HashMap::new();
    let mut resets_checked = 0;
    let mut config_changes = 0;
    for round in 0..rounds {
        for r in list(m) {
            let now = [growing(&r.receive), growing(&r.send)].concat();
            let mut counters = now.clone();
            counters.push(u64::from(r.distinct_handles));
            if let Some((resets, before)) = last.get(&r.id)
                && *resets == r.resets
            {
                for (i, (b, n)) in before.iter().zip(&counters).enumerate() {
                    assert!(n >= b, "module {} counter {i} went down from {b} to {n} without a reset", r.id);
                }
            }
            assert!(r.resets >= last.get(&r.id).map_or(0, |(x, _)| *x), "resets went down");
            last.insert(r.id, (r.resets, counters));
            // One page of its handle table; the module may be detached meanwhile.
            let p =
                m.ioctl(IOCTL_NBSHM_QUERY_HANDLES, &enc(&HandlesRequest::new(r.id, 0)), 1024, FILE_READ_DATA);
            if p.status == 0 {
                let page = decode_list::<HandleListHeader, HandleRecord>(&p.output).expect("a handle page");
                assert!(page.header.distinct <= page.header.capacity);
            } else {
                assert_eq!(p.status, STATUS_NOT_FOUND, "{p:?}");
            }
        }
        match round % 10 {
            3 => {
                let before = handed(m);
                let r = m.ioctl(IOCTL_NBSHM_RESET_STATS, &enc(&ResetRequest::new(ALL_MODULES)), 16, RW);
                assert_eq!(r.status, 0, "{r:?}");
                let seen: u64 = list(m).iter().map(|r| r.receive.nbls + r.send.nbls).sum();
                let since = handed(m) - before;
                let in_flight = u64::from(CPUS) * BATCH as u64;
                assert!(
                    seen <= since + in_flight,
                    "after a reset the modules show {seen} NBLs, but only {since} were handed to the \
                     filter since (+{in_flight} in flight): counts from before the reset survived it"
                );
                resets_checked += 1;
            }
            5 => {
                let (k, v) = match round % 40 {
                    5 => (Keyword::MaxSegmentsPerNetBuffer, 1 + round % 70),
                    15 => (Keyword::SendPathWalk, (round / 40) % 2),
                    25 => (Keyword::UsageIntervalMs, 100 + round),
                    _ => (Keyword::VerboseSegments, (round / 40) % 2),
                };
                let r = set(m, k, v);
                assert_eq!(r.status, 0, "{k:?} = {v}: {r:?}");
                config_changes += 1;
            }
            7 => {
                let r = set(m, Keyword::ReceivePathWalk, (round / 10) % 2);
                assert!(!is_error(r.status), "{r:?}");
                config_changes += 1;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    (resets_checked, config_changes)
}

#[test]
fn everything_at_once_on_every_cpu() {
    let opts = ModelOptions { cpus: CPUS, ..ModelOptions::default() };
    let m = running(MINIPORTS, opts);
    etw::forward(|_| {
        EVENTS.fetch_add(1, Ordering::Relaxed);
    });
    let stop = AtomicBool::new(false);
    let (rounds, (resets, changes)) = std::thread::scope(|s| {
        let (m, stop) = (&m, &stop);
        let cpus: Vec<_> = (0..CPUS).map(|cpu| s.spawn(move || traffic(m, cpu, stop))).collect();
        let timer = s.spawn(move || timers(m, stop));
        let work = [
            s.spawn(move || pause_restart(m, 40)),
            s.spawn(move || detach_attach(m, 15)),
            s.spawn(|| {
                kernel::set_current_cpu(1);
                sessions(80);
            }),
        ];
        let control = s.spawn(move || control(m, 200));
        let control = control.join().expect("control thread");
        for w in work {
            w.join().expect("lifecycle or ETW thread");
        }
        stop.store(true, Ordering::Relaxed);
        timer.join().expect("timer thread");
        let rounds: Vec<usize> = cpus.into_iter().map(|t| t.join().expect("traffic thread")).collect();
        (rounds, control)
    });
    assert!(rounds.iter().all(|&r| r > 0), "every CPU sent traffic: {rounds:?}");
    assert_eq!((resets, changes), (20, 40));
    let [sent, _, indicated, _] = m.totals();
    eprintln!(
        "stress: {sent} NBLs sent, {indicated} indicated, rounds per CPU {rounds:?}, {} ETW events",
        EVENTS.load(Ordering::Relaxed)
    );
    assert!(EVENTS.load(Ordering::Relaxed) > 0, "the sessions received events");
    assert_clean(&m);

    // Quiet now: defaults back, a reset, then a known burst on every CPU is counted exactly.
    for k in [Keyword::MaxSegmentsPerNetBuffer, Keyword::SendPathWalk, Keyword::ReceivePathWalk] {
        assert_eq!(set(&m, k, k.info().default).status, 0);
    }
    let r = m.ioctl(IOCTL_NBSHM_RESET_STATS, &enc(&ResetRequest::new(ALL_MODULES)), 16, RW);
    assert_eq!(r.status, 0);
    for mp in m.miniports() {
        assert_eq!(mp.state(), MpState::Running);
        mp.reset_expectations();
    }
    std::thread::scope(|s| {
        for cpu in 0..CPUS {
            let m = &m;
            s.spawn(move || {
                kernel::set_current_cpu(cpu);
                for idx in 0..MINIPORTS {
                    for _ in 0..10 {
                        m.send(idx, batch(BATCH, 2, 3), NDIS_SEND_FLAGS_DISPATCH_LEVEL, 0).expect("running");
                        let flags =
                            NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL;
                        m.indicate(idx, batch(BATCH, 1, 3), flags, 0).expect("running");
                    }
                }
            });
        }
    });
    assert!(m.quiesce());
    assert_stats_match(&m);
    for r in list(&m) {
        assert_eq!(r.receive.nbls, u64::from(CPUS) * 10 * BATCH as u64);
        assert_eq!(r.send.net_buffers, u64::from(CPUS) * 10 * BATCH as u64 * 2);
    }
    assert_clean(&m);
    let mut m = m;
    m.unload();
    assert!(kernel::pool_allocations().is_empty(), "pool left after unload");
    assert_clean(&m);
}
