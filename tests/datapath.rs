//! The data path under the model: pass-through and ownership, RESOURCES receives, asynchronous
//! completion, the paused paths, dispatch flags, the walk rules, every anomaly kind, and
//! multi-CPU traffic with pause/restart churn; statistics must equal what the model generated.

mod common;

use std::time::Duration;

use common::{assert_clean, assert_stats_match, batch, nbl, running, summary};
use nbshm::config::{CONFIG, Keyword};
use nbshm::host::model::ModelOptions;
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec, TRAP_HANDLE};
use nbshm::host::traffic::{Inject, TrafficSpec, run};
use nbshm::host::violations;
use nbshm::shmem::AnomalyKind;
use nbshm::stats::Direction;
use nbshm::sys::*;

const VALID: u32 = NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID;

#[test]
fn every_nbl_comes_back_exactly_once_and_unchanged() {
    let m = running(1, ModelOptions::default());
    let mut handed = 0;
    for i in 0..200 {
        let flags = if i % 2 == 0 { NDIS_SEND_FLAGS_DISPATCH_LEVEL } else { 0 };
        handed += m.send(0, batch(1 + i % 7, 1 + i % 3, 4), flags, 0).unwrap().nbls;
        let rflags = VALID | if i % 3 == 0 { NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL } else { 0 };
        handed += m.indicate(0, batch(1 + i % 5, 1, 4), rflags, 0).unwrap().nbls;
    }
    assert_clean(&m);
    let [sent, completed, indicated, returned] = m.totals();
    assert_eq!(sent + indicated, handed);
    assert_eq!((completed, returned), (sent, indicated));
    assert_stats_match(&m);
}

#[test]
fn resources_receives_are_back_when_the_callback_returns() {
    let m = running(1, ModelOptions::default());
    for _ in 0..50 {
        let before = m.live_nbls();
        m.indicate(0, batch(4, 1, 2), VALID | NDIS_RECEIVE_FLAGS_RESOURCES, 0).unwrap();
        assert_eq!(m.live_nbls(), before, "nothing retained past the indication");
    }
    assert_clean(&m);
    assert_stats_match(&m);
    assert_eq!(summary(&m.miniport(0)).receive.net_buffers, 200);
}

#[test]
fn synchronous_completion_works_too() {
    let m = running(1, ModelOptions { asynchronous: false, ..ModelOptions::default() });
    for _ in 0..50 {
        m.send(0, batch(3, 2, 2), 0, 0).unwrap();
        m.indicate(0, batch(3, 1, 2), VALID, 0).unwrap();
        assert_eq!(m.live_nbls(), 0, "completed inside the hand-off call");
    }
    assert_clean(&m);
    assert_stats_match(&m);
}

#[test]
fn a_paused_filter_rejects_sends_and_returns_receives_without_walking() {
    let m = running(1, ModelOptions::default());
    m.pause_filter_only(0);
    for dispatch in [false, true] {
        let sflags = if dispatch { NDIS_SEND_FLAGS_DISPATCH_LEVEL } else { 0 };
        let h = m.send(0, batch(5, 2, 1), sflags, 0).unwrap();
        assert_eq!(h.forwarded, 0, "a paused filter passes nothing down");
        let rflags = VALID | if dispatch { NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL } else { 0 };
        let h = m.indicate(0, batch(4, 1, 1), rflags, 0).unwrap();
        assert_eq!(h.forwarded, 0);
        let h = m.indicate(0, batch(3, 1, 1), rflags | NDIS_RECEIVE_FLAGS_RESOURCES, 0).unwrap();
        assert_eq!(h.forwarded, 0);
    }
    assert_clean(&m);
    let s = summary(&m.miniport(0));
    assert_eq!((s.send.net_buffers, s.receive.net_buffers), (0, 0), "never walked");
    assert_eq!(s.send.rejected_nbls, 10);
    assert_eq!(s.receive.rejected_nbls, 14);
    assert_stats_match(&m);
    // Back to running: traffic passes again.
    assert_eq!(m.restart(0), 0);
    assert_eq!(m.send(0, batch(2, 1, 1), 0, 0).unwrap().forwarded, 2);
    assert_clean(&m);
}

#[test]
fn pause_waits_for_the_modules_nbls_and_completes_later() {
    // The protocol above holds receives for up to 50 ms: the filter must pend its pause until
    // they are back, then call NdisFPauseComplete.
    let opts = ModelOptions { max_delay: Duration::from_millis(50), ..ModelOptions::default() };
    let m = running(1, opts);
    m.indicate(0, batch(16, 1, 2), VALID, 0).unwrap();
    assert!(m.live_nbls() > 0, "receives are out with the protocol");
    m.pause_filter_only(0);
    assert_eq!(m.miniport(0).pauses_pended(), 1, "FilterPause returned pending");
    assert_eq!(m.live_nbls(), 0, "the pause completed only once every NBL was back");
    assert_clean(&m);
    assert_stats_match(&m);
}

