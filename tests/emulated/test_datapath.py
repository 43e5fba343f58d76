"""Send and receive paths: the same chains go on with the same port, count and flags; NBL memory
is left alone; returns and completions flow back; the paused paths follow the contract."""

import pytest

from conftest import finish
from nbshm_emu import layout as L
from nbshm_emu.harness import UNMAPPED_KERNEL_ADDRESS, EmulationFailure, Harness

VALID = L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
DISPATCH = L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
RESOURCES = L.NDIS_RECEIVE_FLAGS_RESOURCES
SEND_DISPATCH = L.NDIS_SEND_FLAGS_DISPATCH_LEVEL


def one(handoffs, api):
    got = [x for x in handoffs if x["api"] == api]
    assert len(got) == 1, [x["api"] for x in handoffs]
    return got[0]


@pytest.mark.parametrize("flags", [VALID | DISPATCH | RESOURCES, VALID | DISPATCH, VALID, DISPATCH])
@pytest.mark.parametrize("port", [0, 3])
def test_receive_is_passed_up_unchanged(running, flags, port):
    h, m = running
    chain = h.simple_chain(3)
    ho = h.receive(m, chain, flags, port=port)
    assert [x["api"] for x in ho] == ["NdisFIndicateReceiveNetBufferLists"]
    up = ho[0]
    assert up["handle"] == m.filter_handle
    assert (up["nbls"], up["port"], up["count"], up["flags"]) == (chain.head, port, 3, flags)
    assert up["snapshot_equal"], "NBL/NB/segment memory changed before the indication"
    assert up["irql"] == (L.DISPATCH_LEVEL if flags & DISPATCH else L.PASSIVE_LEVEL)
    if flags & RESOURCES:
        assert chain.head not in h.indicated_up
    else:
        ret_flags = L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL if flags & DISPATCH else 0
        back = h.return_nbls(m, chain, ret_flags)
        r = one(back, "NdisFReturnNetBufferLists")
        assert (r["handle"], r["nbls"], r["flags"]) == (m.filter_handle, chain.head, ret_flags)
        assert r["snapshot_equal"]
    finish(h)


@pytest.mark.parametrize("flags", [SEND_DISPATCH, 0])
def test_send_is_passed_down_and_completed_up_unchanged(running, flags):
    h, m = running
    chain = h.build_chain([
        [{"data_length": 9000, "segments": [(0xFFFFB00000001000, 0x0, 0x1000, 0),
                                            (0xFFFFB00000001000, 0x1000, 0x1328, 0)]},
         {"data_length": 60, "segments": [(0xFFFFB00000002000, 0x40, 60, 0)]}],
        [{"data_length": 1514, "segments": [(0xFFFFB00000003000, 0x800, 1514, 0)]}],
    ])
    ho = h.send(m, chain, flags, port=2)
    down = one(ho, "NdisFSendNetBufferLists")
    assert (down["handle"], down["nbls"], down["port"], down["flags"]) == (m.filter_handle, chain.head, 2, flags)
    assert down["snapshot_equal"]
    complete_flags = L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL if flags else 0
    back = h.send_complete(m, chain, complete_flags)
    up = one(back, "NdisFSendNetBufferListsComplete")
    assert (up["handle"], up["nbls"], up["flags"]) == (m.filter_handle, chain.head, complete_flags)
    assert up["snapshot_equal"]
    finish(h)


def test_receive_without_valid_flag_never_reads_shared_memory_info(running):
    """Without NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID the slot may hold anything: here an
    unmapped system address, which the emulation would fault on if the driver read it."""
    h, m = running
    h.enable(level=5)
    chain = h.build_chain([[{"data_length": 1514, "shared_memory_info": UNMAPPED_KERNEL_ADDRESS}]
                           for _ in range(2)])
    ho = h.receive(m, chain, DISPATCH | RESOURCES)
    assert one(ho, "NdisFIndicateReceiveNetBufferLists")["snapshot_equal"]
    assert h.events_named("SharedMemorySegment") == [] and h.events_named("ChainAnomaly") == []
    h.enable(code=L.EVENT_CONTROL_CODE_CAPTURE_STATE)
    rx = [e.values for e in h.events_named("UsageSnapshot") if e.values["Direction"] == "receive"][-1]
    assert (rx["Nbls"], rx["NetBuffers"], rx["NetBuffersWalked"], rx["Segments"]) == (2, 2, 0, 0)
    finish(h)


