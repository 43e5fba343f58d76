//! nbshmctl end to end against the real driver: the transport is a handle opened through the
//! user-mode NDIS model's I/O manager, so every command goes through the driver's dispatch
//! routine, its validation and its statistics, exactly as `DeviceIoControl` would on Windows.

use std::io::Write as _;

use nbshm::config::{CONFIG, Keyword};
use nbshm::host::device::{Caller, DeviceHandle};
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};
use nbshm::stats::Direction;
use nbshm::sys::NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID;
use serde_json::Value;

use super::*;

/// The model's handle as nbshmctl's transport.
struct ModelTransport<'m>(DeviceHandle<'m>);

impl Transport for ModelTransport<'_> {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<Completion, Error> {
        let r = self.0.ioctl(code, input, output.len());
        if nbshm_proto::status::is_error(r.status) {
            return Err(Error::Status(r.status));
        }
        output[..r.output.len()].copy_from_slice(&r.output);
        Ok(Completion { status: r.status, bytes: r.information })
    }
}

fn open(m: &Model, access: u32, caller: Caller) -> Result<Box<dyn Transport + '_>, Error> {
    let h = m.open_device(nbshm_proto::USER_PATH, access, caller).map_err(Error::Status)?;
    Ok(Box::new(ModelTransport(h)))
}

/// Runs nbshmctl as `caller`; returns (exit code, stdout, stderr).
fn ctl_as(m: &Model, caller: Caller, args: &[&str]) -> (u8, String, String) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&args, &mut |access| open(m, access, caller), &mut out, &mut err);
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn ctl(m: &Model, args: &[&str]) -> (u8, String, String) {
    ctl_as(m, Caller::Administrator, args)
}

