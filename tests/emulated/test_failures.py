"""Error paths of the real binary: the harness makes a kernel or NDIS call fail and checks the
driver reports it, undoes what it did and leaves nothing allocated."""

import pytest

from conftest import finish
from nbshm_emu import layout as L
from nbshm_emu.harness import Harness

BAD_CHARACTERISTICS = 0xC0010005
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A


def load(sys_path, **fail):
    h = Harness(sys_path, fail=fail)
    return h, h.driver_entry()


def test_ndis_registration_failure_fails_driver_entry_and_unregisters_etw(sys_path):
    h, status = load(sys_path, NdisFRegisterFilterDriver=BAD_CHARACTERISTICS)
    assert status == BAD_CHARACTERISTICS  # DriverEntry returns NDIS's status
    names = h.trace_names()
    assert names.index("NdisFRegisterFilterDriver") < names.index("EtwUnregister")
    assert h.etw["unregistered"]
    assert not h.leaks(), h.leaks()
    assert [lvl for _c, lvl, _t in h.dbgprints] == [0], h.dbgprints  # one error-level print
    assert "NdisFRegisterFilterDriver" in h.dbgprints[0][2]


def test_etw_registration_failure_is_not_fatal(sys_path):
    h, status = load(sys_path, EtwRegister=STATUS_INSUFFICIENT_RESOURCES)
    assert status == L.STATUS_SUCCESS
    assert [lvl for _c, lvl, _t in h.dbgprints] == [0] and "EtwRegister" in h.dbgprints[0][2]
    m = h.attach()
    assert m.attach_status == L.NDIS_STATUS_SUCCESS and h.restart(m) == L.NDIS_STATUS_SUCCESS
    h.receive(m, h.simple_chain(4), L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | L.NDIS_RECEIVE_FLAGS_RESOURCES)
    assert h.pause(m) == L.NDIS_STATUS_SUCCESS
    h.detach(m)
    h.unload()
    assert h.ndis["deregistered"]
    assert h.events == []
    assert not h.leaks(), h.leaks()
    assert "EtwWriteTransfer" not in h.trace_names()


def _attach_fails_cleanly(h, want_status):
    m = h.attach()
    assert m.attach_status == want_status, f"FilterAttach returned {m.attach_status:#x}"
    assert h.pool == {}, "FilterAttach failed but left pool blocks allocated"
    assert all(t["freed"] for t in h.timers.values()), "FilterAttach failed but kept its timer"
    return m


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_pool_failure_during_attach(sys_path, nth):
    h, status = load(sys_path, ExAllocatePool2={nth})
    assert status == L.STATUS_SUCCESS
    _attach_fails_cleanly(h, L.NDIS_STATUS_RESOURCES)
    assert h.calls_to("NdisFSetAttributes") == []
    # The next attach (allocations succeed again) works and the driver unloads clean.
    m = h.attach()
    assert m.attach_status == L.NDIS_STATUS_SUCCESS
    h.enable(level=4, any_keyword=0x1)
    assert [e.values["ModuleId"] for e in h.events_named("FilterAttached")] == [2]
    finish(h)


def test_timer_allocation_failure_during_attach(sys_path):
    h, _ = load(sys_path, NdisAllocateTimerObject=L.NDIS_STATUS_RESOURCES)
    _attach_fails_cleanly(h, L.NDIS_STATUS_RESOURCES)
    assert h.calls_to("NdisFSetAttributes") == []
    del h.fail["NdisAllocateTimerObject"]
    assert h.attach().attach_status == L.NDIS_STATUS_SUCCESS
    finish(h)


def test_set_attributes_failure_during_attach(sys_path):
    h, _ = load(sys_path, NdisFSetAttributes=L.NDIS_STATUS_FAILURE)
    _attach_fails_cleanly(h, L.NDIS_STATUS_FAILURE)
    assert len(h.calls_to("NdisFreeTimerObject")) == 1
    h.enable(level=4, any_keyword=0x1)
    assert h.events_named("FilterAttached") == []  # the failed module is in no list
    del h.fail["NdisFSetAttributes"]
    assert h.attach().attach_status == L.NDIS_STATUS_SUCCESS
    finish(h)


@pytest.mark.parametrize("revision,size", [(1, 0xA4), (2, 0xB0), (3, 0xC8), (4, 0xE0)])
def test_attach_accepts_every_attach_parameters_revision(loaded, revision, size):
    """The driver reads only revision-1 fields, so any revision NDIS sends must do."""
    h = loaded
    m = h.attach(header=(L.NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS, revision, size))
    assert m.attach_status == L.NDIS_STATUS_SUCCESS
    finish(h)


def test_attach_refuses_a_malformed_header(loaded):
    h = loaded
    m = h.attach(header=(L.NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS, 1, 0x20))
    assert m.attach_status == L.NDIS_STATUS_INVALID_PARAMETER
    finish(h)
