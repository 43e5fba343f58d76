"""DriverEntry as the I/O manager calls it: ETW registration, NdisFRegisterFilterDriver with the
characteristics read back from emulated memory, and the unload routine."""

import re
import uuid

from conftest import finish
from nbshm_emu import layout as L
from nbshm_emu import sources
from nbshm_emu import tracelogging as tl
from nbshm_emu.harness import Harness

PROVIDER = "Nbshm.SharedMemoryFilter"
EXPECTED_GUID = uuid.UUID("aab8608e-524a-5040-b756-a83bade72c1f")


def test_provider_guid_is_the_name_hash():
    assert tl.provider_guid(PROVIDER) == EXPECTED_GUID
    assert sources.etw_md_schema()["guid"] == str(EXPECTED_GUID)


def test_driver_entry_registers_etw_then_ndis(loaded):
    h = loaded
    assert h.etw["registered"]
    assert h.etw["guid"] == tl.provider_guid(PROVIDER)
    names = h.trace_names()
    assert names.index("EtwRegister") < names.index("NdisFRegisterFilterDriver"), names
    assert h.ndis["etw_registered_before"]
    # The provider's traits carry its name (EventProviderSetTraits).
    assert [t["name"] for t in h.etw["traits"]] == [PROVIDER]
    # Nobody listens yet: nothing is written.
    assert h.events == []
    # No error print on a clean load.
    assert h.dbgprints == []
    # Every configuration keyword is read once from the Parameters key, whose handles are closed.
    assert h.config_reads == [k["name"] for k in sources.config_keywords()]
    keys = [v["key"] for v in h.config_handles.values()]
    assert keys == ["service", "service\\Parameters"]
    assert all(v["closed"] for v in h.config_handles.values())


def test_characteristics_as_ndis_reads_them(loaded):
    h = loaded
    c = h.chars
    assert (c["Type"], c["Revision"], c["Size"]) == (
        L.NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS, L.NDIS_FILTER_CHARACTERISTICS_REVISION_2,
        L.NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2)
    assert (c["MajorNdisVersion"], c["MinorNdisVersion"]) == (6, 30)
    # Revision 2 is the pre-6.80 layout: a 6.80+ filter would have to use revision 3.
    assert c["MinorNdisVersion"] < 80
    handlers = c["handlers"]
    for name in L.MANDATORY_HANDLERS:
        assert handlers[name], f"{name} is NULL"
    for name, addr in handlers.items():
        assert addr == 0 or h.in_image(addr), f"{name} = {addr:#x} is outside the image"
    if handlers["SendNetBufferListsHandler"]:
        assert handlers["SendNetBufferListsCompleteHandler"], "Send without SendComplete"
    # A pure observer leaves OID and PnP handling to NDIS.
    for name in ("OidRequestHandler", "OidRequestCompleteHandler", "CancelOidRequestHandler",
                 "DevicePnPEventNotifyHandler", "NetPnPEventHandler", "DirectOidRequestHandler",
                 "DirectOidRequestCompleteHandler", "CancelDirectOidRequestHandler"):
        assert handlers[name] == 0, name
    # FilterRunType 2 (optional) in the INF: the driver must not call itself mandatory.
    assert c["Flags"] & 0x1 == 0


def test_names_match_the_inf(loaded):
    c = loaded.chars
    inf = sources.inf_facts()
    assert len(inf["NetCfgInstanceId"]) == 1, inf["NetCfgInstanceId"]
    assert c["UniqueName"] == next(iter(inf["NetCfgInstanceId"]))
    assert re.fullmatch(r"\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}",
                        c["UniqueName"], re.I)
    assert inf["AddService"] == {"nbshm"} and inf["NdiService"] == {"nbshm"}
    assert c["ServiceName"] == "nbshm"
    assert c["FriendlyName"]


def test_registration_arguments_and_unload_routine(loaded):
    h = loaded
    reg = h.calls_to("NdisFRegisterFilterDriver")
    assert len(reg) == 1
    assert reg[0]["driver_object"] == h.driver_object
    # The driver context NDIS hands back to FilterAttach: the driver object, as in the sample.
    assert h.ndis["driver_context"] == h.driver_object
    unload = h.u64(h.driver_object + L.DRIVER_OBJECT_DRIVER_UNLOAD)
    assert unload and h.in_image(unload), f"DriverUnload = {unload:#x}"


def test_load_then_unload_leaves_nothing(loaded):
    h = loaded
    finish(h)
    names = h.trace_names()
    assert names.index("NdisFDeregisterFilterDriver") < names.index("EtwUnregister")
    assert names[-1] == "EtwUnregister"


def test_session_listening_at_load_sees_driver_loaded(sys_path):
    """A session that already listens (e.g. an autologger): ETW calls the enable callback inside
    EtwRegister, and DriverEntry's DriverLoaded event is written."""
    h = Harness(sys_path, session_at_load=(5, 0xFFFFFFFFFFFFFFFF))
    assert h.driver_entry() == L.STATUS_SUCCESS
    assert h.etw["enable_in_register"].get("applied"), "the enable callback was not run"
    loaded = h.events_named("DriverLoaded")
    assert len(loaded) == 1, [e.name for e in h.events]
    version = re.search(r'^version = "([^"]+)"', (sources.REPO / "Cargo.toml").read_text(), re.M).group(1)
    assert loaded[0].values == {"Version": version, "NdisMajor": 6, "NdisMinor": 30,
                                "Processors": h.max_processors}
    finish(h)
    unloading = h.events_named("DriverUnloading")
    assert [e.values for e in unloading] == [{"Version": version, "NdisMajor": 6, "NdisMinor": 30}]
