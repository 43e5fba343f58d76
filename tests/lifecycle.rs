//! The driver's lifecycle under the model, in NDIS order: register, attach two miniports,
//! restart, traffic, pause, restart, traffic, detach, unload; and the registration contract.

mod common;

use common::{assert_clean, assert_stats_match, batch, running, summary};
use nbshm::filter::module::ModuleState;
use nbshm::host::model::{Model, ModelOptions, MpState};
use nbshm::host::{kernel, violations};
use nbshm::names::{SERVICE_NAME, UNIQUE_NAME};
use nbshm::sys::*;

#[test]
fn full_lifecycle_with_two_miniports() {
    let mut m = running(2, ModelOptions::default());
    let handlers = m.handlers().expect("registered");
    assert_eq!((handlers.revision, handlers.ndis_minor), (2, 30), "NDIS 6.30, characteristics revision 2");
    for round in 0..2 {
        for i in 0..2 {
            for _ in 0..20 {
                m.send(i, batch(8, 2, 3), NDIS_SEND_FLAGS_DISPATCH_LEVEL, 0).expect("protocol running");
                m.indicate(i, batch(8, 1, 3), NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, 0)
                    .expect("miniport running");
            }
        }
        assert!(m.quiesce());
        assert_stats_match(&m);
        let s = summary(&m.miniport(0));
        assert_eq!(s.send.net_buffers, 20 * 8 * 2 * (round + 1));
        assert_eq!(s.receive.net_buffers, 20 * 8 * (round + 1));
        assert_eq!(s.state, ModuleState::Running);
        for i in 0..2 {
            m.pause(i);
            assert_eq!(m.miniport(i).state(), MpState::Paused);
            assert_eq!(summary(&m.miniport(i)).state, ModuleState::Paused);
            assert_eq!(m.restart(i), 0);
        }
    }
    for i in 0..2 {
        m.pause(i);
        m.detach(i);
        assert_eq!(m.miniport(i).state(), MpState::Detached);
    }
    let mut modules = 0;
    nbshm::filter::for_each_module_summary(|_| modules += 1);
    assert_eq!(modules, 0, "detach removes the module");
    m.unload();
    assert!(kernel::pool_allocations().is_empty(), "all pool freed");
    assert_clean(&m);
}

#[test]
fn unload_with_running_modules_pauses_and_detaches_them() {
    let mut m = running(2, ModelOptions::default());
    m.send(0, batch(4, 1, 1), 0, 0).unwrap();
    m.indicate(1, batch(4, 1, 1), NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, 0).unwrap();
    m.unload();
    for mp in m.miniports() {
        assert_eq!(mp.state(), MpState::Detached);
    }
    assert!(kernel::pool_allocations().is_empty());
    assert_clean(&m);
}

#[test]
fn registration_carries_the_inf_names_and_a_consistent_header() {
    let c = nbshm::filter::characteristics();
    assert_eq!(c.Header.Type, NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS);
    assert_eq!((c.Header.Revision, c.Header.Size), (2, NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2));
    assert_eq!((c.MajorNdisVersion, c.MinorNdisVersion), (6, 30));
    let s = |u: &UNICODE_STRING| {
        // SAFETY: the driver's static strings.
        String::from_utf16(unsafe { std::slice::from_raw_parts(u.Buffer, usize::from(u.Length) / 2) })
            .unwrap()
    };
    assert_eq!(s(&c.UniqueName), UNIQUE_NAME);
    assert_eq!(s(&c.ServiceName), SERVICE_NAME);
    let (inf_unique, inf_service) = nbshm::host::model::inf_names();
    assert_eq!(s(&c.UniqueName), inf_unique);
    assert_eq!(s(&c.ServiceName), inf_service);
    // Only what a pass-through observer needs; NDIS handles OIDs and PnP itself.
    assert!(c.OidRequestHandler.is_none() && c.CancelOidRequestHandler.is_none());
    assert!(c.NetPnPEventHandler.is_none() && c.DevicePnPEventNotifyHandler.is_none());
    assert!(c.CancelSendNetBufferListsHandler.is_none(), "nothing is ever queued");
    assert!(c.StatusHandler.is_some());
}