fn json_of(m: &Model, args: &[&str]) -> Value {
    let (code, out, err) = ctl(m, args);
    assert_eq!(code, exit::OK, "{args:?}: {err}");
    serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn running(n: usize) -> Model {
    let mut m = Model::new(ModelOptions::default());
    assert_eq!(m.load(), 0);
    for i in 0..n {
        let (idx, st) = m.add_miniport(&format!("VMQ Adapter #{}", i + 1));
        assert_eq!(st, 0);
        assert_eq!(m.restart(idx), 0);
    }
    m
}

/// `n` receive NBLs on miniport `mp`, one 1000-byte segment each, over `handles` handles.
fn receives(m: &Model, mp: usize, n: usize, handles: usize) {
    let specs: Vec<NblSpec> = (0..n)
        .map(|i| NblSpec {
            nbs: vec![NbSpec {
                data_length: 1000,
                chain: ChainSpec::List(vec![SegmentSpec {
                    handle: 0x40_0000 + (i % handles) * 0x1000,
                    offset: u32::try_from(i).unwrap() * 16,
                    length: 1000,
                    flags: 0,
                }]),
            }],
        })
        .collect();
    for chunk in specs.chunks(32) {
        m.indicate(mp, chunk.to_vec(), NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, 0).unwrap();
    }
    assert!(m.quiesce());
}

fn clean(m: &Model) {
    assert!(m.quiesce());
    assert_eq!(m.violations(), vec![]);
}

#[test]
fn status_and_modules_report_the_drivers_counts() {
    let m = running(2);
    receives(&m, 0, 120, 6);
    receives(&m, 1, 10, 1);
    let s = json_of(&m, &["status", "--json"]);
    assert_eq!(s["driver"]["version"], nbshm::filter::DRIVER_VERSION);
    assert_eq!(s["driver"]["ndis_version"], "6.30");
    assert_eq!(s["driver"]["modules_attached"], 2);
    let modules = json_of(&m, &["--json", "modules"]);
    let list = modules["modules"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for (j, mp) in list.iter().zip(m.miniports()) {
        let e = mp.expected(Direction::Receive);
        assert_eq!(j["name"], mp.name.as_str());
        assert_eq!(j["if_index"], mp.if_index);
        assert_eq!(j["state"], "running");
        assert_eq!(j["receive"]["net_buffers"], e.net_buffers);
        assert_eq!(j["receive"]["net_buffers_with_shared_memory"], e.with_shared_memory);
        assert_eq!(j["receive"]["segments"], e.segments);
        assert_eq!(j["receive"]["shared_bytes"], e.shared_bytes);
        assert_eq!(j["receive"]["anomalies"]["overlong"], 0);
        assert_eq!(j["distinct_handles"], mp.expected_handles());
        assert_eq!(j["send"]["net_buffers"], 0);
    }
    assert_eq!(list[0]["receive"]["shared_bytes"], 120_000);
    // The tables carry the same figures.
    let (code, text, _) = ctl(&m, &["status"]);
    assert_eq!(code, exit::OK);
    assert!(text.contains("2 module(s) attached"), "{text}");
    assert!(text.contains("VMQ Adapter #1") && text.contains("120000"), "{text}");
    let (code, text, _) = ctl(&m, &["modules"]);
    assert_eq!(code, exit::OK);
    assert!(text.contains("NET_BUFFERs with shared memory"), "{text}");
    assert!(text.contains("handles 6 of 256"), "{text}");
    clean(&m);
}

#[test]
fn the_module_list_is_sized_by_the_drivers_answer() {
    // More modules than the first request has room for (4): the client retries with the size
    // the driver reports in its STATUS_BUFFER_OVERFLOW answer.
    let m = running(11);
    let modules = json_of(&m, &["modules", "--json"]);
    let ids: Vec<u64> =
        modules["modules"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 11);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id: {ids:?}");
    clean(&m);
}

#[test]
fn handles_are_gathered_page_by_page() {
    let m = running(1);
    receives(&m, 0, 300, 45);
    let id = json_of(&m, &["modules", "--json"])["modules"][0]["id"].as_u64().unwrap();
    let id = u32::try_from(id).unwrap();
    // Small pages through the client: several pages, every handle once.
    let mut t = open(&m, ACCESS_READ, Caller::Administrator).unwrap();
    let table = Client::new(&mut *t)
        .with_page_bytes(HandleListHeader::SIZE + 4 * HandleRecord::SIZE)
        .handles(id)
        .unwrap();
    assert!(table.pages >= 12, "{} pages", table.pages);
    let mut got: Vec<usize> = table.records.iter().map(|r| usize::try_from(r.handle).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, m.miniport(0).expected_handle_set());
    assert_eq!(table.records.iter().map(|r| r.receive_segments).sum::<u64>(), 300);
    drop(t);
    // The command.
    let j = json_of(&m, &["handles", &id.to_string(), "--json"]);
    assert_eq!(j["distinct"], 45);
    assert_eq!(j["handles"].as_array().unwrap().len(), 45);
    assert_eq!(j["capacity"], 256);
    let (code, text, _) = ctl(&m, &["handles", &id.to_string()]);
    assert_eq!(code, exit::OK);
    assert!(text.contains("45 distinct handle(s)") && text.contains("0x400000"), "{text}");
    // Unknown module, module 0.
    let (code, _, err) = ctl(&m, &["handles", "999999"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("no module 999999"), "{err}");
    let (code, _, err) = ctl(&m, &["handles", "0"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("start at 1"), "{err}");
    clean(&m);
}

#[test]
fn reset_one_or_all() {
    let m = running(2);
    receives(&m, 0, 20, 2);
    receives(&m, 1, 20, 2);
    let first = json_of(&m, &["modules", "--json"])["modules"][0]["id"].to_string();
    let (code, text, _) = ctl(&m, &["reset", &first]);
    assert_eq!((code, text.as_str()), (exit::OK, "statistics reset on 1 module(s)\n"));
    let j = json_of(&m, &["modules", "--json"]);
    assert_eq!(j["modules"][0]["receive"]["net_buffers"], 0);
    assert_eq!(j["modules"][0]["resets"], 1);
    assert_eq!(j["modules"][1]["receive"]["net_buffers"], 20);
    assert_eq!(json_of(&m, &["reset", "--json"])["modules_reset"], 2);
    assert_eq!(json_of(&m, &["modules", "--json"])["modules"][1]["receive"]["net_buffers"], 0);
    let (code, _, err) = ctl(&m, &["reset", "999999"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("no module 999999"), "{err}");
    clean(&m);
}

#[test]
fn config_get_and_set() {
    let m = running(2);
    let c = json_of(&m, &["config", "get", "--json"]);
    let rows = c.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[2]["keyword"], "UsageIntervalMs");
    assert_eq!((rows[2]["value"].as_u64(), rows[2]["runtime"].as_bool()), (Some(5000), Some(true)));
    assert_eq!(rows[3]["runtime"], false);
    let (code, text, _) = ctl(&m, &["config", "get"]);
    assert_eq!(code, exit::OK);
    assert!(
        text.contains("HandleTableSize") && text.contains("16..=4096") && text.contains("no (load/attach)")
    );
    // A change, case-insensitive name: the driver re-arms both running modules' timers.
    let (code, text, err) = ctl(&m, &["config", "set", "usageintervalms", "750"]);
    assert_eq!(code, exit::OK, "{err}");
    assert_eq!(text, "UsageIntervalMs: 5000 -> 750 (2 usage timer(s) re-armed)\n");
    assert_eq!(CONFIG.get(Keyword::UsageIntervalMs), 750);
    let j = json_of(&m, &["--json", "config", "set", "MaxSegmentsPerNetBuffer", "16"]);
    assert_eq!((j["old_value"].as_u64(), j["new_value"].as_u64()), (Some(64), Some(16)));
    assert_eq!(CONFIG.max_segments(), 16);
    // Refusals, with the reason.
    let (code, _, err) = ctl(&m, &["config", "set", "MaxSegmentsPerNetBuffer", "5000"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("STATUS_INVALID_PARAMETER") && err.contains("1..=1024"), "{err}");
    let (code, _, err) = ctl(&m, &["config", "set", "HandleTableSize", "512"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("STATUS_NOT_SUPPORTED") && err.contains("Parameters"), "{err}");
    let (code, _, err) = ctl(&m, &["config", "set", "Bogus", "1"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("unknown keyword") && err.contains("ReceivePathWalk"), "{err}");
    assert_eq!(CONFIG.max_segments(), 16, "refused changes change nothing");
    clean(&m);
}

#[test]
fn access_follows_the_command_and_the_caller() {
    let m = running(1);
    // A standard user cannot open the device at all.
    let (code, _, err) = ctl_as(&m, Caller::User, &["status"]);
    assert_eq!(code, exit::FAILED);
    assert!(err.contains("STATUS_ACCESS_DENIED") && err.contains("run elevated"), "{err}");
    // The handle main opens carries what the command needs: read for queries, write for changes.
    let args = |a: &[&str]| Cli::parse_args(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    assert_eq!(args(&["status"]).required_access(), ACCESS_READ);
    assert_eq!(args(&["config", "get"]).required_access(), ACCESS_READ);
    assert_eq!(args(&["reset"]).required_access(), ACCESS_READ | ACCESS_WRITE);
    assert_eq!(args(&["config", "set", "SendPathWalk", "0"]).required_access(), ACCESS_READ | ACCESS_WRITE);
    // With a read-only handle, the I/O manager refuses a change before the driver sees it.
    let mut t = open(&m, ACCESS_READ, Caller::Administrator).unwrap();
    assert_eq!(Client::new(&mut *t).reset(None).unwrap_err(), Error::Status(STATUS_ACCESS_DENIED));
    drop(t);
    clean(&m);
}

#[test]
fn without_the_driver_the_device_is_not_found() {
    let m = Model::new(ModelOptions::default());
    let (code, _, err) = ctl(&m, &["status"]);
    assert_eq!(code, exit::FAILED);
    assert!(err.contains("STATUS_OBJECT_NAME_NOT_FOUND") && err.contains("installed and started"), "{err}");
}

#[test]
fn usage_errors_and_help() {
    let m = running(0);
    let (code, _, err) = ctl(&m, &["frobnicate"]);
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("frobnicate"), "{err}");
    let (code, out, _) = ctl(&m, &["--help"]);
    assert_eq!(code, exit::OK);
    assert!(out.contains("handles") && out.contains("config"), "{out}");
    let (code, out, _) = ctl(&m, &["modules"]);
    assert_eq!((code, out.as_str()), (exit::OK, "no module attached\n"));
    clean(&m);
}

#[test]
fn win32_errors_map_back_to_the_protocol_statuses() {
    assert_eq!(win32_to_status(234), Some(STATUS_BUFFER_OVERFLOW));
    assert_eq!(win32_to_status(122), Some(STATUS_BUFFER_TOO_SMALL));
    assert_eq!(win32_to_status(1168), Some(STATUS_NOT_FOUND));
    assert_eq!(win32_to_status(5), Some(STATUS_ACCESS_DENIED));
    assert_eq!(win32_to_status(2), Some(STATUS_OBJECT_NAME_NOT_FOUND));
    assert_eq!(win32_to_status(9999), None);
    assert_eq!(Error::Win32(9999).to_string(), "Windows error 9999");
}

#[test]
fn a_broken_response_is_reported_not_trusted() {
    /// Answers every request with a header of another protocol version.
    struct FutureDriver;
    impl Transport for FutureDriver {
        fn ioctl(&mut self, _code: u32, _input: &[u8], output: &mut [u8]) -> Result<Completion, Error> {
            let h = nbshm_proto::Header { version: 2, size: 80 };
            output.fill(0);
            h.encode(output).unwrap();
            Ok(Completion { status: 0, bytes: output.len() })
        }
    }
    let err = Client::new(&mut FutureDriver).version().unwrap_err();
    assert!(matches!(&err, Error::Protocol(m) if m.contains("protocol version 2")), "{err}");
    let mut out = Vec::new();
    let cli = Cli::parse_args(&["status".to_owned()]).unwrap();
    assert!(execute(&cli, &mut FutureDriver, &mut out).is_err());
    out.flush().unwrap();
    assert!(out.is_empty(), "nothing printed from a response that does not decode");
}
