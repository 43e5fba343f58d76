"""A few hand-assembled x64 instructions: the stubs through which the harness, playing ndis.sys
or ntoskrnl.exe inside one of their functions, calls back into the driver (as NDIS runs
FilterDetach from inside NdisFDeregisterFilterDriver, or ETW runs the enable callback from inside
EtwRegister when a session already listens).

A stub is entered where the hooked import would have returned, with the stack exactly as at the
import's entry ([rsp] = the driver's return address, rsp = 8 mod 16). It makes each call with
the Microsoft x64 convention (four register arguments, 32 bytes of home space, further
arguments at [rsp+0x20], [rsp+0x28], ...; rsp = 0 mod 16 at each call), stores each call's rax
in a result slot, loads the import's own return value into rax and returns to the driver."""

import struct

FRAME = 0x68  # 0x20 home space + up to 9 stack arguments; = 8 mod 16 so calls see rsp = 0 mod 16
MAX_STACK_ARGS = (FRAME - 0x20) // 8

_ARG_REGS = (b"\x48\xB9", b"\x48\xBA", b"\x49\xB8", b"\x49\xB9")  # mov rcx/rdx/r8/r9, imm64


def _mov_rax(value: int) -> bytes:
    return b"\x48\xB8" + struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)


def call_stub(calls, result_slots, return_value: int) -> bytes:
    """calls: [(function address, [args...])]; result_slots: one address per call (rax is
    stored there after the call, so the harness can read what each callback returned)."""
    code = bytearray()
    code += b"\x48\x81\xEC" + struct.pack("<I", FRAME)  # sub rsp, FRAME
    for (fn, args), slot in zip(calls, result_slots, strict=True):
        if len(args) - 4 > MAX_STACK_ARGS:
            raise ValueError("too many arguments for the stub frame")
        for i, value in enumerate(args[4:]):
            code += _mov_rax(value)
            code += b"\x48\x89\x84\x24" + struct.pack("<I", 0x20 + 8 * i)  # mov [rsp+disp32], rax
        for reg, value in zip(_ARG_REGS, args[:4]):
            code += reg + struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)
        code += _mov_rax(fn)
        code += b"\xFF\xD0"  # call rax
        code += b"\x48\xA3" + struct.pack("<Q", slot)  # mov [moffs64], rax
    code += _mov_rax(return_value)
    code += b"\x48\x81\xC4" + struct.pack("<I", FRAME)  # add rsp, FRAME
    code += b"\xC3"  # ret
    return bytes(code)
