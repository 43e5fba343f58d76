"""Every event the binary writes, decoded from the bytes it hands to EtwWriteTransfer, checked
against src/etw.rs and docs/etw.md; field values checked against what was placed in memory."""

import pytest

from conftest import finish
from nbshm_emu import layout as L
from nbshm_emu import sources
from nbshm_emu.harness import SHARED_MEMORY_HANDLE_BASE, Harness

VALID = L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
DISPATCH = L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
RESOURCES = L.NDIS_RECEIVE_FLAGS_RESOURCES
H1, H2, H3 = (SHARED_MEMORY_HANDLE_BASE + 0x10000 * i for i in (1, 2, 3))
NOT_EXERCISED = {"ConfigClamped": "needs out-of-range registry values; the harness reports none"}


@pytest.fixture(scope="module")
def scenario(sys_path):
    """One whole life with a verbose session listening from before DriverEntry."""
    h = Harness(sys_path, session_at_load=(5, 0xFFFFFFFFFFFFFFFF))
    assert h.driver_entry() == L.STATUS_SUCCESS
    m = h.attach(if_index=31, base_if_index=7, adapter="Emulated VMQ NIC")
    assert h.restart(m) == L.NDIS_STATUS_SUCCESS
    rx = h.build_chain([
        [{"data_length": 1514, "segments": [(H1, 0x1000, 1514, 0)]}],
        [{"data_length": 128, "segments": [(H1, 0x2000, 128, 0), (H2, 0x40, 64, 0x5)]}],
    ])
    h.receive(m, rx, VALID | DISPATCH)
    tx = h.build_chain([[{"data_length": 4000, "segments": [(H3, 0x300, 4000, 0)]},
                         {"data_length": 60, "segments": [(H2, 0x9000, 60, 0)]}]])
    h.send(m, tx, L.NDIS_SEND_FLAGS_DISPATCH_LEVEL)
    bad = h.build_chain([[{"data_length": 100, "segments": [(H1, 0xFFFFFF00, 0x200, 0)]}]])
    h.receive(m, bad, VALID | DISPATCH | RESOURCES)
    h.fire_timer(m.timer)
    h.return_nbls(m, rx, L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL)
    h.send_complete(m, tx, L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL)
    finish(h)
    return h, m, rx, tx, bad


def test_every_event_decodes_and_matches_both_schemas(scenario):
    h = scenario[0]
    rs, md = sources.etw_rs_schema(), sources.etw_md_schema()
    assert set(rs["events"]) == set(md["events"]), "src/etw.rs and docs/etw.md list different events"
    assert h.events
    for e in h.events:
        assert e.provider == "Nbshm.SharedMemoryFilter"
        # provider metadata, event metadata, then data (EVENT_DATA_DESCRIPTOR_TYPE_*: 2, 1, 0)
        assert e.descriptor_types[:2] == [2, 1] and set(e.descriptor_types[2:]) <= {0}, e.descriptor_types
        assert e.channel == L.TRACELOGGING_CHANNEL, (e.name, e.channel)
        assert e.name in rs["events"], e.name
        for schema in (rs["events"][e.name], md["events"][e.name]):
            assert e.level == schema["level"], e.name
            assert e.keyword == schema["keywords"], e.name
            assert e.field_names() == [f for f, _ in schema["fields"]], e.name
            for (fname, in_type, out_type, _tags), (_, ftype) in zip(e.fields, schema["fields"]):
                want_in, want_out = sources.FIELD_TYPE_ENCODING[ftype]
                assert in_type == want_in, f"{e.name}.{fname}: in-type {in_type}, {ftype} wants {want_in}"
                if want_out is not None:
                    assert out_type == want_out, f"{e.name}.{fname}: out-type {out_type}"
        assert list(e.values) == e.field_names()


def test_every_event_of_the_schema_was_written(scenario):
    h = scenario[0]
    written = {e.name for e in h.events}
    expected = set(sources.etw_rs_schema()["events"]) - set(NOT_EXERCISED)
    assert expected <= written, f"never written: {sorted(expected - written)}"


def test_segment_events_report_what_was_placed_in_memory(scenario):
    h, m, rx, tx, bad = scenario
    seg_events = h.events_named("SharedMemorySegment")
    got = {(e.values["Nbl"], e.values["NbIndex"], e.values["SegmentIndex"]):
           (e.values["Direction"], e.values["Handle"], e.values["Offset"], e.values["Length"],
            e.values["Flags"], e.values["ModuleId"], e.values["IfIndex"]) for e in seg_events}
    want = {}
    for chain, direction in ((rx, "receive"), (tx, "send"), (bad, "receive")):
        for nbl_i, nb_i, seg_i, _addr, handle, offset, length, flags in chain.segments:
            want[(chain.nbls[nbl_i], nb_i, seg_i)] = (direction, handle, offset, length, flags, 1, 31)
    assert got == want
    assert len(seg_events) == len(want)
    nb_events = {(e.values["Nbl"], e.values["NbIndex"]): e.values for e in h.events_named("NetBufferSharedMemory")}
    assert nb_events[(rx.nbls[1], 0)]["Segments"] == 2
    assert nb_events[(rx.nbls[1], 0)]["SharedBytes"] == 128 + 64
    assert nb_events[(rx.nbls[1], 0)]["DataLength"] == 128
    assert nb_events[(tx.nbls[0], 1)]["DataLength"] == 60
    assert len(nb_events) == 5