#[test]
fn receives_without_the_valid_flag_are_counted_not_walked() {
    let m = running(1, ModelOptions::default());
    // The slot holds something that is not a chain: an unmapped address the driver would fault
    // on, and a misaligned one.
    let garbage = |v: usize| NblSpec { nbs: vec![NbSpec { data_length: 60, chain: ChainSpec::Raw(v) }] };
    m.indicate(0, vec![garbage(0x0BAD_0000_0000), garbage(0x0BAD_0000_0003)], 0, 0).unwrap();
    m.indicate(0, vec![garbage(0x0BAD_0000_0000)], NDIS_RECEIVE_FLAGS_RESOURCES, 0).unwrap();
    assert_clean(&m);
    let s = summary(&m.miniport(0));
    assert_eq!((s.receive.net_buffers, s.receive.walked, s.receive.segments), (3, 0, 0));
    assert_stats_match(&m);
}

#[test]
fn send_path_walk_switch() {
    let m = running(1, ModelOptions::default());
    m.send(0, batch(4, 1, 1), 0, 0).unwrap();
    assert!(m.quiesce());
    CONFIG.set(Keyword::SendPathWalk, 0).unwrap();
    m.send(0, batch(4, 1, 1), 0, 0).unwrap();
    assert!(m.quiesce());
    CONFIG.set(Keyword::SendPathWalk, 1).unwrap();
    let s = summary(&m.miniport(0));
    assert_eq!((s.send.net_buffers, s.send.walked, s.send.segments), (8, 4, 4));
    assert_clean(&m);
    assert_stats_match(&m);
}

fn defect(chain: ChainSpec) -> NblSpec {
    NblSpec { nbs: vec![NbSpec { data_length: 100, chain }] }
}

#[test]
fn every_anomaly_kind_is_counted_once_per_net_buffer_and_the_packet_passes() {
    let m = running(1, ModelOptions::default());
    let ok = SegmentSpec { handle: 0x4000, offset: 0, length: 100, flags: 0 };
    let bound = CONFIG.max_segments() as usize;
    let cases = [
        (AnomalyKind::Overlong, ChainSpec::Cycle { segments: vec![ok, ok], back_to: 0 }),
        (AnomalyKind::Overlong, ChainSpec::Cycle { segments: vec![ok], back_to: 0 }),
        (AnomalyKind::Overlong, ChainSpec::List(vec![ok; bound + 1])),
        (AnomalyKind::OffsetOverflow, ChainSpec::List(vec![SegmentSpec { offset: u32::MAX - 10, ..ok }])),
        (
            AnomalyKind::NullHandle,
            ChainSpec::List(vec![ok, SegmentSpec { handle: 0, ..ok }, SegmentSpec { handle: 0, ..ok }]),
        ),
        (
            AnomalyKind::ZeroLength,
            ChainSpec::List(vec![SegmentSpec { length: 0, ..ok }, SegmentSpec { length: 0, ..ok }]),
        ),
        (AnomalyKind::BadPointer, ChainSpec::Broken { segments: vec![ok], link: 0x4003 }),
        (AnomalyKind::BadPointer, ChainSpec::Broken { segments: vec![ok], link: 0x10 }),
    ];
    let mut want = [0u64; 5];
    for (kind, chain) in &cases {
        want[kind.index()] += 1;
        let h = m.indicate(0, vec![defect(chain.clone())], VALID, 0).unwrap();
        assert_eq!(h.forwarded, 1, "{kind:?}: the packet still passes");
        let h = m.send(0, vec![defect(chain.clone())], 0, 0).unwrap();
        assert_eq!(h.forwarded, 1, "{kind:?}: the packet still passes");
    }
    assert_clean(&m);
    let s = summary(&m.miniport(0));
    assert_eq!(s.receive.anomalies, want);
    assert_eq!(s.send.anomalies, want);
    assert_eq!(s.receive.max_chain, CONFIG.max_segments(), "cycles stop at the bound");
    assert_stats_match(&m);
}

#[test]
fn the_bound_follows_max_segments_per_net_buffer() {
    let m = running(1, ModelOptions::default());
    CONFIG.set(Keyword::MaxSegmentsPerNetBuffer, 4).unwrap();
    let ok = SegmentSpec { handle: 0x4000, offset: 0, length: 10, flags: 0 };
    m.indicate(0, vec![defect(ChainSpec::List(vec![ok; 5])), defect(ChainSpec::List(vec![ok; 4]))], VALID, 0)
        .unwrap();
    assert!(m.quiesce());
    CONFIG.set(Keyword::MaxSegmentsPerNetBuffer, 64).unwrap();
    let s = summary(&m.miniport(0));
    assert_eq!(s.receive.anomalies[AnomalyKind::Overlong.index()], 1);
    assert_eq!((s.receive.segments, s.receive.max_chain), (8, 4));
    assert_clean(&m);
    assert_stats_match(&m);
}

