//! The control device through the model's I/O manager: registration (names, SDDL, dispatch
//! table), opening, and every IOCTL with valid input and with every class of bad input (short,
//! long, wrong version, wrong size field, reserved bits, unknown code, unknown module,
//! out-of-range value, non-runtime keyword, wrong access, output too small). The model builds
//! real IRPs with guard bytes after the system buffer and records a violation for any write past
//! the output length, any IRP not completed exactly once, and `Information` above the output
//! length; every test ends with no violation.

mod common;

use std::time::Duration;

use common::{assert_clean, batch, enc, nbl, running, summary};
use nbshm::config::{CONFIG, KEYWORDS, Keyword};
use nbshm::host::device::{Caller, FILE_READ_DATA, FILE_WRITE_DATA, IoctlResult};
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};
use nbshm::stats::Direction;
use nbshm::sys::NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID;
use nbshm_proto::ioctl::{
    IOCTL_NBSHM_GET_CONFIG, IOCTL_NBSHM_LIST_MODULES, IOCTL_NBSHM_QUERY_HANDLES, IOCTL_NBSHM_QUERY_VERSION,
    IOCTL_NBSHM_RESET_STATS, IOCTL_NBSHM_SET_CONFIG,
};
use nbshm_proto::status::{
    STATUS_ACCESS_DENIED, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED,
    STATUS_OBJECT_NAME_NOT_FOUND, STATUS_REVISION_MISMATCH,
};
use nbshm_proto::{
    ALL_MODULES, ConfigResponse, GetConfigRequest, HandleListHeader, HandleRecord, HandlesRequest,
    ListModulesRequest, ModuleListHeader, ModuleRecord, ResetRequest, ResetResponse, SetConfigRequest,
    SetConfigResponse, VersionResponse, Wire, decode_fixed, decode_list,
};

const RW: u32 = FILE_READ_DATA | FILE_WRITE_DATA;

fn ok(r: &IoctlResult) {
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.information, r.output.len());
}

/// An error: no data returned, Information 0.
fn err(r: &IoctlResult, status: i32) {
    assert_eq!(
        r.status,
        status,
        "expected {:?}, got {:?} ({:#010x})",
        nbshm_proto::status::name(status),
        nbshm_proto::status::name(r.status),
        r.status.cast_unsigned()
    );
    assert_eq!(r.information, 0);
    assert!(r.output.is_empty());
}

fn list(m: &Model) -> Vec<ModuleRecord> {
    let r = m.ioctl(IOCTL_NBSHM_LIST_MODULES, &enc(&ListModulesRequest::new()), 64 * 1024, FILE_READ_DATA);
    ok(&r);
    let l = decode_list::<ModuleListHeader, ModuleRecord>(&r.output).unwrap();
    assert_eq!(l.header.returned, l.header.total);
    let mut v: Vec<ModuleRecord> = l.iter().collect();
    v.sort_by_key(|r| r.id);
    v
}

fn config(m: &Model) -> ConfigResponse {
    let r =
        m.ioctl(IOCTL_NBSHM_GET_CONFIG, &enc(&GetConfigRequest::new()), ConfigResponse::SIZE, FILE_READ_DATA);
    ok(&r);
    decode_fixed(&r.output).unwrap()
}

fn set(m: &Model, keyword: Keyword, value: u32) -> IoctlResult {
    m.ioctl(
        IOCTL_NBSHM_SET_CONFIG,
        &enc(&SetConfigRequest::new(keyword as u32, value)),
        SetConfigResponse::SIZE,
        RW,
    )
}