type Mutation = Box<dyn Fn(&mut NDIS_FILTER_DRIVER_CHARACTERISTICS)>;

#[test]
fn the_model_rejects_bad_characteristics() {
    let m = Model::new(ModelOptions::default());
    let cases: Vec<(&str, Mutation, NDIS_STATUS)> = vec![
        ("wrong type", Box::new(|c| c.Header.Type = 0x80), NDIS_STATUS_BAD_CHARACTERISTICS),
        ("rev 2 with rev 1 size", Box::new(|c| c.Header.Size = 0xC8), NDIS_STATUS_BAD_CHARACTERISTICS),
        (
            "rev 3 below 6.80",
            Box::new(|c| {
                c.Header.Revision = 3;
                c.Header.Size = 0xF0;
            }),
            NDIS_STATUS_BAD_CHARACTERISTICS,
        ),
        ("6.20 below the ARM64 minimum", Box::new(|c| c.MinorNdisVersion = 20), NDIS_STATUS_BAD_VERSION),
        ("NDIS 5", Box::new(|c| c.MajorNdisVersion = 5), NDIS_STATUS_BAD_VERSION),
        ("no pause handler", Box::new(|c| c.PauseHandler = None), NDIS_STATUS_BAD_CHARACTERISTICS),
        (
            "send without complete",
            Box::new(|c| c.SendNetBufferListsCompleteHandler = None),
            NDIS_STATUS_BAD_CHARACTERISTICS,
        ),
        ("receive without status", Box::new(|c| c.StatusHandler = None), NDIS_STATUS_BAD_CHARACTERISTICS),
        ("empty service name", Box::new(|c| c.ServiceName.Length = 0), NDIS_STATUS_BAD_CHARACTERISTICS),
    ];
    for (what, mutate, want) in cases {
        let mut c = nbshm::filter::characteristics();
        mutate(&mut c);
        violations::reset();
        // SAFETY: the handlers are the driver's own and are not called.
        let status = unsafe { m.register_raw(&mut c) };
        assert_eq!(status, want, "{what}");
        assert!(violations::count() > 0, "{what}: recorded as a violation");
    }
    let mut good = nbshm::filter::characteristics();
    violations::reset();
    // SAFETY: as above.
    assert_eq!(unsafe { m.register_raw(&mut good) }, NDIS_STATUS_SUCCESS);
    assert_eq!(violations::count(), 0);
}

#[test]
fn attach_refuses_non_ethernet_media_without_leaking() {
    let mut m = Model::new(ModelOptions::default());
    assert_eq!(m.load(), 0);
    let (_, status) = m.add_miniport_with_media("WAN", NdisMediumWan);
    assert_eq!(status, NDIS_STATUS_INVALID_PARAMETER);
    let (idx, status) = m.add_miniport("LAN");
    assert_eq!(status, NDIS_STATUS_SUCCESS);
    assert_eq!(m.restart(idx), 0);
    m.unload();
    assert!(kernel::pool_allocations().is_empty());
    assert_clean(&m);
}

#[test]
fn status_indications_pass_through() {
    let m = running(1, ModelOptions::default());
    assert!(m.indicate_status(0), "the very indication went up");
    assert_clean(&m);
}

#[test]
fn debug_print_reports_a_failed_registration() {
    let mut m = Model::new(ModelOptions { min_ndis_minor: 40, ..ModelOptions::default() });
    let status = m.load();
    assert_eq!(status, NDIS_STATUS_BAD_VERSION, "the model emulates an OS that wants 6.40+");
    let log = kernel::take_debug_log();
    assert!(
        log.iter().any(|l| l.contains("NdisFRegisterFilterDriver failed") && l.contains("0xc0010004")),
        "{log:?}"
    );
    // The expected violation is the version check itself.
    assert!(violations::list().iter().all(|v| v.api == "NdisFRegisterFilterDriver"));
}
