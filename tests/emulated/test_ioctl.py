"""The control device of the real image: IRPs built as the I/O manager builds them for
METHOD_BUFFERED, sent to the dispatch routines the driver registered with NdisRegisterDeviceEx,
answers decoded with the layouts of docs/ioctl.md. And the registry keywords DriverEntry reads
through NdisReadConfiguration, with values present, out of range and of the wrong type."""

import re
import struct

import pytest

from conftest import finish
from nbshm_emu import ioctl as I
from nbshm_emu import layout as L
from nbshm_emu import sources
from nbshm_emu.harness import SHARED_MEMORY_HANDLE_BASE as HB
from nbshm_emu.harness import EmulationFailure, Harness

VALID = L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
DISPATCH = L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
RESOURCES = L.NDIS_RECEIVE_FLAGS_RESOURCES


def config(h) -> dict[str, dict]:
    status, info, out = h.ioctl(I.GET_CONFIG, I.request(size=I.REQUEST), I.CONFIG_RESPONSE)
    assert (status, info) == (I.STATUS_SUCCESS, I.CONFIG_RESPONSE)
    return I.config_response(out)


def modules(h, out_len=4096):
    status, info, out = h.ioctl(I.LIST_MODULES, I.request(), out_len)
    assert status in (I.STATUS_SUCCESS, I.STATUS_BUFFER_OVERFLOW), hex(status)
    head, records = I.module_list(out)
    assert info == I.MODULE_LIST_HEADER + I.MODULE_RECORD * head["returned"]
    return status, head, records


def set_config(h, keyword, value):
    data = I.request(I.KEYWORDS.index(keyword), value)
    return h.ioctl(I.SET_CONFIG, data, I.SET_CONFIG_RESPONSE)


@pytest.mark.parametrize("major", [L.IRP_MJ_CREATE, L.IRP_MJ_CLEANUP, L.IRP_MJ_CLOSE])
def test_create_cleanup_close_complete_with_success(loaded, major):
    h = loaded
    assert h.irp(major) == (I.STATUS_SUCCESS, 0, b"")
    finish(h)


def test_query_version(loaded):
    h = loaded
    status, info, out = h.ioctl(I.QUERY_VERSION, b"", I.VERSION_RESPONSE)
    assert (status, info) == (I.STATUS_SUCCESS, I.VERSION_RESPONSE)
    v = I.version_response(out)
    version = re.search(r'^version = "([^"]+)"', (sources.REPO / "Cargo.toml").read_text(), re.M).group(1)
    assert v["driver_version"] == version
    assert (v["protocol_version"], v["ndis_major"], v["ndis_minor"]) == (1, 6, 30)
    assert (v["driver_major"], v["driver_minor"]) == (h.chars["MajorDriverVersion"], h.chars["MinorDriverVersion"])
    assert (v["module_record_size"], v["handle_record_size"]) == (I.MODULE_RECORD, I.HANDLE_RECORD)
    assert (v["keyword_count"], v["modules_attached"], v["reserved"]) == (6, 0, 0)
    m = h.attach()
    h.restart(m)
    assert I.version_response(h.ioctl(I.QUERY_VERSION, b"", 200)[2])["modules_attached"] == 1
    finish(h)