def test_control_the_same_garbage_pointer_faults_when_walked(sys_path):
    """Positive control for the test above: with the VALID flag the driver does walk the slot,
    and the unmapped pointer faults the emulation. So a read of it cannot go unnoticed."""
    h = Harness(sys_path)
    h.driver_entry()
    m = h.attach()
    h.restart(m)
    chain = h.build_chain([[{"data_length": 1514, "shared_memory_info": UNMAPPED_KERNEL_ADDRESS}]])
    with pytest.raises(EmulationFailure, match="invalid_read"):
        h.receive(m, chain, VALID | DISPATCH | RESOURCES)


@pytest.mark.parametrize("dispatch", [True, False])
def test_paused_module_completes_sends_with_status_paused(loaded, dispatch):
    h = loaded
    m = h.attach()  # attached = paused; never restarted
    chain = h.simple_chain(3)
    flags = SEND_DISPATCH if dispatch else 0
    ho = h.send(m, chain, flags, allow_status_write=True)
    up = one(ho, "NdisFSendNetBufferListsComplete")
    assert [x["api"] for x in ho] == ["NdisFSendNetBufferListsComplete"]
    assert up["nbls"] == chain.head
    assert up["flags"] == (L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL if dispatch else 0)
    for nbl in chain.nbls:
        assert h.u32(nbl + L.NBL_STATUS) == L.NDIS_STATUS_PAUSED
    finish(h)


@pytest.mark.parametrize("flags", [DISPATCH | VALID, VALID, DISPATCH | VALID | RESOURCES])
def test_paused_module_returns_receives(loaded, flags):
    h = loaded
    m = h.attach()
    chain = h.simple_chain(2)
    ho = h.receive(m, chain, flags)
    if flags & RESOURCES:
        assert ho == []  # nothing to return: NDIS takes them back when the callback returns
    else:
        r = one(ho, "NdisFReturnNetBufferLists")
        assert [x["api"] for x in ho] == ["NdisFReturnNetBufferLists"]
        assert r["nbls"] == chain.head
        assert r["flags"] == (L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL if flags & DISPATCH else 0)
        assert r["snapshot_equal"]
    assert h.restart(m) == L.NDIS_STATUS_SUCCESS
    h.enable(level=4, any_keyword=0x2)
    rx = [e.values for e in h.events_named("UsageSnapshot") if e.values["Direction"] == "receive"][-1]
    assert rx["RejectedNbls"] == 2 and rx["Nbls"] == 0
    finish(h)


def test_status_indication_is_passed_up(running):
    h, m = running
    indication = h.alloc(0x30)
    h.write(indication, bytes([L.NDIS_OBJECT_TYPE_STATUS_INDICATION, 1, 0x30, 0]))
    h.call(h.handler("StatusHandler"), [m.ctx, indication], irql=L.DISPATCH_LEVEL, what="FilterStatus")
    st = h.calls_to("NdisFIndicateStatus")
    assert st == [{"handle": m.filter_handle, "indication": indication}]
    finish(h)


def test_per_cpu_counters_add_up(running):
    h, m = running
    for cpu in (0, 3, 1):
        h.receive(m, h.simple_chain(5), VALID | DISPATCH | RESOURCES, cpu=cpu)
    h.send(m, c := h.simple_chain(2), SEND_DISPATCH, cpu=2)
    h.send_complete(m, c, L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL, cpu=0)
    h.enable(level=4, any_keyword=0x2)
    snap = {e.values["Direction"]: e.values for e in h.events_named("UsageSnapshot")}
    assert (snap["receive"]["Nbls"], snap["receive"]["NetBuffers"], snap["receive"]["Segments"]) == (15, 15, 15)
    assert snap["receive"]["SharedBytes"] == 15 * 1514
    assert (snap["send"]["Nbls"], snap["send"]["NetBuffers"], snap["send"]["Segments"]) == (2, 2, 2)
    finish(h)