#[test]
fn the_device_is_registered_with_its_names_and_only_admits_system_and_administrators() {
    let mut m = running(1, ModelOptions::default());
    assert_eq!(
        m.device_names(),
        vec![(nbshm_proto::DEVICE_NAME.to_owned(), nbshm_proto::SYMBOLIC_NAME.to_owned())]
    );
    assert_eq!(m.device_registrations(), 1);
    for caller in [Caller::System, Caller::Administrator] {
        let h = m.open_device(nbshm_proto::USER_PATH, RW, caller).expect("admitted");
        assert_eq!(h.granted_access(), RW);
    }
    assert_eq!(
        m.open_device(nbshm_proto::USER_PATH, FILE_READ_DATA, Caller::User).unwrap_err(),
        STATUS_ACCESS_DENIED
    );
    assert_eq!(m.open_device(nbshm_proto::USER_PATH, 0, Caller::User).unwrap_err(), STATUS_ACCESS_DENIED);
    assert_eq!(
        m.open_device("\\\\.\\NdisLwf", FILE_READ_DATA, Caller::Administrator).unwrap_err(),
        STATUS_OBJECT_NAME_NOT_FOUND
    );
    assert_clean(&m);
    m.unload();
    assert!(m.device_names().is_empty(), "removed at unload");
    assert_eq!(
        m.open_device(nbshm_proto::USER_PATH, FILE_READ_DATA, Caller::Administrator).unwrap_err(),
        STATUS_OBJECT_NAME_NOT_FOUND
    );
    assert_eq!(m.violations(), vec![], "device deregistered before the filter, nothing left");
}

#[test]
fn driver_entry_undoes_the_filter_registration_when_the_device_fails() {
    let status = 0xC000_009A_u32.cast_signed(); // STATUS_INSUFFICIENT_RESOURCES
    let mut m =
        Model::new(ModelOptions { device_registration_failure: Some(status), ..ModelOptions::default() });
    nbshm::host::etw::enable(5, u64::MAX, 0);
    assert_eq!(m.load(), status, "DriverEntry returns the device's status");
    // The model records a violation if the filter stayed registered or the device exists.
    assert_eq!(m.violations(), vec![]);
    assert!(m.device_names().is_empty());
    let events = nbshm::host::etw::take();
    assert!(!events.iter().any(|e| e.name == "DriverLoaded"), "no DriverLoaded for a failed load");
    let log = nbshm::host::kernel::take_debug_log().concat();
    assert!(log.contains("NdisRegisterDeviceEx failed: 0xc000009a"), "{log}");
    nbshm::host::etw::reset();
}

#[test]
fn version() {
    let m = running(2, ModelOptions::default());
    let r = m.ioctl(IOCTL_NBSHM_QUERY_VERSION, &[], 200, FILE_READ_DATA);
    ok(&r);
    assert_eq!(
        r.information,
        VersionResponse::SIZE,
        "longer output is fine, Information is what was written"
    );
    let v: VersionResponse = decode_fixed(&r.output).unwrap();
    assert_eq!(v.protocol_version, nbshm_proto::PROTOCOL_VERSION);
    assert_eq!((v.ndis_major, v.ndis_minor), (6, 30));
    assert_eq!(v.module_record_size as usize, ModuleRecord::SIZE);
    assert_eq!(v.handle_record_size as usize, HandleRecord::SIZE);
    assert_eq!(v.keyword_count, 6);
    assert_eq!(v.modules_attached, 2);
    let text = std::str::from_utf8(&v.driver_version).unwrap().trim_end_matches('\0');
    assert_eq!(text, nbshm::filter::DRIVER_VERSION);
    // Any input is refused; a short output too.
    err(&m.ioctl(IOCTL_NBSHM_QUERY_VERSION, &[0; 8], 200, FILE_READ_DATA), STATUS_INFO_LENGTH_MISMATCH);
    err(
        &m.ioctl(IOCTL_NBSHM_QUERY_VERSION, &[], VersionResponse::SIZE - 1, FILE_READ_DATA),
        STATUS_BUFFER_TOO_SMALL,
    );
    err(&m.ioctl(IOCTL_NBSHM_QUERY_VERSION, &[], 0, FILE_READ_DATA), STATUS_BUFFER_TOO_SMALL);
    assert_clean(&m);
}

/// Receive traffic with shared memory over `handles` distinct handles on miniport `mp`.
fn vmq_receives(m: &Model, mp: usize, nbls: usize, handles: usize) {
    for chunk in batch(nbls, 1, handles).chunks(16) {
        m.indicate(mp, chunk.to_vec(), NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, 0).unwrap();
    }
}

