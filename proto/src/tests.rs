//! Request validation and response decoding, one test per class of input.

use super::ioctl::*;
use super::status::*;
use super::*;

fn bytes<T: Wire>(v: &T) -> [u8; 64] {
    let mut b = [0u8; 64];
    assert_eq!(v.encode(&mut b), Some(T::SIZE));
    b
}

#[test]
fn codes_are_buffered_private_and_demand_the_right_access() {
    for (code, name) in ALL {
        assert_eq!(method(code), METHOD_BUFFERED, "{name}");
        assert_eq!(code >> 16, DEVICE_TYPE, "{name}");
        let function = (code >> 2) & 0xFFF;
        assert!(function >= 0x800, "{name}: vendor function code");
        let changes = matches!(code, IOCTL_NBSHM_RESET_STATS | IOCTL_NBSHM_SET_CONFIG);
        assert_eq!(access(code), if changes { FILE_WRITE_ACCESS } else { FILE_READ_ACCESS }, "{name}");
    }
}

#[test]
fn valid_requests_decode() {
    assert_eq!(decode_request(IOCTL_NBSHM_QUERY_VERSION, &[]), Ok(Request::QueryVersion));
    let b = bytes(&ListModulesRequest::new());
    assert_eq!(decode_request(IOCTL_NBSHM_LIST_MODULES, &b[..16]), Ok(Request::ListModules));
    let b = bytes(&HandlesRequest::new(3, 17));
    assert_eq!(
        decode_request(IOCTL_NBSHM_QUERY_HANDLES, &b[..16]),
        Ok(Request::QueryHandles { module_id: 3, start_index: 17 })
    );
    let b = bytes(&ResetRequest::new(ALL_MODULES));
    assert_eq!(decode_request(IOCTL_NBSHM_RESET_STATS, &b[..16]), Ok(Request::Reset { module_id: 0 }));
    let b = bytes(&GetConfigRequest::new());
    assert_eq!(decode_request(IOCTL_NBSHM_GET_CONFIG, &b[..16]), Ok(Request::GetConfig));
    let b = bytes(&SetConfigRequest::new(2, 1000));
    assert_eq!(
        decode_request(IOCTL_NBSHM_SET_CONFIG, &b[..16]),
        Ok(Request::SetConfig { keyword: 2, value: 1000 })
    );
}

#[test]
fn unknown_codes_are_invalid_device_requests() {
    for code in [0, IOCTL_NBSHM_LIST_MODULES + 0x100, ctl_code(DEVICE_TYPE, 0x801, 3, FILE_READ_ACCESS)] {
        assert_eq!(decode_request(code, &[]), Err(STATUS_INVALID_DEVICE_REQUEST), "{code:#x}");
    }
}

#[test]
fn lengths_versions_and_reserved_fields_are_checked_in_order() {
    let good = bytes(&SetConfigRequest::new(0, 64));
    let code = IOCTL_NBSHM_SET_CONFIG;
    // Short: not even a header; a header but not the request.
    assert_eq!(decode_request(code, &good[..4]), Err(STATUS_INFO_LENGTH_MISMATCH));
    assert_eq!(decode_request(code, &good[..12]), Err(STATUS_INFO_LENGTH_MISMATCH));
    // Long.
    assert_eq!(decode_request(code, &good[..17]), Err(STATUS_INFO_LENGTH_MISMATCH));
    // Header size disagrees with the length.
    let mut r = SetConfigRequest::new(0, 64);
    r.header.size = 20;
    assert_eq!(decode_request(code, &bytes(&r)[..16]), Err(STATUS_INFO_LENGTH_MISMATCH));
    // Another version wins over the length (a v2 request may be bigger).
    r.header.version = 2;
    assert_eq!(decode_request(code, &bytes(&r)[..24]), Err(STATUS_REVISION_MISMATCH));
    // Version input to QUERY_VERSION.
    assert_eq!(decode_request(IOCTL_NBSHM_QUERY_VERSION, &[0]), Err(STATUS_INFO_LENGTH_MISMATCH));
    // Reserved fields.
    let mut l = ListModulesRequest::new();
    l.reserved = 1;
    assert_eq!(decode_request(IOCTL_NBSHM_LIST_MODULES, &bytes(&l)[..16]), Err(STATUS_INVALID_PARAMETER));
    let mut l = ResetRequest::new(1);
    l.reserved = 1;
    assert_eq!(decode_request(IOCTL_NBSHM_RESET_STATS, &bytes(&l)[..16]), Err(STATUS_INVALID_PARAMETER));
    let mut g = GetConfigRequest::new();
    g.flags = 1;
    assert_eq!(decode_request(IOCTL_NBSHM_GET_CONFIG, &bytes(&g)[..16]), Err(STATUS_INVALID_PARAMETER));
    // Module 0 cannot be one module.
    let h = HandlesRequest::new(0, 0);
    assert_eq!(decode_request(IOCTL_NBSHM_QUERY_HANDLES, &bytes(&h)[..16]), Err(STATUS_INVALID_PARAMETER));
}

