//! ETW events through the model's simulated session: each event fires when it should, carries
//! the documented fields (docs/etw.md), and verbose events are not produced unless the session's
//! level and keywords ask for them. The session filter is ETW's (level <= session level, keyword
//! matching any/all masks).

mod common;

use std::collections::BTreeMap;

use common::{assert_clean, nbl, running, summary};
use nbshm::config::{CONFIG, Keyword};
use nbshm::etw::{EVENTS, KW_ANOMALY, KW_LIFECYCLE, KW_NETBUFFER, KW_SEGMENT, KW_USAGE};
use nbshm::host::etw::{self as recorder, Recorded};
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};
use nbshm::sys::*;

const VALID: u32 = NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID;

fn named<'a>(events: &'a [Recorded], name: &str) -> Vec<&'a Recorded> {
    events.iter().filter(|e| e.name == name).collect()
}

/// Every recorded event has exactly the schema's fields, in order, and its level and keywords.
fn assert_schema(events: &[Recorded]) {
    for e in events {
        let schema =
            EVENTS.iter().find(|s| s.name == e.name).unwrap_or_else(|| panic!("{} not in schema", e.name));
        assert_eq!(e.level, schema.level.as_int(), "{}", e.name);
        assert_eq!(e.keywords, schema.keywords, "{}", e.name);
        let got: Vec<&str> = e.fields.iter().map(|f| f.0).collect();
        let want: Vec<&str> = schema.fields.iter().map(|f| f.0).collect();
        assert_eq!(got, want, "{}", e.name);
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(json["event"], e.name);
    }
}

fn chain_nbl(segments: &[(usize, u32, u32)]) -> NblSpec {
    NblSpec {
        nbs: vec![NbSpec {
            data_length: segments.iter().map(|s| s.2).sum(),
            chain: ChainSpec::List(
                segments
                    .iter()
                    .map(|&(handle, offset, length)| SegmentSpec { handle, offset, length, flags: 0x5 })
                    .collect(),
            ),
        }],
    }
}

#[test]
fn lifecycle_events_carry_the_module_and_driver_facts() {
    let mut m = Model::new(ModelOptions { cpus: 3, ..ModelOptions::default() });
    recorder::enable(4, KW_LIFECYCLE, 0);
    assert_eq!(m.load(), 0);
    let (i, _) = m.add_miniport("Contoso VMQ NIC");
    assert_eq!(m.restart(i), 0);
    m.indicate(i, vec![nbl(0x7000, 0, 100)], VALID, 0).unwrap();
    assert!(m.quiesce(), "the receive is back, so the pause completes at once (Pending 0)");
    m.pause(i);
    m.detach(i);
    m.unload();
    let ev = recorder::take();
    assert_schema(&ev);
    let names: Vec<&str> = ev.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "DriverLoaded",
            "FilterAttached",
            "FilterRestarted",
            "FilterPaused",
            "FilterDetached",
            "DriverUnloading"
        ]
    );
    let loaded = &ev[0];
    assert_eq!((loaded.u64("NdisMajor"), loaded.u64("NdisMinor"), loaded.u64("Processors")), (6, 30, 3));
    assert_eq!(loaded.str("Version"), env!("CARGO_PKG_VERSION"));
    let mp = m.miniport(i);
    let att = &ev[1];
    assert_eq!(att.u64("IfIndex"), u64::from(mp.if_index));
    assert_eq!(att.str("MiniportName"), "Contoso VMQ NIC");
    assert_eq!((att.u64("MediaType"), att.u64("State"), att.u64("HandleTableSize")), (0, 2, 256));
    let id = att.u64("ModuleId");
    for e in &ev[1..5] {
        assert_eq!(e.u64("ModuleId"), id, "{}", e.name);
    }
    assert_eq!((ev[3].u64("Pending"), ev[3].u64("PauseReason")), (0, u64::from(NDIS_PAUSE_NDIS_INTERNAL)));
    let det = &ev[4];
    assert_eq!((det.u64("ReceiveNetBuffers"), det.u64("Segments"), det.u64("SharedBytes")), (1, 1, 100));
    assert_eq!((det.u64("DistinctHandles"), det.u64("Anomalies")), (1, 0));
    assert_clean(&m);
}

