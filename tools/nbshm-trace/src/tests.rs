//! The summarizer against a decoded sample the project generates: nbshm-sim's events (the real
//! driver under the model, with a verbose session on from before the driver loads) rendered as
//! event-schema XML, parsed back and summarized; the figures must equal the simulator's.

use std::sync::{Arc, Mutex};

use super::*;

fn run_sim(args: &[&str]) -> (String, serde_json::Value) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let code = nbshm_sim::main_with(&args, &nbshm_sim::Output::Buffer(Arc::clone(&buf)));
    assert_eq!(code, 0);
    let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let (events, summary) = out.trim_end().rsplit_once('\n').unwrap();
    (events.to_owned(), serde_json::from_str(summary).unwrap())
}

#[test]
fn field_signatures_match_the_driver_schema() {
    let ours: Vec<(&str, std::collections::BTreeSet<&str>)> =
        SIGNATURES.iter().map(|(n, f)| (*n, f.iter().copied().collect())).collect();
    let driver: Vec<(&str, std::collections::BTreeSet<&str>)> =
        nbshm::etw::EVENTS.iter().map(|e| (e.name, e.fields.iter().map(|f| f.0).collect())).collect();
    assert_eq!(ours, driver);
    assert_eq!(PROVIDER_NAME, nbshm::names::ETW_PROVIDER_NAME);
    let guid = String::from_utf8(nbshm::etw::provider_id().to_utf8_bytes().to_vec()).unwrap();
    assert!(include_str!("main.rs").contains(&guid), "the renderer's GUID is the provider's");
}

#[test]
fn decoded_sample_summarizes_to_the_simulators_figures() {
    let (jsonl, sim) = run_sim(&[
        "--events",
        "--json",
        "--miniports",
        "2",
        "--nbls",
        "300",
        "--segments",
        "2",
        "--inject",
        "null_handle=2",
        "--inject",
        "cycle=1",
        "--seed",
        "9",
    ]);
    let xml = render_xml(&jsonl, "aab8608e-524a-5040-b756-a83bade72c1f").unwrap();
    let from_xml = parse(&xml).unwrap();
    let from_json = parse(&jsonl).unwrap();
    assert_eq!(from_xml, from_json, "both decoders' layouts give the same events");
    let s = summarize(&from_xml);
    assert_eq!(s.modules.len(), 2);
    let (mut nbs, mut segs, mut bytes, mut null_handle, mut overlong, mut handles) = (0, 0, 0, 0, 0, 0);
    for m in s.modules.values() {
        assert!(m.detached && m.name.starts_with("Simulated VMQ Ethernet Adapter"));
        let (rx, tx) = (m.usage[0].unwrap(), m.usage[1].unwrap());
        nbs += rx.net_buffers + tx.net_buffers;
        segs += rx.segments + tx.segments;
        bytes += rx.shared_bytes + tx.shared_bytes;
        null_handle += rx.anomalies[2] + tx.anomalies[2];
        overlong += rx.anomalies[0] + tx.anomalies[0];
        handles += m.distinct_handles;
        // The verbose events, recounted, agree with the driver's counters.
        assert_eq!(m.recount.segments, [rx.segments, tx.segments]);
        assert_eq!(m.recount.bytes, [rx.shared_bytes, tx.shared_bytes]);
        assert_eq!(m.recount.handles as u64, m.distinct_handles);
        assert_eq!(
            m.recount.anomalies.iter().sum::<u64>(),
            rx.anomalies.iter().sum::<u64>() + tx.anomalies.iter().sum::<u64>()
        );
        // HandleUsage adds up to the segments too.
        let hs: u64 = m.handles.values().map(|h| h.segments[0] + h.segments[1]).sum();
        assert_eq!(
            hs,
            rx.segments + tx.segments - (rx.anomalies[2] + tx.anomalies[2]),
            "NULL-handle segments are not a handle"
        );
    }
    let n = |k: &str| sim[k].as_u64().unwrap();
    assert_eq!(nbs, n("net_buffers"));
    assert_eq!(segs, n("segments"));
    assert_eq!(bytes, n("shared_bytes"));
    assert_eq!(handles, n("distinct_handles"));
    assert_eq!((null_handle, overlong), (2, 1));
    let text = render_text(&s);
    // Where the two NULL handles land (which module, which direction) depends on thread timing:
    // the per-direction lines of the text must add up to them.
    let null_handles: u64 = text
        .split("null_handle ")
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(text.contains("distinct handles") && null_handles == 2, "{text}");
    let json = render_json(&s);
    assert_eq!(json["modules"].as_array().unwrap().len(), 2);
}

#[test]
fn events_are_recognised_by_their_fields_when_the_name_is_lost() {
    let xml = r#"<Events><Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>
        <Provider Name="Nbshm.SharedMemoryFilter" Guid="{aab8608e-524a-5040-b756-a83bade72c1f}"/><Task>0</Task></System>
        <EventData><Data Name="ModuleId">3</Data><Data Name="IfIndex">12</Data><Data Name="Handle">0xFFFFA00012340000</Data>
        <Data Name="ReceiveSegments">5</Data><Data Name="ReceiveBytes">7570</Data><Data Name="SendSegments">0</Data>
        <Data Name="SendBytes">0</Data><Data Name="MinOffset">0</Data><Data Name="MaxEnd">8192</Data></EventData></Event>
        <Event><System><Provider Name="Other.Provider"/></System><EventData><Data Name="ModuleId">9</Data></EventData></Event>
        </Events>"#;
    let ev = parse(xml).unwrap();
    assert_eq!(ev.len(), 1, "other providers are skipped");
    assert_eq!(ev[0].name, "HandleUsage");
    let s = summarize(&ev);
    let h = s.modules[&3].handles[&0xFFFF_A000_1234_0000];
    assert_eq!((h.segments[0], h.bytes[0], h.max_end), (5, 7570, 8192));
}

#[test]
fn bad_input_is_reported() {
    assert!(parse("<Events><Event>").is_err());
    assert!(parse("{\"event\": ").is_err());
    assert!(parse("Date,Provider\n").is_err());
    assert_eq!(parse("  \n").unwrap(), vec![]);
}