#[test]
fn list_modules_reports_what_the_driver_counted() {
    let m = running(3, ModelOptions::default());
    vmq_receives(&m, 0, 100, 5);
    vmq_receives(&m, 2, 40, 3);
    m.send(1, (0..10).map(|i| nbl(0x9000 + i * 0x1000, 0, 64)).collect(), 0, 0).unwrap();
    assert!(m.quiesce());
    let records = list(&m);
    assert_eq!(records.len(), 3);
    for (rec, mp) in records.iter().zip(m.miniports()) {
        let s = summary(&mp);
        assert_eq!(rec.id, s.id);
        assert_eq!(rec.if_index, mp.if_index);
        assert_eq!(rec.base_if_index, mp.if_index - 1);
        assert_eq!(rec.state, nbshm_proto::state::RUNNING);
        assert_eq!(String::from_utf16(rec.name_units()).unwrap(), mp.name);
        assert_eq!(rec.distinct_handles as usize, mp.expected_handles());
        assert_eq!(rec.handle_capacity, CONFIG.get(Keyword::HandleTableSize));
        for (d, dir) in [(&rec.receive, Direction::Receive), (&rec.send, Direction::Send)] {
            let e = mp.expected(dir);
            assert_eq!(
                (d.nbls, d.net_buffers, d.walked, d.with_shared_memory, d.segments, d.shared_bytes),
                (e.nbls, e.net_buffers, e.walked, e.with_shared_memory, e.segments, e.shared_bytes),
                "miniport {} {dir:?}",
                mp.index
            );
            assert_eq!(d.max_chain, e.max_chain);
            assert_eq!(d.anomalies, e.anomalies);
            assert_eq!(d.rejected_nbls, e.rejected_nbls);
        }
    }
    assert_eq!(records[0].receive.net_buffers, 100);
    assert_eq!(records[1].send.segments, 10);
    assert_clean(&m);
}

#[test]
fn list_modules_too_small_buffers_overflow_with_the_required_size() {
    let m = running(3, ModelOptions::default());
    let req = enc(&ListModulesRequest::new());
    let code = IOCTL_NBSHM_LIST_MODULES;
    let required = ModuleListHeader::SIZE + 3 * ModuleRecord::SIZE;
    // Not even the header: nothing.
    err(&m.ioctl(code, &req, ModuleListHeader::SIZE - 1, FILE_READ_DATA), STATUS_BUFFER_TOO_SMALL);
    err(&m.ioctl(code, &req, 0, FILE_READ_DATA), STATUS_BUFFER_TOO_SMALL);
    // The header, and as many whole records as fit: BUFFER_OVERFLOW, partial data.
    for (room, whole) in [(ModuleListHeader::SIZE, 0), (ModuleListHeader::SIZE + ModuleRecord::SIZE + 519, 1)]
    {
        let r = m.ioctl(code, &req, room, FILE_READ_DATA);
        assert_eq!(r.status, STATUS_BUFFER_OVERFLOW);
        assert_eq!(r.information, ModuleListHeader::SIZE + whole * ModuleRecord::SIZE);
        let l = decode_list::<ModuleListHeader, ModuleRecord>(&r.output).unwrap();
        assert_eq!((l.header.total, l.header.returned as usize), (3, whole));
        assert_eq!(l.header.required_bytes, required as u64);
    }
    // Exactly the required size: everything.
    let r = m.ioctl(code, &req, required, FILE_READ_DATA);
    ok(&r);
    assert_eq!(r.information, required);
    // The input is validated before anything is written into the shared system buffer, and
    // nothing goes past the output length even when the input is longer (the model checks).
    err(&m.ioctl(code, &req, 4, FILE_READ_DATA), STATUS_BUFFER_TOO_SMALL);
    assert_clean(&m);
}

#[test]
fn list_modules_with_no_module_is_an_empty_list() {
    let mut m = Model::new(ModelOptions::default());
    assert_eq!(m.load(), 0);
    let r = m.ioctl(IOCTL_NBSHM_LIST_MODULES, &enc(&ListModulesRequest::new()), 4096, FILE_READ_DATA);
    ok(&r);
    let l = decode_list::<ModuleListHeader, ModuleRecord>(&r.output).unwrap();
    assert_eq!((l.header.total, l.header.returned, l.header.required_bytes), (0, 0, 32));
    m.unload();
    assert_eq!(m.violations(), vec![]);
}