@pytest.mark.parametrize("code,data,out_len,expected", [
    # Unknown codes, including ours with another method or access, before any buffer is read.
    (I.ctl_code(I.DEVICE_TYPE, 0x8FF, 0, 1), b"", 64, I.STATUS_INVALID_DEVICE_REQUEST),
    (I.QUERY_VERSION | 3, b"", 80, I.STATUS_INVALID_DEVICE_REQUEST),
    (I.ctl_code(I.DEVICE_TYPE, 0x800, 0, 0), b"", 80, I.STATUS_INVALID_DEVICE_REQUEST),
    (I.ctl_code(0x0012, 0x800, 0, 1), b"", 80, I.STATUS_INVALID_DEVICE_REQUEST),
    # QUERY_VERSION takes no input.
    (I.QUERY_VERSION, b"\0" * 8, 80, I.STATUS_INFO_LENGTH_MISMATCH),
    # Shorter than a header; another protocol version; a size that is not the request's.
    (I.GET_CONFIG, b"\x01\0\0\0", 160, I.STATUS_INFO_LENGTH_MISMATCH),
    (I.GET_CONFIG, I.request(version=2), 160, I.STATUS_REVISION_MISMATCH),
    (I.GET_CONFIG, I.request(size=24), 160, I.STATUS_INFO_LENGTH_MISMATCH),
    (I.GET_CONFIG, I.request() + b"\0" * 8, 160, I.STATUS_INFO_LENGTH_MISMATCH),
    # Nonzero flags or reserved fields.
    (I.GET_CONFIG, I.request(1, 0), 160, I.STATUS_INVALID_PARAMETER),
    (I.LIST_MODULES, I.request(0, 7), 4096, I.STATUS_INVALID_PARAMETER),
    # No room for the answer.
    (I.QUERY_VERSION, b"", 79, I.STATUS_BUFFER_TOO_SMALL),
    (I.GET_CONFIG, I.request(), 159, I.STATUS_BUFFER_TOO_SMALL),
    (I.LIST_MODULES, I.request(), 31, I.STATUS_BUFFER_TOO_SMALL),
    (I.QUERY_HANDLES, I.request(1, 0), I.HANDLE_LIST_HEADER + I.HANDLE_RECORD - 1, I.STATUS_BUFFER_TOO_SMALL),
    (I.SET_CONFIG, I.request(0, 8), 23, I.STATUS_BUFFER_TOO_SMALL),
    # Per-request checks.
    (I.QUERY_HANDLES, I.request(0, 0), 4096, I.STATUS_INVALID_PARAMETER),
    (I.QUERY_HANDLES, I.request(99, 0), 4096, I.STATUS_NOT_FOUND),
    (I.RESET_STATS, I.request(99, 0), 16, I.STATUS_NOT_FOUND),
    (I.SET_CONFIG, I.request(6, 1), 24, I.STATUS_NOT_FOUND),
    (I.SET_CONFIG, I.request(3, 512), 24, I.STATUS_NOT_SUPPORTED),
    (I.SET_CONFIG, I.request(0, 0), 24, I.STATUS_INVALID_PARAMETER),
    (I.SET_CONFIG, I.request(0, 1025), 24, I.STATUS_INVALID_PARAMETER),
])
def test_bad_requests_get_an_ntstatus_and_no_output(loaded, code, data, out_len, expected):
    h = loaded
    status, info, _out = h.ioctl(code, data, out_len)
    assert (status, info) == (expected, 0), f"{status:#x}"
    assert config(h)["MaxSegmentsPerNetBuffer"]["value"] == 64  # nothing changed
    finish(h)


def test_a_missing_system_buffer_is_refused(loaded):
    h = loaded
    assert h.ioctl(I.GET_CONFIG, I.request(), I.CONFIG_RESPONSE, system_buffer=False)[:2] == (
        I.STATUS_INVALID_PARAMETER, 0)
    finish(h)


def test_list_modules_reports_what_went_through(running):
    h, m = running
    h.receive(m, h.simple_chain(3, segments_per_nb=2, handles=2), VALID | DISPATCH | RESOURCES, cpu=1)
    h.receive(m, h.simple_chain(2), DISPATCH | RESOURCES, cpu=2)  # not walked: VALID clear
    sent = h.simple_chain(4)
    h.send(m, sent, L.NDIS_SEND_FLAGS_DISPATCH_LEVEL, cpu=3)
    h.send_complete(m, sent, L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL)
    status, head, records = modules(h)
    assert status == I.STATUS_SUCCESS
    assert (head["total"], head["returned"], head["record_size"], head["reserved"]) == (1, 1, I.MODULE_RECORD, 0)
    assert head["required_bytes"] == I.MODULE_LIST_HEADER + I.MODULE_RECORD
    r = records[0]
    assert r["id"] != 0
    assert (r["if_index"], r["base_if_index"], r["media_type"]) == (m.if_index, m.base_if_index, m.media)
    assert (I.MODULE_STATES[r["state"]], r["name"], r["resets"], r["in_flight"]) == ("running", m.adapter, 0, 0)
    rx, tx = r["receive"], r["send"]
    assert (rx["nbls"], rx["net_buffers"], rx["walked"], rx["with_shared_memory"]) == (5, 5, 3, 3)
    assert (rx["segments"], rx["shared_bytes"], rx["max_chain"]) == (6, 6 * 1514, 2)
    assert (tx["nbls"], tx["net_buffers"], tx["walked"], tx["segments"]) == (4, 4, 4, 4)
    assert not any(rx["anomalies"].values()) and not any(tx["anomalies"].values())
    assert r["distinct_handles"] == 4 and r["handle_capacity"] == 256
    finish(h)