def test_lifecycle_events(scenario):
    h = scenario[0]
    att = h.events_named("FilterAttached")[0].values
    assert att == {"ModuleId": 1, "IfIndex": 31, "BaseMiniportIfIndex": 7, "MiniportName": "Emulated VMQ NIC",
                   "MediaType": 0, "HandleTableSize": 256, "State": 2}
    assert [e.values for e in h.events_named("FilterRestarted")] == [{"ModuleId": 1, "IfIndex": 31}]
    assert [e.values for e in h.events_named("FilterPaused")] == [
        {"ModuleId": 1, "IfIndex": 31, "PauseReason": L.NDIS_PAUSE_NDIS_INTERNAL, "Pending": 0}]
    det = h.events_named("FilterDetached")[0].values
    assert det == {"ModuleId": 1, "IfIndex": 31, "MiniportName": "Emulated VMQ NIC",
                   "ReceiveNetBuffers": 3, "SendNetBuffers": 2, "Segments": 6,
                   "SharedBytes": 1514 + 128 + 64 + 0x200 + 4000 + 60, "Anomalies": 1,
                   "DistinctHandles": 3}
    order = [e.name for e in h.events if e.name in ("DriverLoaded", "FilterAttached", "FilterRestarted",
                                                    "FilterPaused", "FilterDetached", "DriverUnloading")]
    assert order == ["DriverLoaded", "FilterAttached", "FilterRestarted", "FilterPaused",
                     "FilterDetached", "DriverUnloading"]


def test_timer_writes_usage_with_its_interval(scenario):
    h = scenario[0]
    timer_usage = [e.values for e in h.events_named("UsageSnapshot") if e.values["IntervalMs"] == 5000]
    assert {u["Direction"] for u in timer_usage} == {"receive", "send"}
    rx = next(u for u in timer_usage if u["Direction"] == "receive")
    assert (rx["Nbls"], rx["NetBuffers"], rx["NetBuffersWalked"], rx["NetBuffersWithSharedMemory"]) == (3, 3, 3, 3)
    assert (rx["Segments"], rx["MaxChainLength"], rx["OffsetOverflow"], rx["Anomalies"]) == (4, 2, 1, 1)
    handles = {e.values["Handle"]: e.values for e in h.events_named("HandleUsage")}
    assert set(handles) == {H1, H2, H3}
    assert (handles[H1]["ReceiveSegments"], handles[H1]["ReceiveBytes"]) == (3, 1514 + 128 + 0x200)
    assert (handles[H1]["MinOffset"], handles[H1]["MaxEnd"]) == (0x1000, 0xFFFFFF00 + 0x200)
    assert (handles[H2]["ReceiveSegments"], handles[H2]["SendSegments"]) == (1, 1)
    assert (handles[H3]["SendBytes"], handles[H3]["ReceiveBytes"]) == (4000, 0)


def test_enable_writes_the_rundown(running):
    h, m = running
    h.receive(m, h.build_chain([[{"data_length": 64, "segments": [(H1, 0x100, 64, 0)]}]]),
              VALID | DISPATCH | RESOURCES)
    assert h.events == []  # nobody listened
    h.enable(level=5, any_keyword=0xFFFFFFFFFFFFFFFF)
    names = [e.name for e in h.events]
    assert names == ["FilterAttached", "UsageSnapshot", "UsageSnapshot", "HandleUsage"], names
    assert h.events[0].values["State"] == 4  # Running
    assert [e.values["Direction"] for e in h.events[1:3]] == ["receive", "send"]
    assert h.events[1].values["IntervalMs"] == 0
    assert h.events[3].values["Handle"] == H1 and h.events[3].values["ReceiveBytes"] == 64
    # A capture-state request writes it again; a disable stops everything.
    mark = len(h.events)
    h.enable(code=L.EVENT_CONTROL_CODE_CAPTURE_STATE)
    assert [e.name for e in h.events[mark:]] == names
    h.disable()
    mark = len(h.events)
    h.receive(m, h.simple_chain(2), VALID | DISPATCH | RESOURCES)
    assert h.events[mark:] == []
    finish(h)


def test_a_light_session_gets_no_per_packet_events(running):
    """Level 4, keywords Lifecycle|Usage|Anomaly: no verbose event may be written (the harness
    also flags any event written that the session did not ask for)."""
    h, m = running
    h.enable(level=4, any_keyword=0xB)
    mark = len(h.events)
    h.receive(m, h.simple_chain(8), VALID | DISPATCH | RESOURCES)
    assert h.events[mark:] == []
    cyc = h.build_chain([[{"data_length": 60, "segments": [(H1, 0, 60, 0)], "cycle": True}]])
    h.receive(m, cyc, VALID | DISPATCH | RESOURCES)
    assert [e.name for e in h.events[mark:]] == ["ChainAnomaly"]
    finish(h)


@pytest.mark.parametrize("keyword,expected", [
    (0x4, {"SharedMemorySegment"}),
    (0x10, {"NetBufferSharedMemory"}),
    (0x8, {"ChainAnomaly"}),
    (0x4 | 0x8, {"SharedMemorySegment", "ChainAnomaly"}),
])
def test_keywords_select_the_per_packet_events(running, keyword, expected):
    h, m = running
    h.enable(level=5, any_keyword=keyword)
    mark = len(h.events)
    chain = h.build_chain([[{"data_length": 60, "segments": [(H1, 0, 60, 0)]}],
                           [{"data_length": 60, "segments": [(H2, 0xFFFFFFF0, 0x20, 0)]}]])
    h.receive(m, chain, VALID | DISPATCH | RESOURCES)
    assert {e.name for e in h.events[mark:]} == expected
    finish(h)