fn handles_page(m: &Model, module: u32, start: u32, room: usize) -> IoctlResult {
    m.ioctl(IOCTL_NBSHM_QUERY_HANDLES, &enc(&HandlesRequest::new(module, start)), room, FILE_READ_DATA)
}

#[test]
fn handle_table_pages_cover_every_handle_exactly_once() {
    let m = running(2, ModelOptions::default());
    vmq_receives(&m, 0, 400, 37);
    m.send(0, (0..8).map(|i| nbl(0x10_0000 + i * 0x1000, 4096, 100)).collect(), 0, 0).unwrap();
    assert!(m.quiesce());
    let mp = m.miniport(0);
    let id = summary(&mp).id;
    let room = HandleListHeader::SIZE + 7 * HandleRecord::SIZE + 55; // 7 whole records per page
    let mut start = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = handles_page(&m, id, start, room);
        ok(&r);
        let l = decode_list::<HandleListHeader, HandleRecord>(&r.output).unwrap();
        assert!(l.len() <= 7);
        assert_eq!(l.header.start_index, start);
        assert_eq!(l.header.module_id, id);
        assert_eq!(l.header.distinct as usize, mp.expected_handles());
        for rec in l.iter() {
            assert!(rec.slot >= start && rec.slot < l.header.next_index);
            seen.push(rec);
        }
        pages += 1;
        if l.header.next_index == l.header.capacity {
            break;
        }
        assert!(l.header.next_index > start, "every page makes progress");
        start = l.header.next_index;
    }
    assert!(pages >= 6, "{pages} pages for {} handles", seen.len());
    let mut handles: Vec<usize> = seen.iter().map(|r| usize::try_from(r.handle).unwrap()).collect();
    handles.sort_unstable();
    assert_eq!(handles, mp.expected_handle_set(), "each handle exactly once");
    let s = summary(&mp);
    let rx: u64 = seen.iter().map(|r| r.receive_segments).sum();
    let tx: u64 = seen.iter().map(|r| r.send_segments).sum();
    assert_eq!(rx, s.receive.segments);
    assert_eq!(tx, s.send.segments);
    let bytes: u64 = seen.iter().map(|r| r.receive_bytes + r.send_bytes).sum();
    assert_eq!(bytes, s.receive.shared_bytes + s.send.shared_bytes);
    let h = seen.iter().find(|r| r.handle == 0x10_0000).unwrap();
    assert_eq!((h.send_segments, h.send_bytes, h.min_offset), (1, 100, 0));
    assert_clean(&m);
}

#[test]
fn handle_queries_refuse_bad_modules_indexes_and_buffers() {
    let m = running(1, ModelOptions::default());
    vmq_receives(&m, 0, 20, 4);
    assert!(m.quiesce());
    let id = summary(&m.miniport(0)).id;
    let capacity = CONFIG.get(Keyword::HandleTableSize);
    let room = 4096;
    err(&handles_page(&m, id + 100, 0, room), STATUS_NOT_FOUND);
    err(&handles_page(&m, 0, 0, room), STATUS_INVALID_PARAMETER);
    err(&handles_page(&m, id, capacity + 1, room), STATUS_INVALID_PARAMETER);
    err(&handles_page(&m, id, u32::MAX, room), STATUS_INVALID_PARAMETER);
    // At the capacity: an empty last page.
    let r = handles_page(&m, id, capacity, room);
    ok(&r);
    let l = decode_list::<HandleListHeader, HandleRecord>(&r.output).unwrap();
    assert_eq!((l.len(), l.header.next_index), (0, capacity));
    // Room for the header only cannot make progress.
    err(&handles_page(&m, id, 0, HandleListHeader::SIZE), STATUS_BUFFER_TOO_SMALL);
    err(&handles_page(&m, id, 0, HandleListHeader::SIZE + HandleRecord::SIZE - 1), STATUS_BUFFER_TOO_SMALL);
    let r = handles_page(&m, id, 0, HandleListHeader::SIZE + HandleRecord::SIZE);
    ok(&r);
    assert_eq!(r.information, HandleListHeader::SIZE + HandleRecord::SIZE);
    assert_clean(&m);
}