def test_list_modules_overflow_returns_whole_records(loaded):
    h = loaded
    for if_index in (17, 18, 19):
        h.restart(h.attach(if_index=if_index))
    status, head, records = modules(h, I.MODULE_LIST_HEADER + 2 * I.MODULE_RECORD + 100)
    assert status == I.STATUS_BUFFER_OVERFLOW
    assert (head["total"], head["returned"]) == (3, 2)
    assert head["required_bytes"] == I.MODULE_LIST_HEADER + 3 * I.MODULE_RECORD
    status, head, records = modules(h, head["required_bytes"])
    assert status == I.STATUS_SUCCESS
    assert sorted(r["if_index"] for r in records) == [17, 18, 19]
    assert len({r["id"] for r in records}) == 3
    finish(h)


def test_query_handles_pages_through_the_table(running):
    h, m = running
    h.receive(m, h.simple_chain(8, handles=5), VALID | DISPATCH | RESOURCES)
    module_id = modules(h)[2][0]["id"]
    seen, start, pages = {}, 0, 0
    while True:
        # Room for two records a page.
        status, info, out = h.ioctl(I.QUERY_HANDLES, I.request(module_id, start),
                                    I.HANDLE_LIST_HEADER + 2 * I.HANDLE_RECORD + 10)
        assert status == I.STATUS_SUCCESS
        head, records = I.handle_list(out)
        assert info == I.HANDLE_LIST_HEADER + I.HANDLE_RECORD * head["returned"]
        assert (head["module_id"], head["capacity"], head["distinct"], head["start_index"]) == (
            module_id, 256, 5, start)
        assert head["returned"] <= 2 and head["next_index"] > start
        for rec in records:
            assert rec["handle"] not in seen and start <= rec["slot"] < head["next_index"]
            seen[rec["handle"]] = rec
        pages += 1
        start = head["next_index"]
        if start >= head["capacity"]:
            break
    assert pages >= 3
    assert sorted(seen) == [HB + 0x1000 * k for k in range(5)]
    # simple_chain: NB k uses handle k % 5 at offset 0x800 + 0x1000 k, 1514 bytes.
    for k in range(5):
        rec = seen[HB + 0x1000 * k]
        ks = [j for j in range(8) if j % 5 == k]
        assert (rec["receive_segments"], rec["receive_bytes"]) == (len(ks), 1514 * len(ks))
        assert (rec["send_segments"], rec["send_bytes"]) == (0, 0)
        assert rec["min_offset"] == 0x800 + 0x1000 * ks[0]
        assert rec["max_end"] == 0x800 + 0x1000 * ks[-1] + 1514
    # start_index == capacity: an empty last page; beyond it: refused.
    status, info, out = h.ioctl(I.QUERY_HANDLES, I.request(module_id, 256), 200)
    assert status == I.STATUS_SUCCESS and I.handle_list(out)[0]["returned"] == 0
    assert h.ioctl(I.QUERY_HANDLES, I.request(module_id, 257), 200)[0] == I.STATUS_INVALID_PARAMETER
    finish(h)


def test_reset_zeroes_statistics(running):
    h, m = running
    h.receive(m, h.simple_chain(3), VALID | DISPATCH | RESOURCES)
    module_id = modules(h)[2][0]["id"]
    status, info, out = h.ioctl(I.RESET_STATS, I.request(I.ALL_MODULES, 0), I.RESET_RESPONSE)
    assert (status, info, I.reset_response(out)) == (I.STATUS_SUCCESS, I.RESET_RESPONSE, 1)
    r = modules(h)[2][0]
    assert (r["resets"], r["receive"]["nbls"], r["receive"]["segments"], r["distinct_handles"]) == (1, 0, 0, 0)
    h.receive(m, h.simple_chain(1), VALID | DISPATCH | RESOURCES)
    status, _info, out = h.ioctl(I.RESET_STATS, I.request(module_id, 0), I.RESET_RESPONSE)
    assert (status, I.reset_response(out)) == (I.STATUS_SUCCESS, 1)
    assert modules(h)[2][0]["resets"] == 2
    finish(h)


def test_get_config_lists_the_documented_keywords(loaded):
    h = loaded
    got = config(h)
    expected = sources.config_keywords()
    assert list(got) == [k["name"] for k in expected] == I.KEYWORDS
    for k in expected:
        g = got[k["name"]]
        assert (g["value"], g["default"], g["min"], g["max"]) == (k["default"], k["default"], k["min"], k["max"])
        assert bool(g["flags"] & I.CONFIG_FLAG_RUNTIME) == k["runtime"]
    finish(h)