#[test]
fn segment_and_net_buffer_events_report_what_was_in_memory() {
    let m = running(1, ModelOptions::default());
    recorder::enable(5, KW_SEGMENT | KW_NETBUFFER, 0);
    let _ = recorder::take();
    let segs = [(0x1_0000, 4096, 128), (0x1_0000, 8192, 1386), (0x2_0000, 0, 60)];
    m.indicate(0, vec![chain_nbl(&segs[..2]), chain_nbl(&segs[2..])], VALID, 0).unwrap();
    m.send(0, vec![chain_nbl(&segs[2..])], 0, 0).unwrap();
    assert!(m.quiesce());
    let ev = recorder::take();
    assert_schema(&ev);
    let seg_ev = named(&ev, "SharedMemorySegment");
    let got: Vec<(String, usize, u64, u64, u64, u64)> = seg_ev
        .iter()
        .map(|e| {
            (
                e.str("Direction").to_owned(),
                usize::try_from(e.u64("Handle")).unwrap(),
                e.u64("Offset"),
                e.u64("Length"),
                e.u64("SegmentIndex"),
                e.u64("Flags"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("receive".into(), 0x1_0000, 4096, 128, 0, 5),
            ("receive".into(), 0x1_0000, 8192, 1386, 1, 5),
            ("receive".into(), 0x2_0000, 0, 60, 0, 5),
            ("send".into(), 0x2_0000, 0, 60, 0, 5),
        ]
    );
    let nb_ev = named(&ev, "NetBufferSharedMemory");
    let got: Vec<(u64, u64, u64)> =
        nb_ev.iter().map(|e| (e.u64("Segments"), e.u64("SharedBytes"), e.u64("DataLength"))).collect();
    assert_eq!(got, vec![(2, 1514, 1514), (1, 60, 60), (1, 60, 60)]);
    // Nbl/NbIndex tie segments to their NET_BUFFER.
    assert_eq!(seg_ev[0].u64("Nbl"), nb_ev[0].u64("Nbl"));
    assert_ne!(seg_ev[2].u64("Nbl"), nb_ev[0].u64("Nbl"));
    assert_clean(&m);
}

#[test]
fn verbose_events_need_level_5_the_keyword_and_verbose_segments() {
    let m = running(1, ModelOptions::default());
    let traffic = || {
        m.indicate(0, vec![nbl(0x1000, 0, 100), nbl(0x2000, 0, 200)], VALID, 0).unwrap();
        m.send(0, vec![nbl(0x1000, 0, 100)], NDIS_SEND_FLAGS_DISPATCH_LEVEL, 0).unwrap();
        assert!(m.quiesce());
        recorder::take()
    };
    // No session at all.
    recorder::disable();
    let _ = recorder::take();
    assert!(traffic().is_empty());
    // Level 4, every keyword: lifecycle/usage only, no verbose events.
    recorder::enable(4, u64::MAX, 0);
    let _ = recorder::take();
    assert!(traffic().iter().all(|e| e.level <= 4), "no verbose event at level 4");
    // Level 5 but only the Usage/Lifecycle keywords.
    recorder::enable(5, KW_USAGE | KW_LIFECYCLE, 0);
    let _ = recorder::take();
    assert!(traffic().is_empty());
    // Level 5 with the NetBuffer keyword only: per-NET_BUFFER events, no per-segment ones.
    recorder::enable(5, KW_NETBUFFER, 0);
    let ev = traffic();
    assert_eq!(named(&ev, "NetBufferSharedMemory").len(), 3);
    assert!(named(&ev, "SharedMemorySegment").is_empty());
    // Segment keyword, but VerboseSegments = 0.
    recorder::enable(5, KW_SEGMENT, 0);
    CONFIG.set(Keyword::VerboseSegments, 0).unwrap();
    assert!(traffic().is_empty());
    CONFIG.set(Keyword::VerboseSegments, 1).unwrap();
    assert_eq!(named(&traffic(), "SharedMemorySegment").len(), 3);
    // match-all: Segment required together with NetBuffer.
    recorder::enable(5, KW_SEGMENT | KW_NETBUFFER, KW_SEGMENT | KW_NETBUFFER);
    assert!(traffic().is_empty(), "no event carries both keywords");
    recorder::disable();
    assert_clean(&m);
}

#[test]
fn chain_anomalies_are_warnings_with_their_kind_and_position() {
    let m = running(1, ModelOptions::default());
    recorder::enable(3, KW_ANOMALY, 0);
    let _ = recorder::take();
    let ok = SegmentSpec { handle: 0x4000, offset: 0, length: 100, flags: 0 };
    let one = |chain| NblSpec { nbs: vec![NbSpec { data_length: 100, chain }] };
    let specs = vec![
        one(ChainSpec::List(vec![ok, SegmentSpec { handle: 0, ..ok }, SegmentSpec { length: 0, ..ok }])),
        one(ChainSpec::Cycle { segments: vec![ok], back_to: 0 }),
        one(ChainSpec::List(vec![SegmentSpec { offset: u32::MAX, ..ok }])),
        one(ChainSpec::Broken { segments: vec![ok, ok], link: 0x10 }),
    ];
    m.indicate(0, specs, VALID, 0).unwrap();
    assert!(m.quiesce());
    let ev = recorder::take();
    assert_schema(&ev);
    let got: BTreeMap<(u64, String), u64> = named(&ev, "ChainAnomaly")
        .iter()
        .map(|e| ((e.u64("Nbl"), e.str("Kind").to_owned()), e.u64("SegmentIndex")))
        .collect();
    let mut kinds: Vec<(String, u64)> = got.iter().map(|((_, k), i)| (k.clone(), *i)).collect();
    kinds.sort();
    let bound = u64::from(CONFIG.max_segments());
    assert_eq!(
        kinds,
        vec![
            ("bad_pointer".into(), 2),
            ("null_handle".into(), 1),
            ("offset_overflow".into(), 0),
            ("overlong".into(), bound),
            ("zero_length".into(), 2),
        ]
    );
    assert!(ev.iter().all(|e| e.name == "ChainAnomaly" && e.level == 3));
    // With the Anomaly keyword off, the counters still count but nothing is written.
    recorder::enable(5, KW_SEGMENT, 0);
    let _ = recorder::take();
    m.indicate(0, vec![one(ChainSpec::List(vec![SegmentSpec { handle: 0, ..ok }]))], VALID, 0).unwrap();
    assert!(m.quiesce());
    assert!(named(&recorder::take(), "ChainAnomaly").is_empty());
    assert_eq!(summary(&m.miniport(0)).receive.anomalies[2], 2);
    recorder::disable();
    assert_clean(&m);
}

#[test]
fn enabling_a_session_writes_a_rundown_of_every_module() {
    let m = running(2, ModelOptions::default());
    m.indicate(0, vec![nbl(0x1000, 64, 100), nbl(0x2000, 0, 50)], VALID, 0).unwrap();
    m.send(1, vec![nbl(0x3000, 0, 70)], 0, 0).unwrap();
    assert!(m.quiesce());
    let _ = recorder::take();
    recorder::enable(4, KW_LIFECYCLE | KW_USAGE, 0);
    let ev = recorder::take();
    assert_schema(&ev);
    assert_eq!(named(&ev, "FilterAttached").len(), 2);
    assert!(named(&ev, "FilterAttached").iter().all(|e| e.u64("State") == 4), "running");
    let snaps = named(&ev, "UsageSnapshot");
    assert_eq!(snaps.len(), 4, "two modules, two directions");
    for s in &snaps {
        assert_eq!(s.u64("IntervalMs"), 0, "a rundown, not the timer");
        let mp = m.miniports().into_iter().find(|mp| u64::from(mp.if_index) == s.u64("IfIndex")).unwrap();
        let sum = summary(&mp);
        let d = if s.str("Direction") == "receive" { sum.receive } else { sum.send };
        assert_eq!(
            (s.u64("NetBuffers"), s.u64("Segments"), s.u64("SharedBytes")),
            (d.net_buffers, d.segments, d.shared_bytes)
        );
        assert_eq!(s.u64("DistinctHandles"), u64::from(sum.distinct_handles));
    }
    let handles: Vec<(u64, u64, u64, u64, u64)> = named(&ev, "HandleUsage")
        .iter()
        .map(|e| {
            (
                e.u64("Handle"),
                e.u64("ReceiveSegments"),
                e.u64("ReceiveBytes"),
                e.u64("SendBytes"),
                e.u64("MinOffset"),
            )
        })
        .collect();
    let mut handles = handles;
    handles.sort_unstable();
    assert_eq!(handles, vec![(0x1000, 1, 100, 0, 64), (0x2000, 1, 50, 0, 0), (0x3000, 0, 0, 70, 0)]);
    // A capture-state request writes the same rundown again.
    recorder::capture_state();
    assert_eq!(named(&recorder::take(), "UsageSnapshot").len(), 4);
    recorder::disable();
    assert_clean(&m);
}

#[test]
fn the_usage_timer_reports_while_running_and_stops_when_paused() {
    let m = running(1, ModelOptions::default());
    m.indicate(0, vec![nbl(0x1000, 0, 100)], VALID, 0).unwrap();
    assert!(m.quiesce());
    // No session: the timer fires but writes nothing.
    let _ = recorder::take();
    assert_eq!(m.fire_timers(true), 1);
    assert!(recorder::take().is_empty());
    recorder::enable(4, KW_USAGE, 0);
    let _ = recorder::take();
    assert_eq!(m.fire_timers(true), 1);
    let ev = recorder::take();
    assert_schema(&ev);
    let snaps = named(&ev, "UsageSnapshot");
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|s| s.u64("IntervalMs") == u64::from(CONFIG.get(Keyword::UsageIntervalMs))));
    assert_eq!(named(&ev, "HandleUsage").len(), 1);
    // Paused: the timer is cancelled.
    m.pause(0);
    assert_eq!(m.fire_timers(true), 0);
    assert_eq!(m.restart(0), 0);
    assert_eq!(m.fire_timers(true), 1);
    recorder::disable();
    assert_clean(&m);
}
