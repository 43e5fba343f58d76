//! `nbshm-sim` end to end through its command-line entry point: conservation, exact counting of
//! injected defects under churn and RESOURCES on two CPUs, capture input, the pass-through
//! baseline, events as JSON lines.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Output, main_with};

/// Runs the tool; returns (exit code, stdout, stderr placeholder).
fn sim(args: &[&str]) -> (i32, String, String) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let code = main_with(&args, &Output::Buffer(Arc::clone(&buf)));
    let out = String::from_utf8(buf.lock().unwrap().clone()).expect("utf-8 output");
    (i32::from(code), out, String::from("(diagnostics go to the test's stderr)"))
}

fn summary(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON")
}

fn u(v: &Value, path: &str) -> u64 {
    path.split('.').fold(v, |v, k| &v[k]).as_u64().unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn churn_resources_two_cpus_and_every_defect() {
    let (code, out, err) = sim(&[
        "--json",
        "--cpus",
        "2",
        "--miniports",
        "3",
        "--nbls",
        "3000",
        "--nbs-per-nbl",
        "2",
        "--churn",
        "9",
        "--resources-fraction",
        "0.5",
        "--inject",
        "cycle=4",
        "--inject",
        "overlong=3",
        "--inject",
        "offset_overflow=2",
        "--inject",
        "null_handle=5",
        "--inject",
        "zero_length=1",
        "--seed",
        "42",
    ]);
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(u(&s, "sent_nbls"), 3 * 3000);
    assert_eq!(u(&s, "sent_nbls"), u(&s, "send_completed_nbls"));
    assert_eq!(u(&s, "indicated_nbls"), 3 * 3000);
    assert_eq!(u(&s, "indicated_nbls"), u(&s, "returned_nbls"));
    assert_eq!(u(&s, "contract_violations"), 0);
    assert_eq!(u(&s, "anomalies.overlong"), 7, "cycles count as overlong");
    assert_eq!(u(&s, "anomalies.offset_overflow"), 2);
    assert_eq!(u(&s, "anomalies.null_handle"), 5);
    assert_eq!(u(&s, "anomalies.zero_length"), 1);
    for k in ["net_buffers", "segments", "shared_bytes", "distinct_handles", "max_chain_length"] {
        assert_eq!(u(&s, k), u(&s, &format!("generated.{k}")), "{k}");
    }
    for k in ["overlong", "offset_overflow", "null_handle", "zero_length"] {
        assert_eq!(u(&s, &format!("anomalies.{k}")), u(&s, &format!("generated.anomalies.{k}")), "{k}");
    }
    assert_eq!(u(&s, "churn_cycles"), 9);
    assert!(s["ns_per_net_buffer"].as_f64().unwrap() > 0.0);
    // The driver's figures come per module from the control device (LIST_MODULES); the totals
    // above are their sums.
    let modules = s["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 3);
    for k in ["segments", "shared_bytes", "distinct_handles"] {
        let sum: u64 = modules.iter().map(|m| m[k].as_u64().unwrap()).sum();
        assert_eq!(sum, u(&s, k), "{k}");
    }
    let anomalies: u64 = modules.iter().map(|m| m["anomalies"].as_u64().unwrap()).sum();
    assert_eq!(anomalies, 7 + 2 + 5 + 1);
    assert!(modules.iter().all(|m| m["receive_net_buffers"].as_u64().unwrap() > 0));
}

#[test]
fn capture_sizes_and_count_drive_the_traffic() {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let dir = std::env::temp_dir().join(format!("nbshm-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.pcap");
    let sizes = [60u32, 1514, 590, 1514, 66, 1024, 1514];
    {
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        for (i, len) in sizes.iter().enumerate() {
            let data = vec![0u8; *len as usize];
            w.write_packet(&PcapPacket::new(std::time::Duration::from_millis(i as u64), *len, &data))
                .unwrap();
        }
    }
    let (code, out, err) =
        sim(&["--json", "--pcap", path.to_str().unwrap(), "--miniports", "1", "--shared-fraction", "1"]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    // One NET_BUFFER per captured packet, in each direction.
    assert_eq!(u(&s, "net_buffers"), 2 * sizes.len() as u64);
    assert_eq!(u(&s, "generated.net_buffers"), 2 * sizes.len() as u64);
    // Sends all carry shared memory with these sizes (receives too when they are VMQ indications).
    let total: u64 = sizes.iter().map(|s| u64::from(*s)).sum();
    assert!(u(&s, "shared_bytes") >= total, "sizes come from the capture");
}

#[test]
fn no_walk_is_a_pass_through_baseline() {
    let (code, out, err) = sim(&["--json", "--no-walk", "--nbls", "2000", "--inject", "null_handle=3"]);
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(u(&s, "net_buffers"), 2 * 2 * 2000);
    assert_eq!((u(&s, "net_buffers_walked"), u(&s, "segments")), (0, 0));
    assert_eq!(u(&s, "anomalies.null_handle"), 0, "nothing walked, nothing injected");
    assert_eq!(u(&s, "generated.injected.null_handle"), 0);
}

#[test]
fn events_are_json_lines_with_the_documented_names() {
    let (code, out, err) =
        sim(&["--events", "--json", "--nbls", "50", "--miniports", "1", "--inject", "zero_length=1"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let (summary_line, events) = lines.split_last().unwrap();
    let _: Value = serde_json::from_str(summary_line).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for l in events {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        let name = v["event"].as_str().unwrap();
        let schema = nbshm::etw::EVENTS.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(v["level"].as_u64(), Some(u64::from(schema.level.as_int())));
        assert_eq!(v["keywords"].as_u64(), Some(schema.keywords));
        for (field, _) in schema.fields {
            assert!(v.get(field).is_some(), "{name} lacks {field}");
        }
        assert_eq!(v.as_object().unwrap().len(), 3 + schema.fields.len(), "{name}: only documented fields");
        names.insert(name.to_owned());
    }
    for want in [
        "DriverLoaded",
        "FilterAttached",
        "FilterRestarted",
        "SharedMemorySegment",
        "NetBufferSharedMemory",
        "ChainAnomaly",
        "FilterDetached",
        "DriverUnloading",
    ] {
        assert!(names.contains(want), "no {want} event in {names:?}");
    }
}

#[test]
fn bad_arguments_are_refused() {
    let (code, _, err) = sim(&["--inject", "wormhole=1"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = sim(&["--max-segments", "0"]);
    assert_eq!(code, 2, "{err}");
}