#[test]
fn status_helpers() {
    assert!(is_error(STATUS_NOT_FOUND));
    assert!(!is_error(STATUS_BUFFER_OVERFLOW), "a warning, data comes back");
    assert!(!is_error(STATUS_SUCCESS));
    assert_eq!(name(STATUS_REVISION_MISMATCH), Some("STATUS_REVISION_MISMATCH"));
    assert_eq!(name(0x1234), None);
}

#[test]
fn keywords_by_name_and_id() {
    assert_eq!(keyword_id("usageintervalms"), Some(2));
    assert_eq!(keyword_name(5), Some("ReceivePathWalk"));
    assert_eq!(keyword_name(6), None);
    assert_eq!(keyword_id("Nope"), None);
}

#[test]
fn list_decoding_checks_counts_sizes_and_versions() {
    let mut buf = [0u8; ModuleListHeader::SIZE + 2 * ModuleRecord::SIZE];
    let mut rec = ModuleRecord::ZERO;
    rec.id = 7;
    rec.name_length = 2;
    rec.name[0] = u16::from(b'a');
    rec.name[1] = u16::from(b'b');
    let header = ModuleListHeader {
        header: Header::of::<ModuleListHeader>(),
        total: 2,
        returned: 2,
        record_size: u32::try_from(ModuleRecord::SIZE).unwrap(),
        reserved: 0,
        required_bytes: buf.len() as u64,
    };
    header.encode(&mut buf).unwrap();
    rec.encode(&mut buf[ModuleListHeader::SIZE..]).unwrap();
    rec.id = 8;
    rec.encode(&mut buf[ModuleListHeader::SIZE + ModuleRecord::SIZE..]).unwrap();
    let list = decode_list::<ModuleListHeader, ModuleRecord>(&buf).unwrap();
    assert_eq!(list.len(), 2);
    let ids: [u32; 2] = [list.get(0).unwrap().id, list.get(1).unwrap().id];
    assert_eq!(ids, [7, 8]);
    assert_eq!(list.get(0).unwrap().name_units(), &[97, 98]);
    assert!(list.get(2).is_none());
    // Announces more records than were returned.
    assert!(matches!(
        decode_list::<ModuleListHeader, ModuleRecord>(&buf[..buf.len() - 1]),
        Err(DecodeError::Short { .. })
    ));
    // Another record size.
    let mut h2 = header;
    h2.record_size = 8;
    h2.encode(&mut buf).unwrap();
    assert!(matches!(decode_list::<ModuleListHeader, ModuleRecord>(&buf), Err(DecodeError::Size { .. })));
    // Another version.
    let mut h3 = header;
    h3.header.version = 9;
    h3.encode(&mut buf).unwrap();
    assert_eq!(decode_list::<ModuleListHeader, ModuleRecord>(&buf).unwrap_err(), DecodeError::Version(9));
}

#[test]
fn output_minimums() {
    assert_eq!(output::minimum(&Request::QueryVersion), 80);
    assert_eq!(output::minimum(&Request::ListModules), 32);
    assert_eq!(output::minimum(&Request::QueryHandles { module_id: 1, start_index: 0 }), 48 + 56);
    assert_eq!(output::records_that_fit(32 + 520 * 2 + 519, 32, 520), 2);
    assert_eq!(output::records_that_fit(31, 32, 520), 0);
}