#[test]
fn reset_one_module_or_all() {
    let m = running(2, ModelOptions::default());
    vmq_receives(&m, 0, 30, 3);
    vmq_receives(&m, 1, 30, 3);
    assert!(m.quiesce());
    let ids: Vec<u32> = list(&m).iter().map(|r| r.id).collect();
    let reset = |module: u32| {
        m.ioctl(IOCTL_NBSHM_RESET_STATS, &enc(&ResetRequest::new(module)), ResetResponse::SIZE, RW)
    };
    let r = reset(ids[0]);
    ok(&r);
    assert_eq!(decode_fixed::<ResetResponse>(&r.output).unwrap().modules_reset, 1);
    let after = list(&m);
    assert_eq!(after[0].receive.net_buffers, 0);
    assert_eq!(after[0].distinct_handles, 0);
    assert_eq!(after[0].resets, 1);
    assert_eq!(after[1].receive.net_buffers, 30, "the other module keeps its counts");
    err(&reset(ids[1] + 10), STATUS_NOT_FOUND);
    let r = reset(ALL_MODULES);
    ok(&r);
    assert_eq!(decode_fixed::<ResetResponse>(&r.output).unwrap().modules_reset, 2);
    assert!(list(&m).iter().all(|r| r.receive.net_buffers == 0 && r.resets >= 1));
    // Counting goes on after a reset.
    vmq_receives(&m, 1, 5, 1);
    assert!(m.quiesce());
    assert_eq!(list(&m)[1].receive.net_buffers, 5);
    assert_clean(&m);
}

#[test]
fn configuration_get_and_set() {
    let m = running(1, ModelOptions::default());
    let c = config(&m);
    assert_eq!(c.count, 6);
    for (v, k) in c.values.iter().zip(KEYWORDS.iter()) {
        assert_eq!(
            (v.keyword, v.value, v.default, v.min, v.max),
            (k.keyword as u32, k.default, k.default, k.min, k.max)
        );
        assert_eq!(v.flags & nbshm_proto::CONFIG_FLAG_RUNTIME != 0, k.runtime, "{}", k.name);
    }
    let r = set(&m, Keyword::MaxSegmentsPerNetBuffer, 3);
    ok(&r);
    let s: SetConfigResponse = decode_fixed(&r.output).unwrap();
    assert_eq!((s.keyword, s.old_value, s.new_value, s.timers_rearmed), (0, 64, 3, 0));
    assert_eq!(CONFIG.max_segments(), 3);
    assert_eq!(config(&m).values[0].value, 3);
    // The data path uses it at once: a 5-segment chain is now overlong.
    let chain =
        (0..5).map(|i| SegmentSpec { handle: 0x5000, offset: i * 100, length: 100, flags: 0 }).collect();
    let spec = NblSpec { nbs: vec![NbSpec { data_length: 500, chain: ChainSpec::List(chain) }] };
    m.indicate(0, vec![spec], NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, 0).unwrap();
    assert!(m.quiesce());
    assert_eq!(list(&m)[0].receive.anomalies[0], 1, "overlong");
    // Out of range: refused, unchanged.
    err(&set(&m, Keyword::MaxSegmentsPerNetBuffer, 0), STATUS_INVALID_PARAMETER);
    err(&set(&m, Keyword::MaxSegmentsPerNetBuffer, 1025), STATUS_INVALID_PARAMETER);
    err(&set(&m, Keyword::SendPathWalk, 2), STATUS_INVALID_PARAMETER);
    assert_eq!(CONFIG.max_segments(), 3);
    // Not a runtime keyword; not a keyword.
    err(&set(&m, Keyword::HandleTableSize, 512), STATUS_NOT_SUPPORTED);
    assert_eq!(CONFIG.get(Keyword::HandleTableSize), 256);
    let unknown = SetConfigRequest::new(6, 1);
    err(&m.ioctl(IOCTL_NBSHM_SET_CONFIG, &enc(&unknown), SetConfigResponse::SIZE, RW), STATUS_NOT_FOUND);
    // Output too small: refused before anything changes.
    err(
        &m.ioctl(IOCTL_NBSHM_SET_CONFIG, &enc(&SetConfigRequest::new(0, 9)), SetConfigResponse::SIZE - 1, RW),
        STATUS_BUFFER_TOO_SMALL,
    );
    assert_eq!(CONFIG.max_segments(), 3);
    err(
        &m.ioctl(
            IOCTL_NBSHM_GET_CONFIG,
            &enc(&GetConfigRequest::new()),
            ConfigResponse::SIZE - 1,
            FILE_READ_DATA,
        ),
        STATUS_BUFFER_TOO_SMALL,
    );
    ok(&set(&m, Keyword::SendPathWalk, 0));
    assert!(!CONFIG.send_path_walk());
    assert_clean(&m);
}

