"""Runs the real nbshm.sys (x64) under speakeasy with this harness playing ndis.sys and the parts
of ntoskrnl.exe the driver imports.

Every import of the image is served by a hook below (speakeasy's own handlers are never used:
the harness refuses an image that imports anything it does not implement). The hooks check the
contract of ndis-reference.md (headers, handles, IRQL, ownership of every NBL, pool tags, lock
balance) and record everything the driver does; each `call` into the driver is bounded by an
instruction budget and fails on any emulation fault, bug check or recorded violation.
"""

from __future__ import annotations

import json
import os
import struct
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import speakeasy
import speakeasy.winenv.arch as e_arch
from unicorn.x86_const import UC_X86_REG_RSP

from . import asm
from . import layout as L
from . import tracelogging as tl

ARENA_BASE = 0xFFFFA80000000000  # canonical system-space addresses, like non-paged pool
ARENA_SIZE = 0x00800000
STUB_AREA_SIZE = 0x10000
UNMAPPED_KERNEL_ADDRESS = 0xFFFFDEADBEEF0000  # never mapped: a read of it faults the emulation
SHARED_MEMORY_HANDLE_BASE = 0xFFFFB00000000000  # handles are opaque: never mapped, never read

DEFAULT_BUDGET = 2_000_000  # instructions per call into the driver
# Stack a call into the driver may use below its entry (x64 kernel stacks are 24 KiB in all, and
# NDIS and the protocols above have used part of it before a filter's callback runs).
STACK_LIMIT = 4096
STACK_DEPTHS: dict[str, int] = {}  # deepest stack use per entry point over every harness of the run
EMULATION_TIMEOUT_S = 60


class UnimplementedImports(Exception):
    """The image imports functions this harness does not play."""


class EmulationFailure(AssertionError):
    """A call into the driver faulted, ran over its budget, bug-checked or broke the contract."""


@dataclass
class Event:
    name: str
    id: int
    version: int
    channel: int
    level: int
    opcode: int
    task: int
    keyword: int
    fields: list
    values: dict
    provider: str
    descriptor_types: list

    def field_names(self):
        return [f[0] for f in self.fields]


@dataclass
class Chain:
    """NBLs, NET_BUFFERs and shared-memory segments laid out in emulated memory."""
    head: int
    nbls: list
    nbs: list  # per NBL, list of NB addresses
    segments: list  # (nbl index, nb index, segment index, address, handle, offset, length, flags)
    ranges: list  # (address, size) of every structure, for snapshots and ownership
    spec: list

    @property
    def count(self):
        return len(self.nbls)

    @property
    def net_buffers(self):
        return sum(len(x) for x in self.nbs)


@dataclass
class ModuleRecord:
    filter_handle: int
    attach_params: int
    ctx: int | None = None
    state: str = "attaching"
    timer: int | None = None
    attach_status: int | None = None
    pause_pending: bool = False
    pause_completed: int = 0


