"""The control-device protocol as a client in another language would implement it: codes, request
encoders and response decoders written from the tables in docs/ioctl.md (not from proto/), so the
emulated binary is checked against the documented wire format."""

import struct

PROTOCOL_VERSION = 1

DEVICE_TYPE = 0x8E5D
METHOD_BUFFERED = 0
FILE_READ_ACCESS = 1
FILE_WRITE_ACCESS = 2


def ctl_code(device_type, function, method, access):
    return (device_type << 16) | (access << 14) | (function << 2) | method


QUERY_VERSION = ctl_code(DEVICE_TYPE, 0x800, METHOD_BUFFERED, FILE_READ_ACCESS)
LIST_MODULES = ctl_code(DEVICE_TYPE, 0x801, METHOD_BUFFERED, FILE_READ_ACCESS)
QUERY_HANDLES = ctl_code(DEVICE_TYPE, 0x802, METHOD_BUFFERED, FILE_READ_ACCESS)
RESET_STATS = ctl_code(DEVICE_TYPE, 0x803, METHOD_BUFFERED, FILE_WRITE_ACCESS)
GET_CONFIG = ctl_code(DEVICE_TYPE, 0x804, METHOD_BUFFERED, FILE_READ_ACCESS)
SET_CONFIG = ctl_code(DEVICE_TYPE, 0x805, METHOD_BUFFERED, FILE_WRITE_ACCESS)

# ntstatus.h
STATUS_SUCCESS = 0
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_REVISION_MISMATCH = 0xC0000059
STATUS_NOT_SUPPORTED = 0xC00000BB
STATUS_NOT_FOUND = 0xC0000225

# Sizes (docs/ioctl.md, "Structures").
VERSION_RESPONSE = 80
REQUEST = 16  # every request but QUERY_VERSION's (which has none)
MODULE_LIST_HEADER = 32
MODULE_RECORD = 520
DIR_STATS = 104
HANDLE_LIST_HEADER = 48
HANDLE_RECORD = 56
RESET_RESPONSE = 16
CONFIG_VALUE = 24
CONFIG_RESPONSE = 160
SET_CONFIG_RESPONSE = 24

KEYWORDS = ["MaxSegmentsPerNetBuffer", "SendPathWalk", "UsageIntervalMs", "HandleTableSize",
            "VerboseSegments", "ReceivePathWalk"]
ANOMALIES = ["overlong", "offset_overflow", "null_handle", "zero_length", "bad_pointer"]
ALL_MODULES = 0
CONFIG_FLAG_RUNTIME = 0x1
MODULE_STATES = {1: "attaching", 2: "paused", 3: "restarting", 4: "running", 5: "pausing", 6: "detaching"}


def header(size, version=PROTOCOL_VERSION) -> bytes:
    return struct.pack("<II", version, size)


def request(a=0, b=0, *, version=PROTOCOL_VERSION, size=REQUEST) -> bytes:
    """A 16-byte request: header and two u32 fields (flags/reserved, module_id/start_index,
    module_id/reserved or keyword/value, depending on the code)."""
    return header(size, version) + struct.pack("<II", a, b)


def _check_header(data: bytes, size: int):
    version, got = struct.unpack_from("<II", data, 0)
    assert (version, got) == (PROTOCOL_VERSION, size), (version, got, size)


def version_response(data: bytes) -> dict:
    _check_header(data, VERSION_RESPONSE)
    fields = struct.unpack_from("<10I", data, 8)
    names = ["protocol_version", "driver_major", "driver_minor", "ndis_major", "ndis_minor",
             "module_record_size", "handle_record_size", "keyword_count", "modules_attached",
             "reserved"]
    out = dict(zip(names, fields))
    out["driver_version"] = data[48:80].rstrip(b"\0").decode("utf-8")
    return out


def dir_stats(data: bytes, at: int) -> dict:
    nbls, nbs, walked, shm, segs, shared_bytes = struct.unpack_from("<6Q", data, at)
    max_chain, reserved = struct.unpack_from("<II", data, at + 48)
    anomalies = struct.unpack_from("<5Q", data, at + 56)
    (rejected,) = struct.unpack_from("<Q", data, at + 96)
    return {"nbls": nbls, "net_buffers": nbs, "walked": walked, "with_shared_memory": shm,
            "segments": segs, "shared_bytes": shared_bytes, "max_chain": max_chain,
            "reserved": reserved, "anomalies": dict(zip(ANOMALIES, anomalies)),
            "rejected_nbls": rejected}


def module_list(data: bytes) -> tuple[dict, list[dict]]:
    _check_header(data, MODULE_LIST_HEADER)
    total, returned, record_size, reserved = struct.unpack_from("<4I", data, 8)
    (required,) = struct.unpack_from("<Q", data, 24)
    head = {"total": total, "returned": returned, "record_size": record_size,
            "reserved": reserved, "required_bytes": required}
    records = []
    for i in range(returned):
        at = MODULE_LIST_HEADER + i * record_size
        r = dict(zip(["id", "if_index", "base_if_index", "media_type", "state", "name_length",
                      "distinct_handles", "handle_capacity"], struct.unpack_from("<8I", data, at)))
        r["handle_overflow_segments"], r["in_flight"] = struct.unpack_from("<QQ", data, at + 32)
        r["resets"], r["reserved"] = struct.unpack_from("<II", data, at + 48)
        r["receive"] = dir_stats(data, at + 56)
        r["send"] = dir_stats(data, at + 160)
        r["name"] = data[at + 264:at + 264 + 2 * r["name_length"]].decode("utf-16-le")
        records.append(r)
    return head, records


def handle_list(data: bytes) -> tuple[dict, list[dict]]:
    _check_header(data, HANDLE_LIST_HEADER)
    names = ["module_id", "capacity", "distinct", "start_index", "next_index", "returned",
             "record_size", "reserved"]
    head = dict(zip(names, struct.unpack_from("<8I", data, 8)))
    (head["overflow_segments"],) = struct.unpack_from("<Q", data, 40)
    records = []
    for i in range(head["returned"]):
        at = HANDLE_LIST_HEADER + i * head["record_size"]
        fields = struct.unpack_from("<6QII", data, at)
        records.append(dict(zip(["handle", "receive_segments", "receive_bytes", "send_segments",
                                 "send_bytes", "max_end", "min_offset", "slot"], fields)))
    return head, records


def reset_response(data: bytes) -> int:
    _check_header(data, RESET_RESPONSE)
    modules_reset, reserved = struct.unpack_from("<II", data, 8)
    assert reserved == 0
    return modules_reset


def config_response(data: bytes) -> dict[str, dict]:
    _check_header(data, CONFIG_RESPONSE)
    count, reserved = struct.unpack_from("<II", data, 8)
    assert (count, reserved) == (len(KEYWORDS), 0)
    out = {}
    for i in range(count):
        keyword, value, default, lo, hi, flags = struct.unpack_from("<6I", data, 16 + i * CONFIG_VALUE)
        assert keyword == i
        out[KEYWORDS[i]] = {"value": value, "default": default, "min": lo, "max": hi, "flags": flags}
    return out


def set_config_response(data: bytes) -> dict:
    _check_header(data, SET_CONFIG_RESPONSE)
    return dict(zip(["keyword", "old_value", "new_value", "timers_rearmed"],
                    struct.unpack_from("<4I", data, 8)))
