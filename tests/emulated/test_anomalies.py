"""Malformed shared-memory chains are counted and reported, the packet still passes, and no
chain can make the driver run away (every call is bounded by an instruction budget)."""

import pytest

from conftest import finish
from nbshm_emu import layout as L
from nbshm_emu.harness import SHARED_MEMORY_HANDLE_BASE as HB
from nbshm_emu.harness import EmulationFailure, Harness

VALID = L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
DISPATCH = L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
RESOURCES = L.NDIS_RECEIVE_FLAGS_RESOURCES
MAX_SEGMENTS = 64  # MaxSegmentsPerNetBuffer default (docs/etw.md, src/config.rs)


def usage(h, direction):
    h.enable(code=L.EVENT_CONTROL_CODE_CAPTURE_STATE)
    return [e.values for e in h.events_named("UsageSnapshot") if e.values["Direction"] == direction][-1]


def test_cycle_is_reported_overlong_and_stops(running):
    h, m = running
    h.enable(level=5)
    chain = h.build_chain([[{"data_length": 60, "segments": [(HB, 0x10, 60, 0)], "cycle": True}]])
    ho = h.receive(m, chain, VALID | DISPATCH | RESOURCES)
    assert [x["api"] for x in ho] == ["NdisFIndicateReceiveNetBufferLists"]
    assert ho[0]["snapshot_equal"]
    anomalies = [e.values for e in h.events_named("ChainAnomaly")]
    assert [(a["Kind"], a["SegmentIndex"], a["Nbl"], a["NbIndex"], a["Direction"]) for a in anomalies] == [
        ("overlong", MAX_SEGMENTS, chain.head, 0, "receive")]
    segs = h.events_named("SharedMemorySegment")
    assert len(segs) == MAX_SEGMENTS  # the self-linked segment, walked up to the bound
    assert {(s.values["Handle"], s.values["Offset"]) for s in segs} == {(HB, 0x10)}
    rx = usage(h, "receive")
    assert (rx["Overlong"], rx["MaxChainLength"], rx["Anomalies"]) == (1, MAX_SEGMENTS, 1)
    finish(h)


def test_two_segment_cycle_on_the_send_path(running):
    h, m = running
    h.enable(level=3, any_keyword=0x8)
    chain = h.build_chain([[{"data_length": 60, "segments": [(HB, 0, 30, 0), (HB, 30, 30, 0)]}]])
    first = chain.segments[0][3]
    second = chain.segments[1][3]
    h.w64(second + L.SHM_NEXT, first)  # second -> first: a two-element loop
    ho = h.send(m, chain, L.NDIS_SEND_FLAGS_DISPATCH_LEVEL)
    assert [x["api"] for x in ho] == ["NdisFSendNetBufferLists"]
    assert [(e.values["Kind"], e.values["Direction"]) for e in h.events_named("ChainAnomaly")] == [
        ("overlong", "send")]
    h.send_complete(m, chain, 0)
    finish(h)


@pytest.mark.parametrize("segment,kind", [
    ((HB, 0xFFFFF000, 0x2000, 0), "offset_overflow"),
    ((0, 0x100, 64, 0), "null_handle"),
    ((HB, 0x100, 0, 0), "zero_length"),
])
def test_segment_defects_are_counted(running, segment, kind):
    h, m = running
    h.enable(level=5)
    good = (HB + 0x1000, 0, 100, 0)
    chain = h.build_chain([[{"data_length": 100, "segments": [good]}, {"data_length": 100, "segments": [good, segment]}]])
    ho = h.receive(m, chain, VALID | DISPATCH | RESOURCES)
    assert ho[0]["snapshot_equal"]
    anomalies = [(e.values["Kind"], e.values["NbIndex"], e.values["SegmentIndex"]) for e in h.events_named("ChainAnomaly")]
    assert anomalies == [(kind, 1, 1)]
    counters = {"offset_overflow": "OffsetOverflow", "null_handle": "NullHandle", "zero_length": "ZeroLength"}
    rx = usage(h, "receive")
    assert rx[counters[kind]] == 1 and rx["Anomalies"] == 1 and rx["Segments"] == 3
    finish(h)


@pytest.mark.parametrize("pointer", [0x00007FF000001000, 0xFFFFA80000000004])
def test_bad_segment_pointers_are_reported_not_read(running, pointer):
    """A user-mode (here: unmapped) or misaligned link stops the walk as bad_pointer; reading it
    would fault the emulation (unmapped) or cross an NBL structure (misaligned)."""
    h, m = running
    h.enable(level=5)
    chain = h.build_chain([[{"data_length": 60, "segments": [(HB, 0, 60, 0)]}]])
    h.w64(chain.segments[0][3] + L.SHM_NEXT, pointer)
    ho = h.receive(m, chain, VALID | DISPATCH | RESOURCES)
    assert [x["api"] for x in ho] == ["NdisFIndicateReceiveNetBufferLists"]
    assert [(e.values["Kind"], e.values["SegmentIndex"]) for e in h.events_named("ChainAnomaly")] == [("bad_pointer", 1)]
    assert len(h.events_named("SharedMemorySegment")) == 1
    finish(h)


def test_budget_stops_a_runaway_call(sys_path):
    """Negative control for the hang guard: with a budget too small for one receive, the call
    is stopped and reported instead of running on."""
    h = Harness(sys_path)
    h.driver_entry()
    m = h.attach()
    h.restart(m)
    h.budget = 40
    with pytest.raises(EmulationFailure, match="budget"):
        h.receive(m, h.simple_chain(8), VALID | DISPATCH | RESOURCES)
