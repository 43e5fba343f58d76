"""Attach, restart, pause (immediate and pending), detach and unload, as NDIS drives them."""

import pytest

from conftest import finish
from nbshm_emu import layout as L
from nbshm_emu.harness import EmulationFailure, Harness

VALID = L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID
DISPATCH = L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
RESOURCES = L.NDIS_RECEIVE_FLAGS_RESOURCES


def test_attach_sets_attributes_and_allocates_a_timer(loaded):
    h = loaded
    m = h.attach()
    assert m.attach_status == L.NDIS_STATUS_SUCCESS
    sa = h.calls_to("NdisFSetAttributes")
    assert len(sa) == 1
    assert (sa[0]["type"], sa[0]["revision"], sa[0]["size"]) == (0x8D, 1, 8)
    assert sa[0]["handle"] == m.filter_handle
    assert m.ctx and sa[0]["ctx"] == m.ctx
    timers = h.calls_to("NdisAllocateTimerObject")
    assert len(timers) == 1
    t = timers[0]
    assert t["type"] == L.NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS and t["size"] >= 0x18
    assert t["handle"] == m.filter_handle  # the documented handle for a filter's timer
    assert h.in_image(t["function"]) and t["context"] == m.ctx
    assert m.timer in h.timers
    # Attach leaves the module paused: no timer armed yet, no traffic admitted.
    assert not h.timers[m.timer]["armed"]
    # Every pool block carries a non-zero tag and is non-paged (the data path runs at DISPATCH).
    assert h.pool and all(b["flags"] & L.POOL_FLAG_NON_PAGED for b in h.pool.values())
    finish(h)


def test_restart_arms_the_usage_timer_and_pause_disarms_it(running):
    h, m = running
    s = h.calls_to("NdisSetTimerObject")
    assert len(s) == 1
    assert s[0]["timer"] == m.timer
    assert s[0]["due"] == -5000 * 10_000  # relative, 100 ns units: UsageIntervalMs default 5000
    assert s[0]["period"] == 5000
    assert s[0]["context"] == m.ctx
    assert h.pause(m) == L.NDIS_STATUS_SUCCESS
    assert not h.timers[m.timer]["armed"]
    assert h.calls_to("NdisFPauseComplete") == []
    finish(h)


def test_detach_cancels_flushes_then_frees_the_timer(running):
    h, m = running
    assert h.pause(m) == L.NDIS_STATUS_SUCCESS
    mark = len(h.trace)
    h.detach(m)
    names = [n for n, _ in h.trace[mark:]]
    assert "NdisFreeTimerObject" in names
    i_free = names.index("NdisFreeTimerObject")
    assert "NdisCancelTimerObject" in names[:i_free]
    assert "KeFlushQueuedDpcs" in names[:i_free]
    assert h.timers[m.timer]["freed"]
    # The module's own pool blocks are gone once FilterDetach returns.
    frees = [kw for n, kw in h.trace[mark:] if n == "ExFreePoolWithTag"]
    assert {f["tag"] for f in frees} >= {"NbsM", "NbsC", "NbsH"}
    finish(h)
    names = h.trace_names()
    assert names.index("NdisFDeregisterFilterDriver") < names.index("EtwUnregister")


def test_attach_refuses_media_the_inf_does_not_bind(loaded):
    h = loaded
    m = h.attach(media=L.NDIS_MEDIUM_WAN)
    assert m.attach_status == L.NDIS_STATUS_INVALID_PARAMETER
    assert h.calls_to("NdisFSetAttributes") == []
    finish(h)  # and nothing leaked


def test_two_modules_get_distinct_contexts_and_ids(loaded):
    h = loaded
    a = h.attach(if_index=17, adapter="Adapter A")
    b = h.attach(if_index=18, adapter="Adapter B")
    assert a.ctx != b.ctx
    for m in (a, b):
        assert h.restart(m) == L.NDIS_STATUS_SUCCESS
    h.enable(level=4, any_keyword=0x1)
    attached = {e.values["IfIndex"]: e.values for e in h.events_named("FilterAttached")}
    assert set(attached) == {17, 18}
    assert {v["ModuleId"] for v in attached.values()} == {1, 2}
    assert attached[17]["MiniportName"] == "Adapter A"
    assert attached[18]["MiniportName"] == "Adapter B"
    finish(h)


def test_attach_inside_ndis_f_register_filter_driver(sys_path):
    """NDIS may call FilterAttach before NdisFRegisterFilterDriver returns (ndis-reference A.1)."""
    h = Harness(sys_path, attach_in_register={"if_index": 23})
    assert h.driver_entry() == L.STATUS_SUCCESS
    record = h.ndis["attach_in_register_record"]
    assert record.get("applied")
    assert [r & 0xFFFFFFFF for r in h.injection_results(record)] == [L.NDIS_STATUS_SUCCESS]
    m = h.ndis["attach_in_register_module"]
    assert m.ctx, "FilterAttach inside registration did not set the module context"
    m.state = "paused"
    assert h.restart(m) == L.NDIS_STATUS_SUCCESS
    chain = h.simple_chain(1)
    h.receive(m, chain, VALID | DISPATCH | RESOURCES)
    finish(h)


def test_unload_with_a_module_still_attached(running):
    """NdisFDeregisterFilterDriver detaches what is still attached (ndis-reference A.8): the
    harness runs FilterDetach from inside it, as NDIS does."""
    h, m = running
    h.enable(level=4, any_keyword=0x1)
    assert h.pause(m) == L.NDIS_STATUS_SUCCESS
    h.unload()
    record = h.ndis.get("detach_in_deregister")
    assert record and record.get("applied")
    assert h.timers[m.timer]["freed"]
    assert len(h.events_named("FilterDetached")) == 1
    names = h.trace_names()
    assert names.index("NdisFreeTimerObject") < names.index("EtwUnregister")
    assert h.etw["unregistered"]
    assert not h.leaks(), h.leaks()