def test_set_config_applies_at_once(running):
    h, m = running
    h.enable(level=5)
    status, info, out = set_config(h, "MaxSegmentsPerNetBuffer", 8)
    assert (status, info) == (I.STATUS_SUCCESS, I.SET_CONFIG_RESPONSE)
    assert I.set_config_response(out) == {"keyword": 0, "old_value": 64, "new_value": 8, "timers_rearmed": 0}
    assert config(h)["MaxSegmentsPerNetBuffer"]["value"] == 8
    chain = h.build_chain([[{"data_length": 60, "segments": [(HB, 0x10, 60, 0)], "cycle": True}]])
    h.receive(m, chain, VALID | DISPATCH | RESOURCES)
    assert [(e.values["Kind"], e.values["SegmentIndex"]) for e in h.events_named("ChainAnomaly")] == [
        ("overlong", 8)]
    assert len(h.events_named("SharedMemorySegment")) == 8
    finish(h)


def test_set_usage_interval_rearms_the_running_timer(running):
    h, m = running
    (timer,) = [t for t, v in h.timers.items() if v["armed"]]
    status, _info, out = set_config(h, "UsageIntervalMs", 250)
    assert status == I.STATUS_SUCCESS
    assert I.set_config_response(out) == {"keyword": 2, "old_value": 5000, "new_value": 250, "timers_rearmed": 1}
    due, period, _ctx = h.timers[timer]["sets"][-1]
    assert (due, period) == (-250 * 10_000, 250)  # relative 100 ns units; the period in ms
    finish(h)


def test_registry_values_are_read_validated_and_applied(sys_path):
    h = Harness(sys_path, session_at_load=(4, 0xFFFFFFFFFFFFFFFF), registry={
        "MaxSegmentsPerNetBuffer": 8,  # in range: applied
        "UsageIntervalMs": 99_999_999,  # above the maximum: clamped, reported
        "SendPathWalk": "0",  # a REG_SZ: the default stays, reported
        "HandleTableSize": 64,
    })
    assert h.driver_entry() == L.STATUS_SUCCESS
    assert sorted(h.config_reads) == sorted(I.KEYWORDS)  # each keyword once
    assert not [x for x in h.leaks() if "configuration" in x]  # every handle closed
    got = {k: v["value"] for k, v in config(h).items()}
    assert got == {"MaxSegmentsPerNetBuffer": 8, "SendPathWalk": 1, "UsageIntervalMs": 3_600_000,
                   "HandleTableSize": 64, "VerboseSegments": 1, "ReceivePathWalk": 1}
    assert [e.values for e in h.events_named("ConfigClamped")] == [
        {"Keyword": "UsageIntervalMs", "Value": 99_999_999, "Clamped": 3_600_000}]
    errors = [t for _c, level, t in h.dbgprints if level == 0]
    assert any("UsageIntervalMs" in t for t in errors) and any("SendPathWalk" in t for t in errors)
    assert len(errors) == 2
    m = h.attach()
    h.restart(m)
    assert modules(h)[2][0]["handle_capacity"] == 64
    # The HandleUsage/UsageSnapshot timer runs with the clamped interval.
    armed = [v for v in h.timers.values() if v["armed"]]
    assert [v["sets"][-1][1] for v in armed] == [3_600_000]
    h.dbgprints.clear()
    finish(h)


def test_no_parameters_key_leaves_the_defaults(sys_path):
    h = Harness(sys_path, fail={"NdisOpenConfigurationKeyByName": 1})
    assert h.driver_entry() == L.STATUS_SUCCESS
    assert h.config_reads == []
    assert config(h)["MaxSegmentsPerNetBuffer"]["value"] == 64
    assert not [x for x in h.leaks() if "configuration" in x]
    finish(h)


def test_irps_after_unload_cannot_reach_the_driver(loaded):
    h = loaded
    finish(h)
    assert h.device["deregistered"]
    with pytest.raises(Exception, match="no control device"):
        h.ioctl(I.QUERY_VERSION, b"", 80)


def test_guard_catches_a_write_past_the_buffer(loaded):
    """Negative control for the overrun check: a system buffer shorter than the output length
    it claims makes the driver's (correct) 160-byte answer run into the guard."""
    h = loaded
    with pytest.raises(EmulationFailure, match="past the system buffer"):
        h.ioctl(I.GET_CONFIG, I.request(), I.CONFIG_RESPONSE, buffer_len=100)


def test_device_registration_failure_fails_driver_entry(sys_path):
    h = Harness(sys_path, fail={"NdisRegisterDeviceEx": L.NDIS_STATUS_RESOURCES})
    assert h.driver_entry() == L.NDIS_STATUS_RESOURCES
    names = h.trace_names()
    assert names.index("NdisRegisterDeviceEx") < names.index("NdisFDeregisterFilterDriver") \
        < names.index("EtwUnregister")
    assert not h.leaks(), h.leaks()
    assert [t for _c, lvl, t in h.dbgprints if lvl == 0] == [
        "nbshm: NdisRegisterDeviceEx failed: 0xc000009a\n"]