#[test]
fn a_new_usage_interval_rearms_the_running_modules_timers() {
    let m = running(3, ModelOptions::default());
    m.pause(2);
    let periods = m.armed_timer_periods();
    assert_eq!(periods, vec![Duration::from_secs(5); 2], "two running modules, 5 s");
    let r = set(&m, Keyword::UsageIntervalMs, 250);
    ok(&r);
    let s: SetConfigResponse = decode_fixed(&r.output).unwrap();
    assert_eq!((s.old_value, s.new_value, s.timers_rearmed), (5000, 250, 2));
    assert_eq!(
        m.armed_timer_periods(),
        vec![Duration::from_millis(250); 2],
        "re-armed, paused one untouched"
    );
    // The same value again re-arms nothing.
    let s: SetConfigResponse = decode_fixed(&set(&m, Keyword::UsageIntervalMs, 250).output).unwrap();
    assert_eq!(s.timers_rearmed, 0);
    // The paused module picks the new interval up when it restarts.
    assert_eq!(m.restart(2), 0);
    assert_eq!(m.armed_timer_periods(), vec![Duration::from_millis(250); 3]);
    assert_clean(&m);
}

#[test]
fn access_bits_are_enforced_before_the_driver_sees_the_request() {
    let m = running(1, ModelOptions::default());
    let id = list(&m)[0].id;
    let irps = m.irps_sent();
    // Changes need write access.
    err(
        &m.ioctl(IOCTL_NBSHM_RESET_STATS, &enc(&ResetRequest::new(id)), ResetResponse::SIZE, FILE_READ_DATA),
        STATUS_ACCESS_DENIED,
    );
    err(
        &m.ioctl(
            IOCTL_NBSHM_SET_CONFIG,
            &enc(&SetConfigRequest::new(0, 8)),
            SetConfigResponse::SIZE,
            FILE_READ_DATA,
        ),
        STATUS_ACCESS_DENIED,
    );
    // Queries need read access.
    err(
        &m.ioctl(IOCTL_NBSHM_LIST_MODULES, &enc(&ListModulesRequest::new()), 4096, FILE_WRITE_DATA),
        STATUS_ACCESS_DENIED,
    );
    err(&m.ioctl(IOCTL_NBSHM_QUERY_VERSION, &[], 4096, 0), STATUS_ACCESS_DENIED);
    // Each call above opened and closed a handle (CREATE, CLEANUP, CLOSE): no DEVICE_CONTROL IRP.
    assert_eq!(m.irps_sent() - irps, 4 * 3);
    assert_eq!(CONFIG.max_segments(), 64);
    assert_clean(&m);
}