def test_pending_pause_completes_when_the_receive_comes_back(running):
    h, m = running
    h.enable(level=4, any_keyword=0x1)
    chain = h.simple_chain(2)
    h.receive(m, chain, VALID | DISPATCH)  # indicated up, not returned yet
    assert h.pause(m) == L.NDIS_STATUS_PENDING
    assert h.calls_to("NdisFPauseComplete") == []
    assert m.state == "pausing"
    # While pausing, new sends are refused with NDIS_STATUS_PAUSED.
    refused = h.simple_chain(1)
    ho = h.send(m, refused, L.NDIS_SEND_FLAGS_DISPATCH_LEVEL, allow_status_write=True)
    assert [x["api"] for x in ho] == ["NdisFSendNetBufferListsComplete"]
    mark = len(h.trace)
    h.return_nbls(m, chain, L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL)
    names = [n for n, _ in h.trace[mark:]]
    assert names.count("NdisFReturnNetBufferLists") == 1
    assert names.count("NdisFPauseComplete") == 1
    assert names.index("NdisFReturnNetBufferLists") < names.index("NdisFPauseComplete")
    assert h.calls_to("NdisFPauseComplete")[0]["handle"] == m.filter_handle
    assert m.state == "paused" and m.pause_completed == 1
    paused = h.events_named("FilterPaused")
    assert [(e.values["Pending"], e.values["PauseReason"]) for e in paused] == [(1, L.NDIS_PAUSE_NDIS_INTERNAL)]
    finish(h)


def test_pending_pause_completes_when_the_send_completes(running):
    h, m = running
    chain = h.simple_chain(3)
    h.send(m, chain, 0)
    assert h.pause(m) == L.NDIS_STATUS_PENDING
    mark = len(h.trace)
    h.send_complete(m, chain, 0)
    names = [n for n, _ in h.trace[mark:]]
    assert names == ["NdisFSendNetBufferListsComplete", "NdisFPauseComplete"], names
    finish(h)


def test_pause_with_resources_receives_is_immediate(running):
    """RESOURCES receives go back to the miniport when the callback returns: nothing stays
    outstanding, so the pause completes at once."""
    h, m = running
    h.receive(m, h.simple_chain(4), VALID | DISPATCH | RESOURCES)
    assert h.calls_to("NdisFReturnNetBufferLists") == []
    assert h.pause(m) == L.NDIS_STATUS_SUCCESS
    finish(h)


def test_restart_after_pause_admits_traffic_again(running):
    h, m = running
    assert h.pause(m) == L.NDIS_STATUS_SUCCESS
    assert h.restart(m) == L.NDIS_STATUS_SUCCESS
    assert len(h.calls_to("NdisSetTimerObject")) == 2
    ho = h.receive(m, h.simple_chain(1), VALID | DISPATCH | RESOURCES)
    assert [x["api"] for x in ho] == ["NdisFIndicateReceiveNetBufferLists"]
    finish(h)


def test_contract_checks_can_fail(running):
    """Negative control: a harness-side break of the contract (an NBL handed back to the driver
    twice) must surface as a failure, proving the checks are live."""
    h, m = running
    chain = h.simple_chain(1)
    h.receive(m, chain, VALID | DISPATCH)
    h.return_nbls(m, chain, 0)
    # Now NDIS (the harness) lies: it returns the same NBLs again although the filter never
    # indicated them a second time. The filter forwards them; the harness flags the chain.
    h.indicated_up[chain.head] = (chain, 0, 1, 0)
    h.owned_by_driver.pop(chain.head, None)
    h.forbidden.append((chain.head, L.NBL_SIZE, "a chain the harness keeps"))
    with pytest.raises(EmulationFailure):
        h.call(h.handler("ReturnNetBufferListsHandler"), [m.ctx, chain.head, 0],
               what="FilterReturnNetBufferLists (double return)")


@pytest.mark.parametrize("kind", ["return", "complete"])
def test_regrouped_hand_backs_complete_the_pause_exactly_at_the_last(running, kind):
    """NDIS may hand NBLs back in other groupings and orders than it handed them out
    (ndis-reference A.6): the pause must complete after the last NBL, not before."""
    h, m = running
    a, b = h.simple_chain(3), h.simple_chain(2)
    if kind == "return":
        h.receive(m, a, VALID | DISPATCH)
        h.receive(m, b, VALID | DISPATCH)
        flags, forwarded = L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL, "NdisFReturnNetBufferLists"
    else:
        h.send(m, a, L.NDIS_SEND_FLAGS_DISPATCH_LEVEL)
        h.send(m, b, L.NDIS_SEND_FLAGS_DISPATCH_LEVEL)
        flags, forwarded = L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL, "NdisFSendNetBufferListsComplete"
    assert h.pause(m) == L.NDIS_STATUS_PENDING
    groups = [[b.nbls[1], a.nbls[0]], [a.nbls[2]], [b.nbls[0], a.nbls[1]]]
    results = h.hand_back_regrouped(m, kind, groups, flags)
    for i, (part, handoffs, calls) in enumerate(results):
        assert [x["api"] for x in handoffs] == [forwarded]
        assert handoffs[0]["nbls"] == part.head and handoffs[0]["flags"] == flags
        assert handoffs[0]["snapshot_equal"]
        if i == len(results) - 1:
            assert calls == [forwarded, "NdisFPauseComplete"], calls
        else:
            assert calls == [forwarded], (i, calls)
    assert m.state == "paused" and m.pause_completed == 1
    finish(h)
