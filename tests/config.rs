//! Configuration from the registry at DriverEntry: the service's `Parameters` key read through
//! the model's NDIS configuration functions (which check the handles are opened with a valid
//! configuration object and all closed again, and record a violation otherwise).

mod common;

use common::assert_clean;
use nbshm::config::{CONFIG, KEYWORDS, Keyword};
use nbshm::host::etw;
use nbshm::host::kernel::take_debug_log;
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::registry::RegValue;

fn load_with(registry: Option<Vec<(String, RegValue)>>) -> Model {
    let mut m = Model::new(ModelOptions { registry, ..ModelOptions::default() });
    // A value left from before (another load): DriverEntry must start from the defaults.
    CONFIG.set(Keyword::UsageIntervalMs, 100).unwrap();
    let _ = take_debug_log();
    etw::enable(5, u64::MAX, 0);
    assert_eq!(m.load(), 0, "DriverEntry");
    m
}

fn dword(name: &str, v: u32) -> (String, RegValue) {
    (name.to_owned(), RegValue::Dword(v))
}

fn values() -> Vec<u32> {
    Keyword::ALL.iter().map(|k| CONFIG.get(*k)).collect()
}

fn defaults() -> Vec<u32> {
    KEYWORDS.iter().map(|k| k.default).collect()
}

fn clamped_events() -> Vec<(String, u64, u64)> {
    etw::take()
        .into_iter()
        .filter(|e| e.name == "ConfigClamped")
        .map(|e| {
            (
                e.field("Keyword").unwrap().as_str().unwrap().to_owned(),
                e.field("Value").unwrap().as_u64().unwrap(),
                e.field("Clamped").unwrap().as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_empty_or_absent_parameters_key_means_defaults() {
    for registry in [Some(Vec::new()), None] {
        let absent = registry.is_none();
        let mut m = load_with(registry);
        assert_eq!(values(), defaults());
        assert!(clamped_events().is_empty());
        let log = take_debug_log().concat();
        assert_eq!(log.contains("no Parameters key"), absent, "{log}");
        m.unload();
        assert_eq!(m.violations(), vec![]);
        etw::reset();
    }
}

#[test]
fn values_in_range_take_effect_and_names_are_case_insensitive() {
    let mut m = load_with(Some(vec![
        dword("MaxSegmentsPerNetBuffer", 8),
        dword("sendpathwalk", 0),
        dword("USAGEINTERVALMS", 1000),
        dword("HandleTableSize", 1024),
        dword("VerboseSegments", 0),
        dword("ReceivePathWalk", 0),
        dword("SomethingElse", 99),
    ]));
    assert_eq!(values(), vec![8, 0, 1000, 1024, 0, 0]);
    assert!(clamped_events().is_empty());
    // HandleTableSize sizes the tables of modules attached from now on.
    let (i, status) = m.add_miniport("Adapter");
    assert_eq!(status, 0);
    assert_eq!(common::summary(&m.miniport(i)).handle_capacity, 1024);
    assert_eq!(m.restart(i), 0);
    assert_eq!(m.armed_timer_periods(), vec![std::time::Duration::from_secs(1)]);
    assert_clean(&m);
    m.unload();
    assert_eq!(m.violations(), vec![]);
    etw::reset();
}

#[test]
fn out_of_range_values_are_clamped_and_reported_once() {
    let mut m = load_with(Some(vec![
        dword("MaxSegmentsPerNetBuffer", 0),
        dword("SendPathWalk", 7),
        dword("UsageIntervalMs", 4_000_000),
        dword("HandleTableSize", 300),
        dword("VerboseSegments", 1),
    ]));
    assert_eq!(values(), vec![1, 1, 3_600_000, 256, 1, 1]);
    let mut events = clamped_events();
    events.sort();
    assert_eq!(
        events,
        vec![
            ("HandleTableSize".to_owned(), 300, 256),
            ("MaxSegmentsPerNetBuffer".to_owned(), 0, 1),
            ("SendPathWalk".to_owned(), 7, 1),
            ("UsageIntervalMs".to_owned(), 4_000_000, 3_600_000),
        ],
        "one event per clamped value, none for values in range"
    );
    let log = take_debug_log().concat();
    for needle in [
        "MaxSegmentsPerNetBuffer = 0 is outside 1..=1024: 1 in effect",
        "HandleTableSize = 300 is outside 16..=4096: 256 in effect",
    ] {
        assert!(log.contains(needle), "{needle:?} in {log}");
    }
    m.unload();
    assert_eq!(m.violations(), vec![]);
    etw::reset();
}

#[test]
fn values_of_the_wrong_type_leave_the_default() {
    let mut m = load_with(Some(vec![
        ("MaxSegmentsPerNetBuffer".to_owned(), RegValue::Sz("8".to_owned())),
        ("UsageIntervalMs".to_owned(), RegValue::Binary(vec![0xE8, 0x03, 0, 0])),
        dword("SendPathWalk", 0),
    ]));
    assert_eq!(values(), vec![64, 0, 5000, 256, 1, 1]);
    assert!(clamped_events().is_empty());
    let log = take_debug_log().concat();
    assert!(log.contains("MaxSegmentsPerNetBuffer is not a REG_DWORD: default 64 in effect"), "{log}");
    assert!(log.contains("UsageIntervalMs is not a REG_DWORD: default 5000 in effect"), "{log}");
    m.unload();
    assert_eq!(m.violations(), vec![]);
    etw::reset();
}

/// The model's configuration functions check the configuration object and the handles: a
/// driver that got them wrong would fail these checks.
#[test]
fn the_model_refuses_bad_configuration_objects_and_handles() {
    use nbshm::sys::{
        NDIS_CONFIGURATION_OBJECT, NDIS_OBJECT_HEADER, NDIS_STATUS_INVALID_PARAMETER, NdisCloseConfiguration,
        NdisOpenConfigurationEx,
    };
    let mut m = load_with(Some(Vec::new()));
    let mut handle = std::ptr::null_mut();
    for header in [
        NDIS_OBJECT_HEADER { Type: 0xA8, Revision: 1, Size: 0x18 },
        NDIS_OBJECT_HEADER { Type: 0xA9, Revision: 0, Size: 0x18 },
        NDIS_OBJECT_HEADER { Type: 0xA9, Revision: 1, Size: 0x13 },
    ] {
        let before = m.violation_count();
        let mut o = NDIS_CONFIGURATION_OBJECT { Header: header, NdisHandle: std::ptr::null_mut(), Flags: 0 };
        // SAFETY: the model's export with valid pointers (the header is what is wrong).
        let status = unsafe { NdisOpenConfigurationEx(&raw mut o, &raw mut handle) };
        assert_eq!(status, NDIS_STATUS_INVALID_PARAMETER, "{header:?}");
        assert_eq!(m.violation_count(), before + 1);
    }
    let before = m.violation_count();
    // SAFETY: a handle value that was never opened: the model records it.
    unsafe { NdisCloseConfiguration(std::ptr::without_provenance_mut(0x1234)) };
    assert_eq!(m.violation_count(), before + 1);
    nbshm::host::violations::reset();
    m.unload();
    assert_eq!(m.violations(), vec![]);
    etw::reset();
}