#[test]
fn handles_are_counted_per_module() {
    let m = running(2, ModelOptions::default());
    m.indicate(0, vec![nbl(0x1000, 0, 100), nbl(0x2000, 0, 100), nbl(0x1000, 4096, 300)], VALID, 0).unwrap();
    m.send(1, vec![nbl(0x3000, 0, 100)], 0, 0).unwrap();
    assert_clean(&m);
    assert_eq!(summary(&m.miniport(0)).distinct_handles, 2);
    assert_eq!(summary(&m.miniport(1)).distinct_handles, 1);
    assert_stats_match(&m);
}

#[test]
fn multi_cpu_traffic_with_churn_conserves_every_nbl_and_counts_exactly() {
    let m = running(2, ModelOptions::default());
    let spec = TrafficSpec {
        nbls: 4000,
        nbs_per_nbl: 2,
        batch: 8,
        churn: 12,
        resources_fraction: 0.3,
        inject: Inject::ALL.iter().map(|k| (*k, 5)).collect(),
        seed: 7,
        ..TrafficSpec::default()
    };
    let r = run(&m, &spec, 2);
    assert_eq!(r.contract_violations, 0, "{:?}", violations::list());
    assert_eq!((r.sent_nbls, r.indicated_nbls), (r.send_completed_nbls, r.returned_nbls));
    assert_eq!(r.sent_nbls + r.indicated_nbls, 4 * 4000, "the quota: 2 miniports x 2 directions");
    assert!(r.driver.rejected_nbls > 0, "churn made the filter reject traffic while paused");
    assert_eq!(r.driver, r.generated, "driver statistics equal what the model generated");
    assert_eq!(r.driver_distinct_handles, r.generated_distinct_handles);
    assert_eq!(r.injected, [10, 5, 5, 5, 5], "cycles and overlong chains both count as overlong");
    assert_eq!(r.driver.anomalies, r.injected, "each injected defect counted exactly once");
    assert_eq!(r.churn_cycles, 12);
    assert_clean(&m);
}

#[test]
fn the_model_catches_a_filter_that_breaks_the_rules() {
    // Drive the model's NDIS exports the way a broken filter would, and check each breach is
    // recorded: these are the checks every other test relies on being able to fail.
    let m = running(1, ModelOptions::default());
    let mp = m.miniport(0);
    let h = mp.filter_handle();
    violations::reset();
    // A chain the filter never received.
    let mut stray = nbshm::host::packets::ModelNbl::build(999_999, 0, Direction::Send, nbl(0x1000, 0, 10));
    // SAFETY: calling the model's export with a model NBL.
    unsafe { NdisFSendNetBufferLists(h, stray.as_nbl(), 0, 0) };
    assert!(
        violations::list().iter().any(|v| v.message.contains("held by Model")),
        "{:?}",
        violations::list()
    );
    violations::reset();
    // A pause completion nobody asked for.
    // SAFETY: as above.
    unsafe { NdisFPauseComplete(h) };
    assert!(violations::list().iter().any(|v| v.api == "NdisFPauseComplete"));
    violations::reset();
    // A DISPATCH flag at PASSIVE.
    // SAFETY: as above (an empty chain is refused after the flag check).
    unsafe { NdisFReturnNetBufferLists(h, std::ptr::null_mut(), NDIS_RETURN_FLAGS_DISPATCH_LEVEL) };
    assert!(violations::list().iter().any(|v| v.message.contains("DISPATCH_LEVEL flag")));
    violations::reset();
    // A foreign handle.
    // SAFETY: as above.
    unsafe { NdisFIndicateStatus(std::ptr::without_provenance_mut(0x1234), std::ptr::null_mut()) };
    assert!(violations::count() > 0);
    violations::reset();
    drop(stray);
    assert_clean(&m);
}

#[test]
fn touching_an_nbl_after_hand_off_is_caught() {
    // The model replaces FirstNetBuffer with a trap while it holds an NBL: a walk of an NBL the
    // filter already passed on reaches the trap segment, whose handle shows in the driver's
    // handle table. Here we play the filter and walk a held NBL ourselves.
    let m = running(1, ModelOptions { max_delay: Duration::from_millis(20), ..ModelOptions::default() });
    let mut b = nbshm::host::packets::ModelNbl::build(1, 0, Direction::Send, nbl(0x1000, 0, 10));
    b.poison();
    // SAFETY: a live model NBL.
    let nb = unsafe { (*b.as_nbl()).FirstNetBuffer };
    // SAFETY: the trap NET_BUFFER is static and readable.
    let shm = unsafe { (*nb).SharedMemoryInfo };
    // SAFETY: the trap segment is static and readable.
    assert_eq!(unsafe { (*shm).SharedMemoryHandle }.addr(), TRAP_HANDLE);
    b.unpoison();
    assert!(b.unchanged());
    assert_clean(&m);
}
