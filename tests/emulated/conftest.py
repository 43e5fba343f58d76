"""Fixtures for the emulated run of nbshm.sys (see docs/emulation.md).

NBSHM_SYS must name the x64 image to run (`.ci/run` passes the one `cargo xtask sys --arch x64`
just built). NBSHM_EMU_REPORT, if set, receives the instruction counts as JSON.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest

from nbshm_emu import layout as L
from nbshm_emu.harness import STACK_DEPTHS, Harness

REPORT: dict = {"receive_instructions": []}


def pytest_configure(config):
    config.addinivalue_line("markers", "perf: instruction counts reported for docs/performance.md")


@pytest.fixture(scope="session")
def sys_path() -> Path:
    value = os.environ.get("NBSHM_SYS")
    if not value:
        pytest.fail("NBSHM_SYS is not set: build the image with `cargo xtask sys --arch x64` and "
                    "set NBSHM_SYS to the path it prints (docs/emulation.md)", pytrace=False)
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"NBSHM_SYS={value}: no such file", pytrace=False)
    REPORT["binary"] = str(path)
    REPORT["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return path


@pytest.fixture
def loaded(sys_path) -> Harness:
    """DriverEntry has run."""
    h = Harness(sys_path)
    status = h.driver_entry()
    assert status == L.STATUS_SUCCESS, f"DriverEntry returned {status:#x}"
    return h


@pytest.fixture
def running(loaded):
    """One module attached (802.3) and restarted."""
    h = loaded
    m = h.attach()
    assert m.attach_status == L.NDIS_STATUS_SUCCESS, f"FilterAttach returned {m.attach_status:#x}"
    assert h.restart(m) == L.NDIS_STATUS_SUCCESS
    return h, m


def finish(h: Harness, m=None):
    """Pause (if running), detach, unload; then nothing may be left allocated."""
    for rec in list(h.modules.values()):
        if rec.state == "running":
            assert h.pause(rec) == L.NDIS_STATUS_SUCCESS
        if rec.state == "paused":
            h.detach(rec)
    h.unload()
    assert h.ndis["deregistered"], "unload did not call NdisFDeregisterFilterDriver"
    assert h.etw["unregistered"], "unload did not call EtwUnregister"
    names = h.trace_names()
    # Unload order (ndis-reference A.8): control device, then NDIS, then ETW last.
    if "NdisRegisterDeviceEx" in names:
        assert names.index("NdisDeregisterDeviceEx") < names.index("NdisFDeregisterFilterDriver")
    assert names.index("NdisFDeregisterFilterDriver") < names.index("EtwUnregister")
    assert "EtwWriteTransfer" not in names[names.index("EtwUnregister"):]
    assert not h.leaks(), "\n".join(h.leaks())
    errors = [t for _c, level, t in h.dbgprints if level == 0]  # DPFLTR_ERROR_LEVEL
    assert not errors, errors


def pytest_terminal_summary(terminalreporter):
    rows = REPORT.get("receive_instructions")
    if not rows:
        return
    tr = terminalreporter
    tr.section("nbshm.sys: instructions per FilterReceiveNetBufferLists (speakeasy, x64)")
    tr.write_line(f"{'case':<34}{'NBs':>5}{'instructions':>14}{'per NB':>10}{'marginal/NB':>13}")
    for r in rows:
        marginal = "" if r.get("marginal_per_nb") is None else f"{r['marginal_per_nb']:.1f}"
        tr.write_line(f"{r['case']:<34}{r['net_buffers']:>5}{r['instructions']:>14}"
                      f"{r['per_nb']:>10.1f}{marginal:>13}")
    depths = dict(STACK_DEPTHS)
    REPORT["stack_depth_bytes"] = depths
    if depths:
        tr.write_line("")
        tr.write_line("deepest stack use below each entry point (bytes): " + ", ".join(
            f"{k} {v}" for k, v in sorted(depths.items(), key=lambda kv: -kv[1])))
    out = os.environ.get("NBSHM_EMU_REPORT")
    if out:
        Path(out).write_text(json.dumps(REPORT, indent=2) + "\n", encoding="utf-8")
        tr.write_line(f"written to {out}")
