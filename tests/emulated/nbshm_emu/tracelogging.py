"""TraceLogging, decoded from the bytes a driver hands to EtwWriteTransfer / EtwSetInformation.

Written from the format's description (the TraceLogging metadata layout that TDH decoders read),
independently of the `tracelogging` crate the driver uses:

* provider GUID: SHA-1 over a fixed namespace followed by the upper-cased provider name in
  UTF-16BE; the first 16 bytes, with the high nibble of byte 7 set to 5, read as a GUID whose
  first three fields are little-endian;
* provider metadata (traits): u16 total size, NUL-terminated UTF-8 name, then traits;
* event metadata: u16 total size, one or more tag bytes (bit 7 = another byte follows),
  NUL-terminated UTF-8 event name, then per field: NUL-terminated UTF-8 name, in-type byte; if
  its bit 7 is set an out-type byte follows, and if that one's bit 7 is set, tag bytes follow;
  bits 5-6 of the in-type mark arrays (not used by nbshm, refused here);
* payload: the data descriptors' bytes, concatenated, each field in order per its in-type
  (counted strings: a u16 byte count, then the bytes).
"""

import hashlib
import struct
import uuid

ETW_NAMESPACE = bytes.fromhex("482C2DB2C39047C887F81A15BFC130FB")

# TDH in-types used by TraceLogging (the low 5 bits of the in-type byte).
IN_CSTR16 = 1
IN_CSTR8 = 2
IN_I8 = 3
IN_U8 = 4
IN_I16 = 5
IN_U16 = 6
IN_I32 = 7
IN_U32 = 8
IN_I64 = 9
IN_U64 = 10
IN_BOOL32 = 13
IN_GUID = 15
IN_HEX32 = 20
IN_HEX64 = 21
IN_STR16 = 22  # counted UTF-16: u16 byte count + bytes
IN_STR8 = 23  # counted 8-bit: u16 byte count + bytes
IN_BINARYC = 25

OUT_UTF8 = 35

IN_TYPE_NAMES = {
    IN_CSTR16: "cstr16", IN_CSTR8: "cstr8", IN_I8: "i8", IN_U8: "u8", IN_I16: "i16",
    IN_U16: "u16", IN_I32: "i32", IN_U32: "u32", IN_I64: "i64", IN_U64: "u64",
    IN_BOOL32: "bool32", IN_GUID: "guid", IN_HEX32: "hex32", IN_HEX64: "hex64",
    IN_STR16: "str16", IN_STR8: "str8", IN_BINARYC: "binaryc",
}

_FIXED = {IN_I8: "<b", IN_U8: "<B", IN_I16: "<h", IN_U16: "<H", IN_I32: "<i", IN_U32: "<I",
          IN_I64: "<q", IN_U64: "<Q", IN_BOOL32: "<I", IN_HEX32: "<I", IN_HEX64: "<Q"}


class DecodeError(Exception):
    pass


def provider_guid(name: str) -> uuid.UUID:
    """The TraceLogging/EventSource name-hash GUID of a provider name."""
    digest = bytearray(hashlib.sha1(ETW_NAMESPACE + name.upper().encode("utf-16-be")).digest()[:16])
    digest[7] = (digest[7] & 0x0F) | 0x50
    return uuid.UUID(bytes_le=bytes(digest))


def _cstr(blob: bytes, pos: int) -> tuple[str, int]:
    end = blob.find(b"\0", pos)
    if end < 0:
        raise DecodeError(f"unterminated string at {pos}")
    return blob[pos:end].decode("utf-8"), end + 1


def _tags(blob: bytes, pos: int) -> tuple[int, int]:
    """Reads 1-4 tag bytes (bit 7 = more follow); returns (tags, next position)."""
    value = 0
    for i in range(4):
        if pos >= len(blob):
            raise DecodeError("truncated tags")
        b = blob[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos
    raise DecodeError("more than 4 tag bytes")


def decode_provider_metadata(blob: bytes) -> dict:
    if len(blob) < 3:
        raise DecodeError("provider metadata too short")
    (size,) = struct.unpack_from("<H", blob, 0)
    if size != len(blob):
        raise DecodeError(f"provider metadata size field {size} != descriptor size {len(blob)}")
    name, pos = _cstr(blob, 2)
    traits = []
    while pos < size:
        tsize, ttype = struct.unpack_from("<HB", blob, pos)
        traits.append((ttype, blob[pos + 3:pos + tsize]))
        pos += tsize
    return {"name": name, "traits": traits}


def decode_event_metadata(blob: bytes) -> dict:
    """Returns {'name', 'tags', 'fields': [(name, in_type, out_type or None, field_tags)]}."""
    if len(blob) < 4:
        raise DecodeError("event metadata too short")
    (size,) = struct.unpack_from("<H", blob, 0)
    if size != len(blob):
        raise DecodeError(f"event metadata size field {size} != descriptor size {len(blob)}")
    tags, pos = _tags(blob, 2)
    name, pos = _cstr(blob, pos)
    fields = []
    while pos < size:
        fname, pos = _cstr(blob, pos)
        in_type = blob[pos]
        pos += 1
        out_type = None
        ftags = 0
        if in_type & 0x80:
            out_type = blob[pos]
            pos += 1
            if out_type & 0x80:
                ftags, pos = _tags(blob, pos)
                out_type &= 0x7F
        if in_type & 0x60:
            raise DecodeError(f"field {fname}: arrays/custom types are not used by nbshm")
        fields.append((fname, in_type & 0x1F, out_type, ftags))
    if pos != size:
        raise DecodeError("event metadata overrun")
    return {"name": name, "tags": tags, "fields": fields}


def decode_payload(fields, payload: bytes) -> dict:
    """Decodes the concatenated data of an event given its metadata fields."""
    values = {}
    pos = 0
    for fname, in_type, out_type, _tags_ in fields:
        if in_type in _FIXED:
            fmt = _FIXED[in_type]
            n = struct.calcsize(fmt)
            if pos + n > len(payload):
                raise DecodeError(f"field {fname}: payload too short")
            (values[fname],) = struct.unpack_from(fmt, payload, pos)
            pos += n
        elif in_type in (IN_STR8, IN_STR16, IN_BINARYC):
            if pos + 2 > len(payload):
                raise DecodeError(f"field {fname}: no count")
            (count,) = struct.unpack_from("<H", payload, pos)
            pos += 2
            raw = payload[pos:pos + count]
            if len(raw) != count:
                raise DecodeError(f"field {fname}: payload too short for {count} bytes")
            pos += count
            if in_type == IN_STR8:
                values[fname] = raw.decode("utf-8" if out_type == OUT_UTF8 else "latin-1")
            elif in_type == IN_STR16:
                if count % 2:
                    raise DecodeError(f"field {fname}: odd UTF-16 byte count")
                values[fname] = raw.decode("utf-16-le")
            else:
                values[fname] = raw
        elif in_type == IN_GUID:
            values[fname] = uuid.UUID(bytes_le=payload[pos:pos + 16])
            pos += 16
        else:
            raise DecodeError(f"field {fname}: in-type {in_type} not decoded here")
    if pos != len(payload):
        raise DecodeError(f"{len(payload) - pos} payload bytes left over")
    return values