/// Every request type with every structural defect gets the documented status, no data, and no
/// byte written outside the output buffer (checked by the model on every call).
#[test]
fn every_class_of_bad_input_for_every_request() {
    let m = running(1, ModelOptions::default());
    let id = list(&m)[0].id;
    let requests: Vec<(u32, Vec<u8>)> = vec![
        (IOCTL_NBSHM_LIST_MODULES, enc(&ListModulesRequest::new())),
        (IOCTL_NBSHM_QUERY_HANDLES, enc(&HandlesRequest::new(id, 0))),
        (IOCTL_NBSHM_RESET_STATS, enc(&ResetRequest::new(id))),
        (IOCTL_NBSHM_GET_CONFIG, enc(&GetConfigRequest::new())),
        (IOCTL_NBSHM_SET_CONFIG, enc(&SetConfigRequest::new(0, 64))),
    ];
    let room = 8192;
    for (code, good) in &requests {
        let code = *code;
        let name = nbshm_proto::ioctl::ALL.iter().find(|(c, _)| *c == code).unwrap().1;
        let call = |input: &[u8], out: usize| m.ioctl(code, input, out, RW);
        // The well-formed request works.
        assert!(!nbshm_proto::status::is_error(call(good, room).status), "{name}");
        // No input, short input, a header alone, long input.
        for input in [&[][..], &good[..4], &good[..8], &good[..good.len() - 1]] {
            err(&call(input, room), STATUS_INFO_LENGTH_MISMATCH);
        }
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        err(&call(&long, room), STATUS_INFO_LENGTH_MISMATCH);
        // Another protocol version (also with a different length): the version is checked first.
        for extra in [0, 8] {
            let mut v = good.clone();
            v[0] = 2;
            v.extend(std::iter::repeat_n(0, extra));
            err(&call(&v, room), STATUS_REVISION_MISMATCH);
        }
        // The header's size field disagrees with the length.
        let mut s = good.clone();
        s[4] += 8;
        err(&call(&s, room), STATUS_INFO_LENGTH_MISMATCH);
        // Output too small (and shorter than the input: the model checks that the bytes between
        // the output length and the input length were not written).
        err(&call(good, 0), STATUS_BUFFER_TOO_SMALL);
        err(&call(good, 4), STATUS_BUFFER_TOO_SMALL);
        // The same request number with another method or access is another code: unknown.
        for other in [code | 3, code ^ (3 << 14), code + 4 * 0x40] {
            assert!(!nbshm_proto::ioctl::ALL.iter().any(|(c, _)| *c == other));
            err(&m.ioctl(other, good, room, RW), STATUS_INVALID_DEVICE_REQUEST);
        }
    }
    // Reserved fields must be zero.
    let mut l = ListModulesRequest::new();
    l.flags = 1;
    err(&m.ioctl(IOCTL_NBSHM_LIST_MODULES, &enc(&l), room, RW), STATUS_INVALID_PARAMETER);
    let mut r = ResetRequest::new(id);
    r.reserved = 0x100;
    err(&m.ioctl(IOCTL_NBSHM_RESET_STATS, &enc(&r), room, RW), STATUS_INVALID_PARAMETER);
    let mut g = GetConfigRequest::new();
    g.reserved = 1;
    err(&m.ioctl(IOCTL_NBSHM_GET_CONFIG, &enc(&g), room, RW), STATUS_INVALID_PARAMETER);
    // Unknown codes of every kind, with and without buffers.
    for code in [0, 0x0022_0000, 0x8E5D_6000 + 0x40 * 4, 0x8E5D_6003, u32::MAX] {
        err(&m.ioctl(code, &[], 0, RW), STATUS_INVALID_DEVICE_REQUEST);
        err(&m.ioctl(code, &[1; 32], 64, RW), STATUS_INVALID_DEVICE_REQUEST);
    }
    assert_eq!(CONFIG.max_segments(), 64, "no bad request changed anything");
    assert_clean(&m);
}

#[test]
fn requests_race_with_traffic_attach_and_detach() {
    let m = running(2, ModelOptions::default());
    std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            for round in 0..20 {
                vmq_receives(&m, 0, 32, 8);
                if round % 5 == 4 {
                    m.pause(1);
                    m.detach(1);
                    assert_eq!(m.attach(1), 0);
                    assert_eq!(m.restart(1), 0);
                }
            }
        });
        let h = m.open_device(nbshm_proto::USER_PATH, RW, Caller::Administrator).unwrap();
        let mut calls = 0;
        while !traffic.is_finished() {
            let r = h.ioctl(IOCTL_NBSHM_LIST_MODULES, &enc(&ListModulesRequest::new()), 4096);
            assert!(!nbshm_proto::status::is_error(r.status));
            for rec in decode_list::<ModuleListHeader, ModuleRecord>(&r.output).unwrap().iter() {
                let p = h.ioctl(IOCTL_NBSHM_QUERY_HANDLES, &enc(&HandlesRequest::new(rec.id, 0)), 2048);
                assert!(p.status == 0 || p.status == STATUS_NOT_FOUND, "{p:?}");
            }
            let _ = h.ioctl(IOCTL_NBSHM_RESET_STATS, &enc(&ResetRequest::new(ALL_MODULES)), 16);
            calls += 1;
        }
        assert!(calls > 0);
    });
    assert_clean(&m);
}