def _config() -> dict:
    path = os.path.join(os.path.dirname(speakeasy.__file__), "configs", "default.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["timeout"] = EMULATION_TIMEOUT_S
    cfg["max_api_count"] = 100000
    cfg["analysis"]["strings"] = False  # would scan all mapped memory after every run
    cfg["analysis"]["memory_tracing"] = False
    return cfg


API_TABLE: dict[tuple[str, str], tuple[str, int]] = {}


def api(module: str, name: str, argc: int):
    """Marks a Harness method as the implementation of module!name with argc arguments."""
    def deco(fn):
        API_TABLE[(module, name)] = (fn.__name__, argc)
        return fn
    return deco


def implemented_imports() -> set[tuple[str, str]]:
    return set(API_TABLE)


class Harness:
    def __init__(self, sys_path, *, max_processors=4, budget=DEFAULT_BUDGET,
                 session_at_load=None, attach_in_register=None, fail=None, verbose=False,
                 registry=None):
        self.sys_path = Path(sys_path)
        # Values under the service's Parameters key, as NdisReadConfiguration returns them: an int
        # is a REG_DWORD (NdisParameterInteger), a str a REG_SZ (NdisParameterString).
        self.registry: dict[str, int | str] = dict(registry or {})
        self.verbose = verbose
        self.se = speakeasy.Speakeasy(config=_config())
        self.module = self.se.load_module(str(self.sys_path))
        self.emu = self.se.emu
        if self.emu.get_arch() != e_arch.ARCH_AMD64:
            raise RuntimeError("the harness drives x64 images only")
        self.image_base = self.module.base
        self.image_end = self.module.base + self.module.image_size
        self.imports = sorted({(m.lower(), f) for m, f in self.module.imports.values()})
        missing = [f"{m}!{f}" for m, f in self.imports if (m, f) not in API_TABLE]
        if missing:
            raise UnimplementedImports(
                "nbshm.sys imports functions the emulation harness does not implement: "
                + ", ".join(missing) + " (add a hook in tests/emulated/nbshm_emu/harness.py)")

        # State of the emulated kernel.
        self.max_processors = max_processors
        self.cpu = 0
        self.irql = L.PASSIVE_LEVEL
        self.violations: list[str] = []
        self.trace: list[tuple[str, dict]] = []
        self.events: list[Event] = []
        self.dbgprints: list[tuple[int, int, str]] = []
        self.bugchecks: list[dict] = []
        self.held_locks: dict[int, int] = {}
        self.pool: dict[int, dict] = {}
        self.pool_freed: list[dict] = []
        self.timers: dict[int, dict] = {}
        self.modules: dict[int, ModuleRecord] = {}
        self.config_handles: dict[int, dict] = {}
        self.config_reads: list[str] = []
        self.device: dict | None = None
        self.completed_irps: list[tuple[int, int]] = []
        self.etw = {"registered": False, "unregistered": False, "reg_handle": None,
                    "guid": None, "enable_callback": None, "callback_context": None,
                    "traits": [], "session": None}
        self.ndis = {"registered": False, "deregistered": False, "chars": None,
                     "driver_handle": None, "driver_context": None, "status": None}
        # Chains handed to the driver and not yet back, and chains the driver passed on.
        self.owned_by_driver: dict[int, Chain] = {}
        self.passed_down: dict[int, tuple[Chain, int, int]] = {}  # sends: head -> (chain, port, flags)
        self.indicated_up: dict[int, tuple[Chain, int, int, int]] = {}  # receives
        self.forbidden: list[tuple[int, int, str]] = []  # ranges the driver must not touch now
        self.allowed_writes: set[int] = set()
        self.handoffs: list[dict] = []  # what each NdisF* data-path call received
        self.session_at_load = session_at_load
        self.attach_in_register = attach_in_register
        self.pending_injections: list[dict] = []
        # Failure injection: {"EtwRegister" | "NdisFRegisterFilterDriver" | "NdisAllocateTimerObject"
        # | "NdisFSetAttributes": status to return, "ExAllocatePool2": {n, ...} = fail the n-th call}
        self.fail = dict(fail or {})
        self.pool_calls = 0

        # Emulated memory: one system-space arena for everything the harness plays.
        self.arena_base = self.se.mem_alloc(ARENA_SIZE, base=ARENA_BASE, tag="harness.arena")
        assert self.arena_base == ARENA_BASE
        self.stub_next = ARENA_BASE
        self.stub_end = ARENA_BASE + STUB_AREA_SIZE
        self.arena_next = self.stub_end
        self.result_slots = self.alloc(0x100)
        self.result_slot_next = 0

        # Instruction accounting: every instruction executed anywhere (the image, the harness's
        # stubs, or wherever a wild jump lands), so the budget bounds any runaway.
        self.instructions = 0
        self.budget = budget
        self.call_instructions = 0
        self.call_image_instructions = 0
        self.over_budget = False
        self.uc = self.emu.emu_eng.emu  # the unicorn engine, for a cheap register read
        self.call_entry_sp = self.call_min_sp = 0
        self.stack_depth: dict[str, int] = {}  # deepest stack use below each entry point, bytes
        self.se.add_code_hook(self._count, begin=1, end=0)
        # Ownership: the driver must not touch an NBL it has handed on.
        self.se.add_mem_read_hook(self._mem_access, begin=ARENA_BASE, end=ARENA_BASE + ARENA_SIZE - 1)
        self.se.add_mem_write_hook(self._mem_write, begin=ARENA_BASE, end=ARENA_BASE + ARENA_SIZE - 1)

        for (module, name), (method, argc) in API_TABLE.items():
            self.se.add_api_hook(self._wrap(getattr(self, method), f"{module}!{name}", argc),
                                 module, name, argc=argc, call_conv=e_arch.CALL_CONV_STDCALL)

        self.driver_object = None
        self.registry_path = None
        self.driver_entry_status = None

    # --- memory helpers ---------------------------------------------------------------------

    def alloc(self, size: int, align: int = 16, fill: int = 0) -> int:
        addr = (self.arena_next + align - 1) & ~(align - 1)
        if addr + size > ARENA_BASE + ARENA_SIZE:
            raise MemoryError("harness arena exhausted")
        self.arena_next = addr + size
        if size:
            self.se.mem_write(addr, bytes([fill]) * size)
        return addr

    def read(self, addr: int, size: int) -> bytes:
        return self.se.mem_read(addr, size)

    def write(self, addr: int, data: bytes):
        self.se.mem_write(addr, data)

    def u8(self, addr):
        return self.read(addr, 1)[0]

    def u16(self, addr):
        return struct.unpack("<H", self.read(addr, 2))[0]

    def u32(self, addr):
        return struct.unpack("<I", self.read(addr, 4))[0]

    def u64(self, addr):
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def w32(self, addr, v):
        self.write(addr, struct.pack("<I", v & 0xFFFFFFFF))

    def w64(self, addr, v):
        self.write(addr, struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF))

    def unicode_string(self, text: str) -> int:
        """A UNICODE_STRING (and its buffer) in the arena."""
        data = text.encode("utf-16-le")
        buf = self.alloc(len(data) + 2)
        self.write(buf, data + b"\0\0")
        us = self.alloc(L.UNICODE_STRING_SIZE, align=8)
        self.write(us, struct.pack("<HHIQ", len(data), len(data) + 2, 0, buf))
        return us

    def read_unicode_string(self, addr: int) -> str:
        length, maximum, _pad, buf = struct.unpack("<HHIQ", self.read(addr, 0x10))
        if length % 2 or length > maximum:
            self.violation(f"UNICODE_STRING at {addr:#x}: Length {length}, MaximumLength {maximum}")
        if length and not buf:
            self.violation(f"UNICODE_STRING at {addr:#x}: NULL buffer with Length {length}")
        return self.read(buf, length).decode("utf-16-le") if length else ""

    def in_image(self, addr: int) -> bool:
        return self.image_base <= addr < self.image_end

    # --- bookkeeping -------------------------------------------------------------------------

    def violation(self, msg: str):
        self.violations.append(msg)

    def _wrap(self, method, name, argc):
        def hook(emu, api_name, func, params):
            try:
                argv = emu.get_func_argv(e_arch.CALL_CONV_STDCALL, argc)
                ret = method(*argv)
                self._apply_injection(emu, supported=func is not None)
                return ret
            except Exception as exc:  # a bug in a hook must fail the test, not vanish in unicorn
                self.violation(f"{name}: harness hook raised {exc!r}\n{traceback.format_exc()}")
                emu.stop()
                return 0
        return hook

    def _count(self, emu, addr, size, ctx):
        self.instructions += 1
        self.call_instructions += 1
        if self.image_base <= addr < self.image_end:
            self.call_image_instructions += 1
        sp = self.uc.reg_read(UC_X86_REG_RSP)
        if self.call_instructions == 1:
            self.call_entry_sp = self.call_min_sp = sp
        elif sp < self.call_min_sp:
            self.call_min_sp = sp
        if self.call_instructions > self.budget and not self.over_budget:
            self.over_budget = True
            self.violation(f"instruction budget of {self.budget} exceeded at {addr:#x}")
            emu.stop()
        return True

    def _in_forbidden(self, address, size):
        for base, length, what in self.forbidden:
            if address < base + length and base < address + size:
                return what
        return None

    def _mem_access(self, emu, access, address, size, value, ctx):
        if self.forbidden:
            what = self._in_forbidden(address, size)
            if what:
                self.violation(f"driver read {size} bytes at {address:#x} ({what}) after handing it on")
        return True

    def _mem_write(self, emu, access, address, size, value, ctx):
        what = self._in_forbidden(address, size)
        if what:
            self.violation(f"driver wrote {size} bytes at {address:#x} ({what}) after handing it on")
            return True
        for head, chain in self.owned_by_driver.items():
            for base, length in chain.ranges:
                if address < base + length and base < address + size:
                    if address in self.allowed_writes and size == 4:
                        return True
                    self.violation(f"driver wrote {size} bytes at {address:#x} inside NBL chain "
                                   f"{head:#x} (a monitor must not modify NBLs)")
                    return True
        return True

    def _inject(self, calls, return_value):
        """From inside a hook: make the import 'call back' into the driver before returning."""
        slots = []
        for _ in calls:
            slots.append(self.result_slots + 8 * (self.result_slot_next % 32))
            self.result_slot_next += 1
        code = asm.call_stub(calls, slots, return_value)
        addr = (self.stub_next + 15) & ~15
        if addr + len(code) > self.stub_end:
            raise MemoryError("stub area exhausted")
        self.stub_next = addr + len(code)
        self.write(addr, code)
        record = {"stub": addr, "calls": calls, "slots": slots}
        self.pending_injections.append(record)
        return record

    def _apply_injection(self, emu, supported):
        if not self.pending_injections or "applied" in self.pending_injections[-1]:
            return
        record = self.pending_injections[-1]
        record["applied"] = True
        if supported:
            # speakeasy returns from its own handlers only if rip and [rsp] are unchanged:
            # moving rip makes the stub run with [rsp] = the driver's return address.
            emu.set_pc(record["stub"])
        else:
            # For the others it pops [rsp] and jumps there: put the stub there, above the
            # driver's return address.
            sp = emu.get_stack_ptr() - 8
            emu.mem_write(sp, record["stub"].to_bytes(8, "little"))
            emu.set_stack_ptr(sp)

    def injection_results(self, record):
        return [self.u64(s) for s in record["slots"]]

    def log(self, name, **kw):
        self.trace.append((name, kw))
        if self.verbose:
            print(name, {k: (hex(v) if isinstance(v, int) else v) for k, v in kw.items()})

    def calls_to(self, name):
        return [kw for n, kw in self.trace if n == name]

    def trace_names(self):
        return [n for n, _ in self.trace]

    # --- running driver code -------------------------------------------------------------------

    def _check_run(self, run, what, entry_irql):
        problems = []
        if run.error:
            err = run.error
            problems.append(f"emulation error in {what}: {err.get('type')} at pc {err.get('pc')} "
                            f"address {err.get('address')} ({err.get('instr')}) api {err.get('api_name')}")
        if self.bugchecks:
            problems.append(f"KeBugCheckEx during {what}: {self.bugchecks[-1]}")
        if self.over_budget:
            problems.append(f"{what} ran over the budget of {self.budget} instructions (hang?)")
        if run.ret_val is None and not problems:
            problems.append(f"{what} did not return (emulation stopped early)")
        if self.held_locks:
            problems.append(f"{what} returned holding spin locks {[hex(x) for x in self.held_locks]}")
        if self.irql != entry_irql:
            problems.append(f"{what} returned at IRQL {self.irql}, entered at {entry_irql}")
        if self.violations:
            problems.append(f"contract violations during {what}:\n  " + "\n  ".join(self.violations))
        if problems:
            raise EmulationFailure("\n".join(problems))

    def _record_stack(self, what):
        depth = self.call_entry_sp - self.call_min_sp
        self.last_stack_depth = depth
        self.stack_depth[what] = max(depth, self.stack_depth.get(what, 0))
        STACK_DEPTHS[what] = max(depth, STACK_DEPTHS.get(what, 0))
        if depth > STACK_LIMIT:
            self.violation(f"{what} used {depth} bytes of stack (limit {STACK_LIMIT})")

    def driver_entry(self):
        self.call_instructions = 0
        self.call_image_instructions = 0
        self.over_budget = False
        self.se.run_module(self.module)
        run = self.emu.runs[0]
        self.driver_object = run.args[0]
        self.registry_path = run.args[1]
        self.last_instructions = self.call_image_instructions  # the driver's own code
        self._record_stack("DriverEntry")
        self._check_run(run, "DriverEntry", L.PASSIVE_LEVEL)
        self.driver_entry_status = run.ret_val & 0xFFFFFFFF
        return self.driver_entry_status

    def call(self, addr: int, args, *, what: str, irql=L.PASSIVE_LEVEL, cpu=0, stack_args=()):
        """Calls driver code at `addr` with up to four register arguments and optional stack
        arguments (5th, 6th, ...), bounded by the instruction budget. Returns rax."""
        if not self.in_image(addr):
            raise EmulationFailure(f"{what}: {addr:#x} is not inside the image")
        args = list(args)
        if stack_args:
            if len(args) != 4:
                raise ValueError("stack arguments need all four register arguments")
            # speakeasy's call() writes arguments 5+ into the 32-byte home space; four padding
            # values put the real ones at [rsp+0x28], [rsp+0x30], ... where the callee reads them.
            args = args + [0, 0, 0, 0] + list(stack_args)
        self.irql = irql
        self.cpu = cpu
        self.call_instructions = 0
        self.call_image_instructions = 0
        self.over_budget = False
        runs_before = len(self.emu.runs)
        self.se.call(addr, args)
        if len(self.emu.runs) != runs_before + 1:
            raise EmulationFailure(f"{what}: speakeasy did not run the call")
        run = self.emu.runs[-1]
        self.last_instructions = self.call_image_instructions  # the driver's own code
        self._record_stack(what.split(" (")[0])
        self._check_run(run, what, irql)
        return run.ret_val

    # --- chains --------------------------------------------------------------------------------

    def build_chain(self, spec) -> Chain:
        """spec: one entry per NBL, each a list of NET_BUFFER dicts:
        {'data_length': int, 'segments': [(handle, offset, length, flags), ...],
         'cycle': bool (last segment's Next points to itself), 'shared_memory_info': raw pointer}"""
        nbls, nbs_all, segs, ranges = [], [], [], []
        for nbl_spec in spec:
            nbl = self.alloc(L.NBL_SIZE)
            nbls.append(nbl)
            ranges.append((nbl, L.NBL_SIZE))
            nbs = []
            for nb_spec in nbl_spec:
                nb = self.alloc(L.NB_SIZE)
                ranges.append((nb, L.NB_SIZE))
                self.w32(nb + L.NB_DATA_LENGTH, nb_spec.get("data_length", 1514))
                seg_addrs = []
                for s in nb_spec.get("segments", []):
                    sa = self.alloc(L.SHM_SIZE)
                    ranges.append((sa, L.SHM_SIZE))
                    seg_addrs.append(sa)
                for i, (sa, s) in enumerate(zip(seg_addrs, nb_spec.get("segments", []))):
                    handle, offset, length, flags = s
                    nxt = seg_addrs[i + 1] if i + 1 < len(seg_addrs) else 0
                    if nxt == 0 and nb_spec.get("cycle"):
                        nxt = sa
                    self.w64(sa + L.SHM_NEXT, nxt)
                    self.w32(sa + L.SHM_FLAGS, flags)
                    self.w64(sa + L.SHM_HANDLE, handle)
                    self.w32(sa + L.SHM_OFFSET, offset)
                    self.w32(sa + L.SHM_LENGTH, length)
                    segs.append((len(nbls) - 1, len(nbs), i, sa, handle, offset, length, flags))
                shm = nb_spec.get("shared_memory_info", seg_addrs[0] if seg_addrs else 0)
                self.w64(nb + L.NB_SHARED_MEMORY_INFO, shm)
                nbs.append(nb)
            for a, b in zip(nbs, nbs[1:]):
                self.w64(a + L.NB_NEXT, b)
            self.w64(nbl + L.NBL_FIRST_NET_BUFFER, nbs[0] if nbs else 0)
            nbs_all.append(nbs)
        for a, b in zip(nbls, nbls[1:]):
            self.w64(a + L.NBL_NEXT, b)
        return Chain(head=nbls[0], nbls=nbls, nbs=nbs_all, segments=segs, ranges=ranges, spec=spec)

    def simple_chain(self, n_nbls, *, segments_per_nb=1, nbs_per_nbl=1, handle_base=None,
                     handles=4, offset=0x800, length=1514, flags=0):
        handle_base = handle_base or SHARED_MEMORY_HANDLE_BASE
        spec = []
        k = 0
        for i in range(n_nbls):
            nbl = []
            for j in range(nbs_per_nbl):
                segs = []
                for s in range(segments_per_nb):
                    segs.append((handle_base + 0x1000 * (k % handles), offset + 0x1000 * k, length, flags))
                    k += 1
                nbl.append({"data_length": length, "segments": segs})
            spec.append(nbl)
        return self.build_chain(spec)

    def snapshot(self, chain: Chain) -> bytes:
        return b"".join(self.read(a, n) for a, n in chain.ranges)

    def _give(self, chain: Chain):
        """The chain now belongs to the driver (harness must not have it elsewhere)."""
        mine = set(chain.ranges)
        self.forbidden = [f for f in self.forbidden if (f[0], f[1]) not in mine]
        self.owned_by_driver[chain.head] = chain

    def _take_back(self, head: int) -> Chain | None:
        chain = self.owned_by_driver.pop(head, None)
        if chain is not None:
            for base, length in chain.ranges:
                self.forbidden.append((base, length, f"chain {chain.head:#x}"))
        return chain

    # --- the hooks: ndis.sys ---------------------------------------------------------------------

    def _require_irql(self, name, maximum):
        if self.irql > maximum:
            self.violation(f"{name} called at IRQL {self.irql} (allowed <= {maximum})")

    @api("ndis", "NdisFRegisterFilterDriver", 4)
    def NdisFRegisterFilterDriver(self, driver_object, context, chars_ptr, handle_ptr):
        self._require_irql("NdisFRegisterFilterDriver", L.PASSIVE_LEVEL)
        self.log("NdisFRegisterFilterDriver", driver_object=driver_object, context=context,
                 chars=chars_ptr)
        if self.ndis["registered"]:
            self.violation("NdisFRegisterFilterDriver called twice")
        raw = self.read(chars_ptr, L.NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2)
        self.ndis["chars_raw"] = raw
        self.ndis["chars"] = self.decode_characteristics(chars_ptr)
        if "NdisFRegisterFilterDriver" in self.fail:
            return self.fail["NdisFRegisterFilterDriver"]
        handle = self.alloc(0x40, fill=0xAB)  # opaque filter driver block
        self.w64(handle_ptr, handle)
        self.ndis.update(registered=True, driver_handle=handle, driver_context=context,
                         driver_object_arg=driver_object,
                         etw_registered_before=self.etw["registered"])
        if self.attach_in_register:
            # NDIS may attach modules before NdisFRegisterFilterDriver returns (ndis-reference A.1).
            attach = self.ndis["chars"]["handlers"]["AttachHandler"]
            rec = self._new_module(**self.attach_in_register)
            self.ndis["attach_in_register_record"] = self._inject(
                [(attach, [rec.filter_handle, context, rec.attach_params])], L.NDIS_STATUS_SUCCESS)
            self.ndis["attach_in_register_module"] = rec
        return L.NDIS_STATUS_SUCCESS

    def decode_characteristics(self, ptr):
        hdr_type, rev, size = struct.unpack("<BBH", self.read(ptr, 4))
        c = {"Type": hdr_type, "Revision": rev, "Size": size}
        c["MajorNdisVersion"] = self.u8(ptr + 4)
        c["MinorNdisVersion"] = self.u8(ptr + 5)
        c["MajorDriverVersion"] = self.u8(ptr + 6)
        c["MinorDriverVersion"] = self.u8(ptr + 7)
        c["Flags"] = self.u32(ptr + 8)
        for name in ("FriendlyName", "UniqueName", "ServiceName"):
            c[name] = self.read_unicode_string(ptr + L.CHARS_FIELDS[name])
        limit = min(size, L.NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2)
        c["handlers"] = {n: (self.u64(ptr + off) if off + 8 <= limit else None)
                         for n, off in L.CHARS_HANDLERS.items()}
        return c

    @api("ndis", "NdisFDeregisterFilterDriver", 1)
    def NdisFDeregisterFilterDriver(self, handle):
        self._require_irql("NdisFDeregisterFilterDriver", L.PASSIVE_LEVEL)
        self.log("NdisFDeregisterFilterDriver", handle=handle)
        if handle != self.ndis["driver_handle"]:
            self.violation(f"NdisFDeregisterFilterDriver({handle:#x}): not the registered handle")
        if self.ndis["deregistered"]:
            self.violation("NdisFDeregisterFilterDriver called twice")
        self.ndis["deregistered"] = True
        # NDIS detaches every module still attached before this returns (ndis-reference A.8).
        attached = [m for m in self.modules.values() if m.state == "paused"]
        running = [m for m in self.modules.values() if m.state not in ("paused", "detached")]
        if running:
            self.violation(f"deregistered with modules not paused: {[m.state for m in running]}")
        if attached:
            detach = self.ndis["chars"]["handlers"]["DetachHandler"]
            self.ndis["detach_in_deregister"] = self._inject(
                [(detach, [m.ctx]) for m in attached], 0)
            for m in attached:
                m.state = "detached"
        return None

    def _module_by_handle(self, name, handle) -> ModuleRecord | None:
        rec = self.modules.get(handle)
        if rec is None:
            self.violation(f"{name}: {handle:#x} is not a filter module handle NDIS gave out")
        return rec

    @api("ndis", "NdisFSetAttributes", 3)
    def NdisFSetAttributes(self, handle, ctx, attrs):
        self._require_irql("NdisFSetAttributes", L.PASSIVE_LEVEL)
        t, rev, size = struct.unpack("<BBH", self.read(attrs, 4))
        flags = self.u32(attrs + 4)
        self.log("NdisFSetAttributes", handle=handle, ctx=ctx, type=t, revision=rev, size=size,
                 flags=flags)
        rec = self._module_by_handle("NdisFSetAttributes", handle)
        if rec is None:
            return L.NDIS_STATUS_INVALID_PARAMETER
        if rec.state != "attaching":
            self.violation("NdisFSetAttributes outside FilterAttach")
        if (t, rev, size) != (L.NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES, L.NDIS_FILTER_ATTRIBUTES_REVISION_1,
                              L.NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1):
            self.violation(f"NDIS_FILTER_ATTRIBUTES header {t:#x}/{rev}/{size:#x}, want 0x8d/1/0x8")
        if flags != 0:
            self.violation(f"NDIS_FILTER_ATTRIBUTES.Flags = {flags:#x}, want 0")
        if not ctx:
            self.violation("NdisFSetAttributes with a NULL module context")
        if "NdisFSetAttributes" in self.fail:
            return self.fail["NdisFSetAttributes"]
        rec.ctx = ctx
        return L.NDIS_STATUS_SUCCESS

    def _handoff(self, name, handle, head, port, flags, count=None):
        rec = self._module_by_handle(name, handle)
        entry = {"api": name, "handle": handle, "nbls": head, "port": port, "flags": flags,
                 "count": count, "irql": self.irql,
                 "snapshot_equal": None}
        chain = self.owned_by_driver.get(head)
        if chain is None:
            self.violation(f"{name}: NBL {head:#x} is not a chain the driver owns now")
        else:
            entry["snapshot_equal"] = self.snapshot(chain) == chain.snapshot_before
            entry["chain"] = chain
        self.handoffs.append(entry)
        self.log(name, handle=handle, nbls=head, port=port, flags=flags,
                 **({} if count is None else {"count": count}))
        return rec, chain

    @api("ndis", "NdisFSendNetBufferLists", 4)
    def NdisFSendNetBufferLists(self, handle, nbls, port, flags):
        self._require_irql("NdisFSendNetBufferLists", L.DISPATCH_LEVEL)
        rec, chain = self._handoff("NdisFSendNetBufferLists", handle, nbls, port, flags)
        if chain is not None:
            self._take_back(nbls)
            self.passed_down[nbls] = (chain, port, flags)

    @api("ndis", "NdisFSendNetBufferListsComplete", 3)
    def NdisFSendNetBufferListsComplete(self, handle, nbls, flags):
        self._require_irql("NdisFSendNetBufferListsComplete", L.DISPATCH_LEVEL)
        rec, chain = self._handoff("NdisFSendNetBufferListsComplete", handle, nbls, None, flags)
        if chain is not None:
            self._take_back(nbls)

    @api("ndis", "NdisFIndicateReceiveNetBufferLists", 5)
    def NdisFIndicateReceiveNetBufferLists(self, handle, nbls, port, count, flags):
        self._require_irql("NdisFIndicateReceiveNetBufferLists", L.DISPATCH_LEVEL)
        rec, chain = self._handoff("NdisFIndicateReceiveNetBufferLists", handle, nbls, port, flags,
                                   count)
        if chain is not None:
            # With RESOURCES set the NBLs go back to the miniport when the driver's callback
            # returns; either way the driver must not touch them after this call.
            self._take_back(nbls)
            if not flags & L.NDIS_RECEIVE_FLAGS_RESOURCES:
                self.indicated_up[nbls] = (chain, port, count, flags)

    @api("ndis", "NdisFReturnNetBufferLists", 3)
    def NdisFReturnNetBufferLists(self, handle, nbls, flags):
        self._require_irql("NdisFReturnNetBufferLists", L.DISPATCH_LEVEL)
        rec, chain = self._handoff("NdisFReturnNetBufferLists", handle, nbls, None, flags)
        if chain is not None:
            if getattr(chain, "resources", False):
                self.violation("NdisFReturnNetBufferLists on a receive indicated with RESOURCES")
            self._take_back(nbls)

    @api("ndis", "NdisFPauseComplete", 1)
    def NdisFPauseComplete(self, handle):
        self.log("NdisFPauseComplete", handle=handle)
        rec = self._module_by_handle("NdisFPauseComplete", handle)
        if rec is None:
            return
        if not rec.pause_pending:
            self.violation("NdisFPauseComplete without a pending pause")
        rec.pause_pending = False
        rec.pause_completed += 1
        rec.state = "paused"

    @api("ndis", "NdisFIndicateStatus", 2)
    def NdisFIndicateStatus(self, handle, indication):
        self.log("NdisFIndicateStatus", handle=handle, indication=indication)
        self._module_by_handle("NdisFIndicateStatus", handle)

    @api("ndis", "NdisAllocateTimerObject", 3)
    def NdisAllocateTimerObject(self, ndis_handle, chars, out):
        self._require_irql("NdisAllocateTimerObject", L.DISPATCH_LEVEL)
        t, rev, size = struct.unpack("<BBH", self.read(chars, 4))
        tag = self.u32(chars + L.TIMER["AllocationTag"])
        fn = self.u64(chars + L.TIMER["TimerFunction"])
        ctx = self.u64(chars + L.TIMER["FunctionContext"])
        self.log("NdisAllocateTimerObject", handle=ndis_handle, type=t, revision=rev, size=size,
                 tag=tag, function=fn, context=ctx)
        if ndis_handle not in self.modules and ndis_handle != self.ndis["driver_handle"]:
            self.violation(f"NdisAllocateTimerObject: {ndis_handle:#x} is not an NDIS handle")
        if t != L.NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS or size < L.NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1 \
                or rev != L.NDIS_TIMER_CHARACTERISTICS_REVISION_1:
            self.violation(f"NDIS_TIMER_CHARACTERISTICS header {t:#x}/{rev}/{size:#x}")
            return 0xC0010005  # NDIS_STATUS_BAD_CHARACTERISTICS
        if not tag:
            self.violation("NDIS_TIMER_CHARACTERISTICS.AllocationTag is 0")
        if not self.in_image(fn):
            self.violation(f"timer function {fn:#x} is outside the image")
        if "NdisAllocateTimerObject" in self.fail:
            return self.fail["NdisAllocateTimerObject"]
        timer = self.alloc(0x40, fill=0xAC)
        self.timers[timer] = {"function": fn, "context": ctx, "tag": tag, "armed": False,
                              "freed": False, "owner": ndis_handle, "sets": []}
        rec = self.modules.get(ndis_handle)
        if rec:
            rec.timer = timer
        self.w64(out, timer)
        return L.NDIS_STATUS_SUCCESS

    def _timer(self, name, timer):
        t = self.timers.get(timer)
        if t is None or t["freed"]:
            self.violation(f"{name}({timer:#x}): not a live timer object")
            return None
        return t

    @api("ndis", "NdisSetTimerObject", 4)
    def NdisSetTimerObject(self, timer, due, period, ctx):
        due = struct.unpack("<q", struct.pack("<Q", due))[0]
        period = struct.unpack("<i", struct.pack("<I", period & 0xFFFFFFFF))[0]
        self.log("NdisSetTimerObject", timer=timer, due=due, period=period, context=ctx)
        t = self._timer("NdisSetTimerObject", timer)
        if t is None:
            return 0
        was = t["armed"]
        t.update(armed=True, due=due, period=period, set_context=ctx)
        t["sets"].append((due, period, ctx))
        if period < 0:
            self.violation(f"NdisSetTimerObject period {period} < 0")
        return 1 if was else 0

    @api("ndis", "NdisCancelTimerObject", 1)
    def NdisCancelTimerObject(self, timer):
        self.log("NdisCancelTimerObject", timer=timer)
        t = self._timer("NdisCancelTimerObject", timer)
        if t is None:
            return 0
        if t.get("period") and self.irql != L.PASSIVE_LEVEL:
            self.violation("NdisCancelTimerObject on a periodic timer above PASSIVE_LEVEL")
        was = t["armed"]
        t["armed"] = False
        return 1 if was else 0

    @api("ndis", "NdisFreeTimerObject", 1)
    def NdisFreeTimerObject(self, timer):
        self.log("NdisFreeTimerObject", timer=timer)
        t = self._timer("NdisFreeTimerObject", timer)
        if t is None:
            return
        if t["armed"]:
            self.violation("NdisFreeTimerObject on an armed timer (cancel it first)")
        t["freed"] = True

    # Control device and configuration (added by another branch; played so the harness keeps
    # working when the image starts importing them).

    @api("ndis", "NdisRegisterDeviceEx", 4)
    def NdisRegisterDeviceEx(self, ndis_handle, attrs, p_device, p_handle):
        self._require_irql("NdisRegisterDeviceEx", L.PASSIVE_LEVEL)
        t, rev, size = struct.unpack("<BBH", self.read(attrs, 4))
        dev = {"type": t, "revision": rev, "size": size}
        if ndis_handle != self.ndis["driver_handle"]:
            self.violation("NdisRegisterDeviceEx: not the filter driver handle")
        if t != L.NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES or rev < 1 \
                or size < L.NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1:
            self.violation(f"NDIS_DEVICE_OBJECT_ATTRIBUTES header {t:#x}/{rev}/{size:#x}")
            return L.NDIS_STATUS_INVALID_PARAMETER
        for name in ("DeviceName", "SymbolicName"):
            p = self.u64(attrs + L.DEVICE_ATTRS[name])
            dev[name] = self.read_unicode_string(p) if p else None
        sddl = self.u64(attrs + L.DEVICE_ATTRS["DefaultSDDLString"])
        dev["DefaultSDDLString"] = self.read_unicode_string(sddl) if sddl else None
        table = self.u64(attrs + L.DEVICE_ATTRS["MajorFunctions"])
        dev["MajorFunctions"] = [self.u64(table + 8 * i) for i in range(L.IRP_MJ_MAXIMUM_FUNCTION + 1)] \
            if table else []
        for i, fn in enumerate(dev["MajorFunctions"]):
            if fn and not self.in_image(fn):
                self.violation(f"device MajorFunctions[{i}] = {fn:#x} is outside the image")
        dev["ExtensionSize"] = self.u32(attrs + L.DEVICE_ATTRS["ExtensionSize"])
        if "NdisRegisterDeviceEx" in self.fail:
            self.log("NdisRegisterDeviceEx", failed=self.fail["NdisRegisterDeviceEx"])
            return self.fail["NdisRegisterDeviceEx"]
        obj = self.alloc(L.DEVICE_OBJECT_SIZE)
        self.w64(obj + L.DEVICE_OBJECT_DRIVER_OBJECT, self.driver_object or 0)
        dev["object"] = obj
        dev["extension"] = self.alloc(max(dev["ExtensionSize"], 1))
        dev["handle"] = self.alloc(0x20, fill=0xAD)
        dev["deregistered"] = False
        self.device = dev
        self.w64(p_device, obj)
        self.w64(p_handle, dev["handle"])
        self.log("NdisRegisterDeviceEx", **{k: v for k, v in dev.items() if isinstance(v, int)})
        return L.NDIS_STATUS_SUCCESS

    @api("ndis", "NdisDeregisterDeviceEx", 1)
    def NdisDeregisterDeviceEx(self, handle):
        self._require_irql("NdisDeregisterDeviceEx", L.PASSIVE_LEVEL)
        self.log("NdisDeregisterDeviceEx", handle=handle)
        if not self.device or handle != self.device["handle"] or self.device["deregistered"]:
            self.violation(f"NdisDeregisterDeviceEx({handle:#x}): not a registered device handle")
            return
        self.device["deregistered"] = True

    @api("ndis", "NdisGetDeviceReservedExtension", 1)
    def NdisGetDeviceReservedExtension(self, device_object):
        self.log("NdisGetDeviceReservedExtension", device=device_object)
        if not self.device or device_object != self.device["object"]:
            self.violation("NdisGetDeviceReservedExtension: not the device NDIS created")
            return 0
        return self.device["extension"]

    @api("ndis", "NdisOpenConfigurationEx", 2)
    def NdisOpenConfigurationEx(self, config_object, p_handle):
        self._require_irql("NdisOpenConfigurationEx", L.PASSIVE_LEVEL)
        t, rev, size = struct.unpack("<BBH", self.read(config_object, 4))
        ndis_handle = self.u64(config_object + L.CONFIG_OBJECT["NdisHandle"])
        flags = self.u32(config_object + L.CONFIG_OBJECT["Flags"])
        self.log("NdisOpenConfigurationEx", type=t, revision=rev, size=size, handle=ndis_handle,
                 flags=flags)
        if t != L.NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT or rev == 0 \
                or size < L.NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1:
            self.violation(f"NDIS_CONFIGURATION_OBJECT header {t:#x}/{rev}/{size:#x}")
            return L.NDIS_STATUS_INVALID_PARAMETER
        if ndis_handle != self.ndis["driver_handle"] and ndis_handle not in self.modules:
            self.violation(f"NdisOpenConfigurationEx: {ndis_handle:#x} is not an NDIS handle")
        if "NdisOpenConfigurationEx" in self.fail:
            return self.fail["NdisOpenConfigurationEx"]
        h = self.alloc(0x20, fill=0xAE)
        self.config_handles[h] = {"key": "service", "closed": False}
        self.w64(p_handle, h)
        return L.NDIS_STATUS_SUCCESS

    @api("ndis", "NdisOpenConfigurationKeyByName", 4)
    def NdisOpenConfigurationKeyByName(self, p_status, handle, name, p_subkey):
        self._require_irql("NdisOpenConfigurationKeyByName", L.PASSIVE_LEVEL)
        key = self.read_unicode_string(name)
        self.log("NdisOpenConfigurationKeyByName", handle=handle, key=key)
        parent = self.config_handles.get(handle)
        if parent is None or parent["closed"]:
            self.violation("NdisOpenConfigurationKeyByName on a handle that is not open")
            self.w32(p_status, L.NDIS_STATUS_FAILURE)
            return
        if "NdisOpenConfigurationKeyByName" in self.fail:
            self.w32(p_status, self.fail["NdisOpenConfigurationKeyByName"])
            return
        h = self.alloc(0x20, fill=0xAE)
        self.config_handles[h] = {"key": parent["key"] + "\\" + key, "closed": False}
        self.w64(p_subkey, h)
        self.w32(p_status, L.NDIS_STATUS_SUCCESS)

    @api("ndis", "NdisReadConfiguration", 5)
    def NdisReadConfiguration(self, p_status, p_value, handle, keyword, ptype):
        self._require_irql("NdisReadConfiguration", L.PASSIVE_LEVEL)
        name = self.read_unicode_string(keyword)
        self.log("NdisReadConfiguration", handle=handle, keyword=name, type=ptype)
        cfg = self.config_handles.get(handle)
        if cfg is None or cfg["closed"]:
            self.violation("NdisReadConfiguration on a handle that is not open")
        self.config_reads.append(name)
        found = cfg is not None and cfg["key"].endswith("\\Parameters") and name in self.registry
        if not found:
            # Not found: the defaults apply.
            self.w64(p_value, 0)
            self.w32(p_status, L.NDIS_STATUS_FAILURE)
            return
        v = self.registry[name]
        # NDIS_CONFIGURATION_PARAMETER, owned by NDIS until the handle is closed.
        param = self.alloc(L.CONFIG_PARAMETER_SIZE, fill=0)
        if isinstance(v, int):
            self.w32(param + L.CONFIG_PARAMETER["ParameterType"], L.NdisParameterInteger)
            self.w32(param + L.CONFIG_PARAMETER["ParameterData"], v & 0xFFFFFFFF)
        else:
            text = self.unicode_string(v)
            self.w32(param + L.CONFIG_PARAMETER["ParameterType"], L.NdisParameterString)
            self.write(param + L.CONFIG_PARAMETER["ParameterData"], self.read(text, 16))
        cfg.setdefault("parameters", []).append(param)
        self.w64(p_value, param)
        self.w32(p_status, L.NDIS_STATUS_SUCCESS)

    @api("ndis", "NdisCloseConfiguration", 1)
    def NdisCloseConfiguration(self, handle):
        self.log("NdisCloseConfiguration", handle=handle)
        cfg = self.config_handles.get(handle)
        if cfg is None or cfg["closed"]:
            self.violation(f"NdisCloseConfiguration({handle:#x}): not an open configuration handle")
            return
        cfg["closed"] = True
        # What NdisReadConfiguration returned through this handle is gone now: poison it, so a
        # driver still reading it sees garbage rather than the value.
        for param in cfg.get("parameters", []):
            self.write(param, b"\xDD" * L.CONFIG_PARAMETER_SIZE)

    # --- the hooks: ntoskrnl.exe -----------------------------------------------------------------

    @api("ntoskrnl", "IofCompleteRequest", 2)
    def IofCompleteRequest(self, irp, boost):
        self.log("IofCompleteRequest", irp=irp, boost=boost & 0xFF)
        self.completed_irps.append((irp, boost & 0xFF))

    @api("ntoskrnl", "DbgPrintEx", 4)
    def DbgPrintEx(self, component, level, fmt, arg):
        fmt_s = self.emu.read_mem_string(fmt, 1, 512) if fmt else ""
        text = fmt_s
        if fmt_s == "%s" and arg:
            text = self.emu.read_mem_string(arg, 1, 512)
        self.dbgprints.append((component & 0xFFFFFFFF, level & 0xFFFFFFFF, text))
        self.log("DbgPrintEx", component=component & 0xFFFFFFFF, level=level & 0xFFFFFFFF, text=text)
        return len(text)

    @api("ntoskrnl", "EtwRegister", 4)
    def EtwRegister(self, provider_id, callback, context, p_handle):
        self._require_irql("EtwRegister", L.PASSIVE_LEVEL)
        guid = uuid.UUID(bytes_le=self.read(provider_id, 16))
        self.log("EtwRegister", guid=str(guid), callback=callback, context=context)
        if self.etw["registered"]:
            self.violation("EtwRegister called twice")
        if callback and not self.in_image(callback):
            self.violation(f"ETW enable callback {callback:#x} is outside the image")
        if "EtwRegister" in self.fail:
            self.w64(p_handle, 0)
            return self.fail["EtwRegister"]
        reg_handle = 0x4E42534845540001  # opaque REGHANDLE
        self.w64(p_handle, reg_handle)
        self.etw.update(registered=True, guid=guid, enable_callback=callback,
                        callback_context=context, reg_handle=reg_handle)
        if self.session_at_load:
            # A session that already listens: ETW calls the enable callback before
            # EtwRegister returns.
            level, any_kw = self.session_at_load
            self.etw["session"] = (level, any_kw, 0)
            source = self.alloc(16)
            self.write(source, uuid.uuid4().bytes_le)
            self.etw["enable_in_register"] = self._inject(
                [(callback, [source, L.EVENT_CONTROL_CODE_ENABLE_PROVIDER, level, any_kw, 0, 0, context])],
                L.STATUS_SUCCESS)
        return L.STATUS_SUCCESS

    def _check_reg_handle(self, name, handle):
        if not self.etw["registered"] or handle != self.etw["reg_handle"]:
            self.violation(f"{name}: {handle:#x} is not the registered REGHANDLE")
        if self.etw["unregistered"]:
            self.violation(f"{name} after EtwUnregister")

    @api("ntoskrnl", "EtwSetInformation", 4)
    def EtwSetInformation(self, handle, info_class, info, length):
        self.log("EtwSetInformation", handle=handle, info_class=info_class & 0xFFFFFFFF, length=length)
        self._check_reg_handle("EtwSetInformation", handle)
        info_class &= 0xFFFFFFFF
        if info_class == 2:  # EventProviderSetTraits
            blob = self.read(info, length & 0xFFFFFFFF)
            try:
                self.etw["traits"].append(tl.decode_provider_metadata(blob))
            except tl.DecodeError as e:
                self.violation(f"EtwSetInformation: provider traits do not decode: {e}")
        return L.STATUS_SUCCESS

    @api("ntoskrnl", "EtwUnregister", 1)
    def EtwUnregister(self, handle):
        self._require_irql("EtwUnregister", L.PASSIVE_LEVEL)
        self.log("EtwUnregister", handle=handle)
        self._check_reg_handle("EtwUnregister", handle)
        self.etw["unregistered"] = True
        return L.STATUS_SUCCESS

    def session_accepts(self, level, keyword) -> bool:
        s = self.etw["session"]
        if s is None:
            return False
        s_level, any_kw, all_kw = s
        if level and level > s_level:
            return False
        if keyword and any_kw and not keyword & any_kw:
            return False
        if keyword and all_kw and keyword & all_kw != all_kw:
            return False
        return True

    @api("ntoskrnl", "EtwWriteTransfer", 6)
    def EtwWriteTransfer(self, handle, desc_ptr, activity, related, count, data):
        self._check_reg_handle("EtwWriteTransfer", handle)
        ev_id, version, channel, level, opcode, task, keyword = struct.unpack(
            "<HBBBBHQ", self.read(desc_ptr, L.EVENT_DESCRIPTOR_SIZE))
        count &= 0xFFFFFFFF
        descs = [struct.unpack("<QII", self.read(data + 16 * i, 16)) for i in range(count)]
        types = [d[2] for d in descs]
        provider = None
        meta = None
        payload = b""
        for ptr, size, kind in descs:
            blob = self.read(ptr, size) if size else b""
            if kind == 2:  # EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA
                provider = tl.decode_provider_metadata(blob)["name"]
            elif kind == 1:  # EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA
                meta = tl.decode_event_metadata(blob)
            elif kind == 0:
                payload += blob
            else:
                self.violation(f"EtwWriteTransfer: data descriptor type {kind}")
        if meta is None:
            self.violation("EtwWriteTransfer without TraceLogging event metadata")
            return L.STATUS_SUCCESS
        values = tl.decode_payload(meta["fields"], payload)
        ev = Event(name=meta["name"], id=ev_id, version=version, channel=channel, level=level,
                   opcode=opcode, task=task, keyword=keyword, fields=meta["fields"], values=values,
                   provider=provider, descriptor_types=types)
        self.events.append(ev)
        self.log("EtwWriteTransfer", event=ev.name)
        if not self.session_accepts(level, keyword):
            self.violation(f"event {ev.name} (level {level}, keyword {keyword:#x}) written while no "
                           f"session asked for it (session {self.etw['session']})")
        return L.STATUS_SUCCESS

    @api("ntoskrnl", "ExAllocatePool2", 3)
    def ExAllocatePool2(self, flags, size, tag):
        tag &= 0xFFFFFFFF
        if flags & L.POOL_FLAG_PAGED and self.irql > L.PASSIVE_LEVEL + 1:
            self.violation("paged pool allocation above APC_LEVEL")
        if not flags & (L.POOL_FLAG_NON_PAGED | L.POOL_FLAG_PAGED | 0x80):
            self.violation(f"ExAllocatePool2 flags {flags:#x} name no pool type")
        if tag == 0:
            self.violation("ExAllocatePool2 with tag 0")
        if size == 0 or size > 0x1000000:
            self.violation(f"ExAllocatePool2 size {size:#x}")
            return 0
        self.pool_calls += 1
        if self.pool_calls in self.fail.get("ExAllocatePool2", ()):
            self.log("ExAllocatePool2", flags=flags, size=size, failed=True)
            return 0
        canary = 16
        addr = self.alloc(size + canary, align=L.POOL_ALIGNMENT,
                          fill=0 if not flags & L.POOL_FLAG_UNINITIALIZED else 0xCD)
        self.write(addr + size, b"\xFB" * canary)
        self.pool[addr] = {"size": size, "tag": tag, "flags": flags, "irql": self.irql}
        self.log("ExAllocatePool2", flags=flags, size=size, tag=tag.to_bytes(4, "little").decode("latin-1"),
                 addr=addr)
        return addr

    @api("ntoskrnl", "ExFreePoolWithTag", 2)
    def ExFreePoolWithTag(self, p, tag):
        tag &= 0xFFFFFFFF
        self.log("ExFreePoolWithTag", addr=p, tag=tag.to_bytes(4, "little").decode("latin-1"))
        block = self.pool.pop(p, None)
        if block is None:
            self.violation(f"ExFreePoolWithTag({p:#x}): not a live pool block")
            return
        if block["tag"] != tag:
            self.violation(f"ExFreePoolWithTag({p:#x}) with tag {tag:#x}, allocated with {block['tag']:#x}")
        if self.read(p + block["size"], 16) != b"\xFB" * 16:
            self.violation(f"pool block {p:#x} ({block['size']} bytes): written past its end")
        self.write(p, b"\xDF" * block["size"])  # poison: a use after free reads garbage
        block["addr"] = p
        self.pool_freed.append(block)

    @api("ntoskrnl", "KeAcquireSpinLockRaiseToDpc", 1)
    def KeAcquireSpinLockRaiseToDpc(self, lock):
        if lock in self.held_locks:
            self.violation(f"spin lock {lock:#x} acquired twice (deadlock on one CPU)")
        if self.irql > L.DISPATCH_LEVEL:
            self.violation("KeAcquireSpinLockRaiseToDpc above DISPATCH_LEVEL")
        if self.u64(lock) != 0:
            self.violation(f"spin lock {lock:#x} is not in the released state (value {self.u64(lock):#x})")
        old = self.irql
        self.held_locks[lock] = old
        self.w64(lock, 1)
        self.irql = L.DISPATCH_LEVEL
        return old

    @api("ntoskrnl", "KeReleaseSpinLock", 2)
    def KeReleaseSpinLock(self, lock, new_irql):
        new_irql &= 0xFF
        old = self.held_locks.pop(lock, None)
        if old is None:
            self.violation(f"KeReleaseSpinLock({lock:#x}): not held")
        elif old != new_irql:
            self.violation(f"KeReleaseSpinLock({lock:#x}) to IRQL {new_irql}, acquired at {old}")
        self.w64(lock, 0)
        self.irql = new_irql

    @api("ntoskrnl", "KeBugCheckEx", 5)
    def KeBugCheckEx(self, code, p1, p2, p3, p4):
        code &= 0xFFFFFFFF
        info = {"code": f"{code:#010x}", "p1": p1, "p2": p2, "p3": p3, "p4": p4}
        if code == L.NBSH_BUGCHECK:
            info["meaning"] = "Rust panic in nbshm"
            info["line"], info["column"] = p1, p2
            try:
                info["file"] = self.read(p3, min(p4, 512)).decode("utf-8", "replace")
            except Exception:
                info["file"] = f"<unreadable {p3:#x}>"
        self.bugchecks.append(info)
        self.log("KeBugCheckEx", code=code)
        self.emu.stop()

    @api("ntoskrnl", "KeFlushQueuedDpcs", 0)
    def KeFlushQueuedDpcs(self):
        self._require_irql("KeFlushQueuedDpcs", L.PASSIVE_LEVEL)
        self.log("KeFlushQueuedDpcs")

    @api("ntoskrnl", "KeGetCurrentProcessorNumberEx", 1)
    def KeGetCurrentProcessorNumberEx(self, p_number):
        if p_number:
            self.write(p_number, struct.pack("<HBB", 0, self.cpu, 0))
        return self.cpu

    @api("ntoskrnl", "KeQueryMaximumProcessorCountEx", 1)
    def KeQueryMaximumProcessorCountEx(self, group):
        group &= 0xFFFF
        self.log("KeQueryMaximumProcessorCountEx", group=group)
        if group not in (0, L.ALL_PROCESSOR_GROUPS):
            return 0
        return self.max_processors

    # --- NDIS's side of the lifecycle ---------------------------------------------------------------

    @property
    def chars(self):
        return self.ndis["chars"]

    def handler(self, name):
        return self.chars["handlers"][name]

    def _new_module(self, *, if_index=17, base_if_index=12, media=L.NDIS_MEDIUM_802_3,
                    adapter="Emulated VMQ Ethernet Adapter #1", header=None) -> ModuleRecord:
        handle = self.alloc(0x80, fill=0xAF)  # opaque filter module block
        p = self.alloc(L.NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4)
        t, rev, size = header or (L.NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS,
                                  L.NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4,
                                  L.NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4)
        self.write(p, struct.pack("<BBH", t, rev, size))
        a = L.ATTACH
        self.w32(p + a["IfIndex"], if_index)
        self.w64(p + a["NetLuid"], 0x0006000000000000 | if_index)
        self.w64(p + a["FilterModuleGuidName"],
                 self.unicode_string("\\DEVICE\\{5D2A9F3E-8C41-4E57-9A0B-7E1C2D3F4A5B}-"
                                     "{cb5200c2-de85-4fab-aff4-ae9256259c70}-0000"))
        self.w32(p + a["BaseMiniportIfIndex"], base_if_index)
        self.w64(p + a["BaseMiniportInstanceName"], self.unicode_string(adapter))
        self.w64(p + a["BaseMiniportName"],
                 self.unicode_string("\\DEVICE\\{5D2A9F3E-8C41-4E57-9A0B-7E1C2D3F4A5B}"))
        self.w32(p + a["MediaConnectState"], 1)
        self.w32(p + a["MediaDuplexState"], 2)
        self.w64(p + a["XmitLinkSpeed"], 10_000_000_000)
        self.w64(p + a["RcvLinkSpeed"], 10_000_000_000)
        self.w32(p + a["MiniportMediaType"], media)
        self.w32(p + a["MiniportPhysicalMediaType"], 14)
        self.write(p + a["MacAddressLength"], struct.pack("<H", 6) + bytes.fromhex("00155d010203"))
        self.w32(p + a["LowerIfIndex"], base_if_index)
        rec = ModuleRecord(filter_handle=handle, attach_params=p)
        rec.if_index, rec.base_if_index, rec.adapter, rec.media = if_index, base_if_index, adapter, media
        self.modules[handle] = rec
        return rec

    def attach(self, **kw) -> ModuleRecord:
        rec = self._new_module(**kw)
        before = self.read(rec.attach_params, L.NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4)
        status = self.call(self.handler("AttachHandler"),
                           [rec.filter_handle, self.ndis["driver_context"], rec.attach_params],
                           what="FilterAttach") & 0xFFFFFFFF
        rec.attach_status = status
        if self.read(rec.attach_params, len(before)) != before:
            self.violation("FilterAttach modified the attach parameters")
        if status == L.NDIS_STATUS_SUCCESS:
            if rec.ctx is None:
                self.violation("FilterAttach succeeded without NdisFSetAttributes")
            rec.state = "paused"
        else:
            rec.state = "detached"
            del self.modules[rec.filter_handle]
        return rec

    def restart(self, rec: ModuleRecord):
        p = self.alloc(L.RESTART_PARAMETERS_SIZE)
        self.write(p, struct.pack("<BBH", L.NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS,
                                  L.NDIS_FILTER_RESTART_PARAMETERS_REVISION_1,
                                  L.NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1))
        self.w32(p + L.RESTART["MiniportMediaType"], rec.media)
        self.w32(p + L.RESTART["MiniportPhysicalMediaType"], 14)
        attrs = self.alloc(0x40, fill=0x5A)  # restart attributes an observer must leave alone
        self.w64(p + L.RESTART["RestartAttributes"], attrs)
        self.w32(p + L.RESTART["LowerIfIndex"], rec.base_if_index)
        before = self.read(p, L.RESTART_PARAMETERS_SIZE) + self.read(attrs, 0x40)
        rec.state = "restarting"
        status = self.call(self.handler("RestartHandler"), [rec.ctx, p], what="FilterRestart") & 0xFFFFFFFF
        if self.read(p, L.RESTART_PARAMETERS_SIZE) + self.read(attrs, 0x40) != before:
            self.violation("FilterRestart modified the restart parameters or attributes")
        rec.state = "running" if status == L.NDIS_STATUS_SUCCESS else "paused"
        return status

    def pause(self, rec: ModuleRecord, reason=L.NDIS_PAUSE_NDIS_INTERNAL):
        p = self.alloc(L.PAUSE_PARAMETERS_SIZE)
        self.write(p, struct.pack("<BBHII", L.NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS,
                                  L.NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1,
                                  L.NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1, 0, reason))
        rec.state = "pausing"
        rec.pause_pending = True
        status = self.call(self.handler("PauseHandler"), [rec.ctx, p], what="FilterPause") & 0xFFFFFFFF
        if status == L.NDIS_STATUS_SUCCESS:
            if rec.pause_completed:
                self.violation("FilterPause returned SUCCESS after calling NdisFPauseComplete")
            rec.pause_pending = False
            rec.state = "paused"
        elif status == L.NDIS_STATUS_PENDING:
            if rec.state == "paused":  # completed from inside FilterPause itself
                self.violation("FilterPause called NdisFPauseComplete and returned PENDING")
        else:
            self.violation(f"FilterPause returned {status:#x} (a pause cannot fail)")
        return status

    def detach(self, rec: ModuleRecord):
        if rec.state != "paused":
            raise ValueError("NDIS detaches only paused modules")
        self.call(self.handler("DetachHandler"), [rec.ctx], what="FilterDetach")
        rec.state = "detached"

    def unload(self):
        unload = self.u64(self.driver_object + L.DRIVER_OBJECT_DRIVER_UNLOAD)
        if not unload:
            raise EmulationFailure("DriverObject->DriverUnload is NULL")
        self.call(unload, [self.driver_object], what="DriverUnload")
        results = {}
        if "detach_in_deregister" in self.ndis:
            results["detach_in_deregister"] = True
        return results

    # --- control device (the I/O manager's side) -------------------------------------------------

    def irp(self, major, *, code=0, data=b"", out_len=0, system_buffer=True, buffer_len=None, guard=64):
        """Sends one IRP to the dispatch routine the driver registered for `major` (PASSIVE_LEVEL,
        METHOD_BUFFERED as the I/O manager sets it up: a system buffer of max(in, out) bytes
        holding the input). Checks the IRP is completed exactly once, with the status the
        routine returns, `Information` within the output length, and nothing written past the
        buffer. `buffer_len` allocates a system buffer of another size than the I/O manager would
        (a negative control for the overrun check). Returns (status, information, output bytes)."""
        if not self.device or self.device["deregistered"]:
            raise EmulationFailure("no control device is registered")
        fn = self.device["MajorFunctions"][major] if self.device["MajorFunctions"] else 0
        if not fn:
            raise EmulationFailure(f"no dispatch routine for major function {major:#x}")
        length = max(len(data), out_len) if buffer_len is None else buffer_len
        buf = 0
        if length and system_buffer:
            buf = self.alloc(length + guard)
            self.write(buf, (data + b"\0" * length)[:length])
            self.write(buf + length, b"\xCC" * guard)
        irp = self.alloc(L.IRP_SIZE, fill=0)
        stack = self.alloc(L.IO_STACK_LOCATION_SIZE, fill=0)
        self.write(irp + L.IRP["Type"], struct.pack("<HH", L.IO_TYPE_IRP, L.IRP_SIZE))
        self.w64(irp + L.IRP["SystemBuffer"], buf)
        self.write(irp + L.IRP["RequestorMode"], b"\x01")  # UserMode
        self.write(irp + L.IRP["StackCount"], b"\x01\x01")
        self.w64(irp + L.IRP["CurrentStackLocation"], stack)
        self.write(stack + L.IO_STACK["MajorFunction"], bytes([major]))
        if major == L.IRP_MJ_DEVICE_CONTROL:
            self.w32(stack + L.IO_STACK["OutputBufferLength"], out_len)
            self.w32(stack + L.IO_STACK["InputBufferLength"], len(data))
            self.w32(stack + L.IO_STACK["IoControlCode"], code)
        self.w64(stack + L.IO_STACK["DeviceObject"], self.device["object"])
        done_before = len(self.completed_irps)
        status = self.call(fn, [self.device["object"], irp], what=L.IRP_MJ_NAMES.get(major, "IRP")) \
            & 0xFFFFFFFF
        completions = [c for c in self.completed_irps[done_before:] if c[0] == irp]
        problems = []
        if len(completions) != 1:
            problems.append(f"the IRP was completed {len(completions)} times (once expected)")
        iosb = irp + L.IRP["IoStatus"]
        if self.u32(iosb + L.IO_STATUS_BLOCK["Status"]) != status:
            problems.append(f"IoStatus.Status {self.u32(iosb):#x} differs from the returned {status:#x}")
        info = self.u64(iosb + L.IO_STATUS_BLOCK["Information"])
        if info > out_len:
            problems.append(f"IoStatus.Information {info} exceeds the output length {out_len}")
        if buf and self.read(buf + length, guard) != b"\xCC" * guard:
            problems.append("the driver wrote past the system buffer")
        if problems:
            raise EmulationFailure("; ".join(problems))
        out = self.read(buf, min(info, out_len)) if buf and info else b""
        return status, info, out

    def ioctl(self, code, data=b"", out_len=0, **kw):
        return self.irp(L.IRP_MJ_DEVICE_CONTROL, code=code, data=data, out_len=out_len, **kw)

    # --- ETW sessions ------------------------------------------------------------------------------

    def enable(self, level=5, any_keyword=0xFFFFFFFFFFFFFFFF, all_keyword=0,
               code=L.EVENT_CONTROL_CODE_ENABLE_PROVIDER):
        cb = self.etw["enable_callback"]
        if not cb:
            raise EmulationFailure("EtwRegister received no enable callback")
        if code == L.EVENT_CONTROL_CODE_DISABLE_PROVIDER:
            self.etw["session"] = None
        elif code == L.EVENT_CONTROL_CODE_CAPTURE_STATE:
            # A capture-state request asks an enabled provider for its state; it does not
            # change what the session listens to.
            if self.etw["session"] is None:
                raise ValueError("capture state needs an enabled session")
            level, any_keyword, all_keyword = self.etw["session"]
        else:
            self.etw["session"] = (level, any_keyword, all_keyword)
        source = self.alloc(16)
        self.write(source, uuid.uuid4().bytes_le)
        self.call(cb, [source, code, level, any_keyword],
                  stack_args=[all_keyword, 0, self.etw["callback_context"]],
                  what=f"ETW enable callback (code {code})")

    def disable(self):
        self.enable(level=0, any_keyword=0, code=L.EVENT_CONTROL_CODE_DISABLE_PROVIDER)

    def events_named(self, name, since=0):
        return [e for e in self.events[since:] if e.name == name]

    # --- the data path, as NDIS drives it ------------------------------------------------------------

    def receive(self, rec: ModuleRecord, chain: Chain, flags, *, port=0, cpu=0, count=None):
        chain.snapshot_before = self.snapshot(chain)
        chain.resources = bool(flags & L.NDIS_RECEIVE_FLAGS_RESOURCES)
        self._give(chain)
        irql = L.DISPATCH_LEVEL if flags & L.NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL else L.PASSIVE_LEVEL
        n = chain.count if count is None else count
        mark = len(self.handoffs)
        self.call(self.handler("ReceiveNetBufferListsHandler"), [rec.ctx, chain.head, port, n],
                  stack_args=[flags], irql=irql, cpu=cpu, what="FilterReceiveNetBufferLists")
        if chain.head in self.owned_by_driver:
            if chain.resources:
                # RESOURCES: the NBLs come back to the miniport when the callback returns.
                self._take_back(chain.head)
            else:
                self.violation("FilterReceiveNetBufferLists returned still holding the NBLs "
                               "(queued receives are not expected of a monitor)")
        if self.snapshot(chain) != chain.snapshot_before:
            self.violation("the receive chain changed during FilterReceiveNetBufferLists")
        return self.handoffs[mark:]

    def return_nbls(self, rec: ModuleRecord, chain: Chain, flags, *, cpu=0):
        """NDIS hands an indicated receive back to the filter (FilterReturnNetBufferLists)."""
        if self.indicated_up.pop(chain.head, None) is None:
            raise ValueError("that chain was not indicated up")
        self._give(chain)
        chain.resources = False
        chain.snapshot_before = self.snapshot(chain)
        irql = L.DISPATCH_LEVEL if flags & L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL else L.PASSIVE_LEVEL
        mark = len(self.handoffs)
        self.call(self.handler("ReturnNetBufferListsHandler"), [rec.ctx, chain.head, flags],
                  irql=irql, cpu=cpu, what="FilterReturnNetBufferLists")
        if chain.head in self.owned_by_driver:
            self.violation("FilterReturnNetBufferLists kept the NBLs")
        return self.handoffs[mark:]

    def send(self, rec: ModuleRecord, chain: Chain, flags, *, port=0, cpu=0, allow_status_write=False):
        chain.snapshot_before = self.snapshot(chain)
        chain.resources = False
        self._give(chain)
        if allow_status_write:
            self.allowed_writes = {nbl + L.NBL_STATUS for nbl in chain.nbls}
        irql = L.DISPATCH_LEVEL if flags & L.NDIS_SEND_FLAGS_DISPATCH_LEVEL else L.PASSIVE_LEVEL
        mark = len(self.handoffs)
        try:
            self.call(self.handler("SendNetBufferListsHandler"), [rec.ctx, chain.head, port, flags],
                      irql=irql, cpu=cpu, what="FilterSendNetBufferLists")
        finally:
            self.allowed_writes = set()
        if chain.head in self.owned_by_driver:
            self.violation("FilterSendNetBufferLists kept the NBLs (queued sends are not expected)")
        return self.handoffs[mark:]

    def send_complete(self, rec: ModuleRecord, chain: Chain, flags, *, cpu=0):
        """The miniport completed a send the filter passed down."""
        if self.passed_down.pop(chain.head, None) is None:
            raise ValueError("that chain was not passed down")
        self._give(chain)
        chain.snapshot_before = self.snapshot(chain)
        irql = L.DISPATCH_LEVEL if flags & L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL else L.PASSIVE_LEVEL
        mark = len(self.handoffs)
        self.call(self.handler("SendNetBufferListsCompleteHandler"), [rec.ctx, chain.head, flags],
                  irql=irql, cpu=cpu, what="FilterSendNetBufferListsComplete")
        if chain.head in self.owned_by_driver:
            self.violation("FilterSendNetBufferListsComplete kept the NBLs")
        return self.handoffs[mark:]

    def hand_back_regrouped(self, rec: ModuleRecord, kind: str, groups, flags):
        """NDIS may return receives, or complete sends, in other groupings than it handed them
        out: `groups` lists NBL addresses (from chains indicated up / passed down); each group is
        relinked into one chain and handed back with FilterReturnNetBufferLists ('return') or
        FilterSendNetBufferListsComplete ('complete')."""
        pending = self.indicated_up if kind == "return" else self.passed_down
        by_nbl = {}
        for head, entry in pending.items():
            chain = entry[0]
            for i, nbl in enumerate(chain.nbls):
                by_nbl[nbl] = (head, chain, i)
        wanted = [nbl for g in groups for nbl in g]
        if sorted(wanted) != sorted(by_nbl) or len(set(wanted)) != len(wanted):
            raise ValueError("groups must cover every outstanding NBL exactly once")
        pending.clear()
        results = []
        for group in groups:
            ranges, nbs = [], []
            for a, b in zip(group, group[1:] + [0]):
                self.w64(a + L.NBL_NEXT, b)
                _head, chain, i = by_nbl[a]
                nbs.append(chain.nbs[i])
                ranges.append((a, L.NBL_SIZE))
                ranges += [r for r in chain.ranges if any(r[0] == nb for nb in chain.nbs[i])]
            part = Chain(head=group[0], nbls=list(group), nbs=nbs, segments=[], ranges=ranges, spec=[])
            part.resources = False
            self._give(part)
            part.snapshot_before = self.snapshot(part)
            mark = len(self.handoffs)
            trace_mark = len(self.trace)
            if kind == "return":
                irql = L.DISPATCH_LEVEL if flags & L.NDIS_RETURN_FLAGS_DISPATCH_LEVEL else L.PASSIVE_LEVEL
                self.call(self.handler("ReturnNetBufferListsHandler"), [rec.ctx, part.head, flags],
                          irql=irql, what="FilterReturnNetBufferLists (regrouped)")
            else:
                irql = L.DISPATCH_LEVEL if flags & L.NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL else L.PASSIVE_LEVEL
                self.call(self.handler("SendNetBufferListsCompleteHandler"), [rec.ctx, part.head, flags],
                          irql=irql, what="FilterSendNetBufferListsComplete (regrouped)")
            if part.head in self.owned_by_driver:
                self.violation("the driver kept NBLs it was handed back")
            results.append((part, self.handoffs[mark:], [n for n, _ in self.trace[trace_mark:]]))
        return results

    def fire_timer(self, timer):
        t = self.timers[timer]
        if not t["armed"]:
            raise ValueError("timer is not armed")
        ctx = t.get("set_context") or t["context"]
        self.call(t["function"], [0, ctx, 0, 0], irql=L.DISPATCH_LEVEL, what="usage timer (DPC)")
        if not t.get("period"):
            t["armed"] = False

    # --- end-of-life checks ---------------------------------------------------------------------

    def leaks(self) -> list[str]:
        out = []
        for addr, b in self.pool.items():
            out.append(f"pool block {addr:#x}: {b['size']} bytes, tag "
                       f"{b['tag'].to_bytes(4, 'little').decode('latin-1')!r} never freed")
        for t, info in self.timers.items():
            if not info["freed"]:
                out.append(f"timer object {t:#x} never freed")
        for h, cfg in self.config_handles.items():
            if not cfg["closed"]:
                out.append(f"configuration handle {h:#x} ({cfg['key']}) never closed")
        if self.device and not self.device["deregistered"]:
            out.append("control device never deregistered")
        for addr, b in self.pool.items():
            if self.read(addr + b["size"], 16) != b"\xFB" * 16:
                out.append(f"pool block {addr:#x}: written past its end")
        return out
