"""The harness's own checks: that a failure would be seen, and that the hooks for imports the
image does not use yet (control device, registry) behave, so they work when the image starts
importing them."""

import struct

import pytest

from nbshm_emu import layout as L
from nbshm_emu.harness import EmulationFailure, Harness


def test_a_bug_check_fails_the_call_and_is_decoded(running):
    h, m = running
    file_name = b"src/filter/datapath.rs"
    p = h.alloc(len(file_name))
    h.write(p, file_name)
    h.KeBugCheckEx(L.NBSH_BUGCHECK, 212, 9, p, len(file_name))
    assert h.bugchecks[-1]["code"] == "0x4e425348"
    assert (h.bugchecks[-1]["line"], h.bugchecks[-1]["column"], h.bugchecks[-1]["file"]) == (
        212, 9, "src/filter/datapath.rs")
    with pytest.raises(EmulationFailure, match="KeBugCheckEx"):
        h.call(h.handler("StatusHandler"), [m.ctx, h.alloc(0x30)], what="FilterStatus")


def test_an_event_nobody_asked_for_is_flagged(running):
    """The harness flags events written while no session accepts them: a level-5 write with
    the session at level 4 must be reported."""
    h, m = running
    h.enable(level=5)  # the driver now believes level 5 is on...
    h.etw["session"] = (4, 0x2, 0)  # ...while the harness's session says level 4, Usage only
    chain = h.simple_chain(1)
    with pytest.raises(EmulationFailure, match="SharedMemorySegment"):
        h.receive(m, chain, L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | L.NDIS_RECEIVE_FLAGS_RESOURCES)


def _device_attributes(h: Harness, table):
    attrs = h.alloc(L.NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1)
    h.write(attrs, struct.pack("<BBH", L.NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
                               L.NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
                               L.NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1))
    h.w64(attrs + L.DEVICE_ATTRS["DeviceName"], h.unicode_string("\\Device\\Nbshm"))
    h.w64(attrs + L.DEVICE_ATTRS["SymbolicName"], h.unicode_string("\\DosDevices\\Nbshm"))
    h.w64(attrs + L.DEVICE_ATTRS["MajorFunctions"], table)
    h.w32(attrs + L.DEVICE_ATTRS["ExtensionSize"], 0x20)
    h.w64(attrs + L.DEVICE_ATTRS["DefaultSDDLString"], h.unicode_string("D:P(A;;GA;;;SY)(A;;GA;;;BA)"))
    return attrs


def test_control_device_hooks(loaded):
    h = loaded
    table = h.alloc(8 * (L.IRP_MJ_MAXIMUM_FUNCTION + 1))
    dispatch = h.handler("StatusHandler")  # any code address inside the image will do here
    for mj in (0x00, 0x02, 0x0E, 0x12):  # CREATE, CLOSE, DEVICE_CONTROL, CLEANUP
        h.w64(table + 8 * mj, dispatch)
    attrs = _device_attributes(h, table)
    out_dev, out_handle = h.alloc(8), h.alloc(8)
    status = h.NdisRegisterDeviceEx(h.ndis["driver_handle"], attrs, out_dev, out_handle)
    assert status == L.NDIS_STATUS_SUCCESS and not h.violations
    dev = h.device
    assert (dev["DeviceName"], dev["SymbolicName"]) == ("\\Device\\Nbshm", "\\DosDevices\\Nbshm")
    assert dev["DefaultSDDLString"] == "D:P(A;;GA;;;SY)(A;;GA;;;BA)"
    assert [i for i, f in enumerate(dev["MajorFunctions"]) if f] == [0x00, 0x02, 0x0E, 0x12]
    assert h.u64(out_dev) == dev["object"] and h.u64(out_handle) == dev["handle"]
    assert h.NdisGetDeviceReservedExtension(dev["object"]) == dev["extension"]
    assert any("device never deregistered" in x for x in h.leaks())
    h.NdisDeregisterDeviceEx(dev["handle"])
    assert not h.violations and not any("device" in x for x in h.leaks())
    # A dispatch routine outside the image is flagged.
    h.w64(table, 0x1234)
    h.NdisRegisterDeviceEx(h.ndis["driver_handle"], _device_attributes(h, table), out_dev, out_handle)
    assert any("outside the image" in v for v in h.violations)


def test_configuration_hooks_report_not_found(loaded):
    h = loaded
    obj = h.alloc(0x18)
    h.write(obj, struct.pack("<BBH", L.NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT, 1, 0x18))
    h.w64(obj + L.CONFIG_OBJECT["NdisHandle"], h.ndis["driver_handle"])
    out = h.alloc(8)
    assert h.NdisOpenConfigurationEx(obj, out) == L.NDIS_STATUS_SUCCESS
    root = h.u64(out)
    status, sub = h.alloc(4), h.alloc(8)
    h.NdisOpenConfigurationKeyByName(status, root, h.unicode_string("Parameters"), sub)
    assert h.u32(status) == L.NDIS_STATUS_SUCCESS
    value = h.alloc(8, fill=0x77)
    reads = len(h.config_reads)  # DriverEntry's own
    h.NdisReadConfiguration(status, value, h.u64(sub), h.unicode_string("MaxSegmentsPerNetBuffer"), 0)
    assert h.u32(status) == L.NDIS_STATUS_FAILURE and h.u64(value) == 0
    assert h.config_reads[reads:] == ["MaxSegmentsPerNetBuffer"]
    # A value present: an NDIS_CONFIGURATION_PARAMETER holding it, poisoned at close.
    h.registry["MaxSegmentsPerNetBuffer"] = 12
    h.NdisReadConfiguration(status, value, h.u64(sub), h.unicode_string("MaxSegmentsPerNetBuffer"), 0)
    param = h.u64(value)
    assert h.u32(status) == L.NDIS_STATUS_SUCCESS
    assert (h.u32(param + L.CONFIG_PARAMETER["ParameterType"]),
            h.u32(param + L.CONFIG_PARAMETER["ParameterData"])) == (L.NdisParameterInteger, 12)
    assert len([x for x in h.leaks() if "configuration handle" in x]) == 2
    h.NdisCloseConfiguration(h.u64(sub))
    assert h.read(param, L.CONFIG_PARAMETER_SIZE) == b"\xDD" * L.CONFIG_PARAMETER_SIZE
    h.NdisCloseConfiguration(root)
    assert not h.violations and not [x for x in h.leaks() if "configuration" in x]
    h.NdisCloseConfiguration(root)
    assert h.violations  # closing twice is flagged


def test_stack_use_is_measured_and_bounded(running):
    """The code hook tracks rsp: a deep receive is measured, and a limit below it is reported."""
    from nbshm_emu import harness as H
    h, m = running
    h.enable(level=5)
    h.receive(m, h.simple_chain(2), L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | L.NDIS_RECEIVE_FLAGS_RESOURCES)
    depth = h.last_stack_depth
    assert 64 < depth <= H.STACK_LIMIT
    limit, H.STACK_LIMIT = H.STACK_LIMIT, depth - 8
    try:
        with pytest.raises(EmulationFailure, match="bytes of stack"):
            h.receive(m, h.simple_chain(2),
                      L.NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | L.NDIS_RECEIVE_FLAGS_RESOURCES)
    finally:
        H.STACK_LIMIT = limit
