"""Instructions the real binary executes in FilterReceiveNetBufferLists, per NET_BUFFER: counted
by a code hook over the image from the callback's first instruction to its return. Calls into
ndis.sys/ntoskrnl.exe are played by the harness and cost no instructions here, so the figure is
the driver's own work. Written to NBSHM_EMU_REPORT (JSON) and printed at the end of the run."""

import pytest

from conftest import REPORT, finish
from nbshm_emu import layout as L

VALID = L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
DISPATCH = L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
BATCHES = (1, 16, 64)
CASES = {  # name: (receive flags, ETW session or None, distinct handles in the batch)
    "walk, no session, 1 handle": (VALID | DISPATCH, None, 1),
    "walk, no session, 4 handles": (VALID | DISPATCH, None, 4),
    "no walk (VALID clear), no session": (DISPATCH, None, 4),
    "walk, verbose session, 4 handles": (VALID | DISPATCH, (5, 0xFFFFFFFFFFFFFFFF), 4),
}
# A loose ceiling on the walk's cost per NET_BUFFER with nobody listening: a regression guard
# (a loop that silently grew per packet), far above what the walk needs today.
MARGINAL_CEILING = 400


def measure(h, m, n, flags, handles):
    chain = h.simple_chain(n, handles=handles)
    h.receive(m, chain, flags)
    count = h.last_instructions
    h.return_nbls(m, chain, L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL)
    return count


@pytest.mark.perf
def test_receive_instructions_per_net_buffer(running):
    h, m = running
    rows = []
    results = {}
    for case, (flags, session, handles) in CASES.items():
        if session:
            h.enable(level=session[0], any_keyword=session[1])
        else:
            h.disable()
        # Warm up with the largest batch: from here on the handle table holds every handle and
        # offset range, so each count is the steady state (and repeatable, checked below).
        measure(h, m, max(BATCHES), flags, handles)
        for n in BATCHES:
            first = measure(h, m, n, flags, handles)
            again = measure(h, m, n, flags, handles)
            assert first == again, f"{case}, {n} NBs: {first} then {again} instructions"
            results[(case, n)] = first
        base = results[(case, 1)]
        for n in BATCHES:
            count = results[(case, n)]
            rows.append({
                "case": case, "receive_flags": f"{flags:#x}", "net_buffers": n,
                "segments_per_net_buffer": 1, "distinct_handles": handles,
                "etw_session": "level 5, all keywords" if session else None,
                "instructions": count, "per_nb": count / n,
                "marginal_per_nb": None if n == 1 else (count - base) / (n - 1),
            })
    REPORT["receive_instructions"] = rows
    REPORT["command"] = ("NBSHM_SYS=$(cargo xtask sys --arch x64 | tail -n 1) "
                         "NBSHM_EMU_REPORT=emu-report.json tests/emulated/.venv/bin/pytest tests/emulated")
    REPORT["note"] = ("x64 instructions executed by nbshm.sys between entry to "
                      "FilterReceiveNetBufferLists and its return, under speakeasy/unicorn; one NET_BUFFER "
                      "per NBL, one segment per NET_BUFFER, 1 or 4 distinct handles; calls into "
                      "ndis.sys/ntoskrnl.exe are played by the harness and not counted")
    walk = "walk, no session, 4 handles"
    nowalk = "no walk (VALID clear), no session"
    verbose = "walk, verbose session, 4 handles"
    for n in BATCHES:
        assert results[(nowalk, n)] < results[(walk, n)] < results[(verbose, n)], n
    marginal = (results[(walk, 64)] - results[(walk, 1)]) / 63
    assert 0 < marginal < MARGINAL_CEILING, marginal
    # Linear in the batch: the 64-NB batch costs no more than 64 single-NB calls.
    assert results[(walk, 64)] <= 64 * results[(walk, 1)]
    finish(h)
