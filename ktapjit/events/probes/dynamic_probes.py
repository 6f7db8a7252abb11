"""Dynamic events: uprobes, uretprobes and USDT sites created through tracefs
``uprobe_events``, and the ``kprobe_events`` text for kernels that have kprobes.

A dynamic event, once created, is an ordinary tracepoint: it appears under
``events/GROUP/EVENT/`` with an ``id`` and a ``format`` that the rest of ktapjit
reads like any other (``read_format``, ``perf_ring.tracepoint``). Its fields are
the probe address (``__probe_ip``; a return probe has ``__probe_func`` and
``__probe_ret_ip``), then the fetch args in order.

A glob's functions are the sites of one event (:meth:`DynamicProbes.add_sites`,
probe_sites.py): created, checked with trial opens (:func:`trial_open`) so
that functions the kernel cannot probe are found and left out
(``DynamicProbes.refused``), and taken down together.

Every event ktapjit creates lives in the group ``ktapjit_<pid>``. Cleanup:

- :class:`DynamicProbes` is a context manager that removes what it created on
  every exit path (exceptions and KeyboardInterrupt included), with an
  ``atexit`` hook as a second line for paths that skip ``__exit__``;
- :func:`sweep_stale` removes ``ktapjit_<pid>`` groups whose process is gone
  (a run killed with SIGKILL); call it at start;
- :func:`remove_all` removes one group.

Events are removed with ``-:GROUP/EVENT`` lines appended to the control file:
the file is never opened with O_TRUNC, which would delete every uprobe of the
system, other tools' included.

A perf event open on a dynamic event keeps it busy (EBUSY on removal): close
the PerfSession before the DynamicProbes context ends.

Fetch args are written as ktap wrote them, which is the kernel's syntax, with
a few translations (see :func:`translate_fetchargs`): ``$argN`` becomes the ABI
argument register on uprobes (the kernel allows ``$argN`` only on kprobes at a
function entry), x86 register names may be spelled ``%rdi``/``%edi`` as well as
``%di``, unnamed args are named ``arg1``, ``arg2``... (the kernel's own default),
and names and ``$retval`` are checked before the kernel sees them.
"""

from __future__ import annotations

import atexit
import errno
import functools
import os
import re
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.probes.elf import (
    EM_AARCH64, EM_X86_64, ElfError, ElfFile, SdtArg, SdtNote, is_glob, is_hex_offset, open_elf,
)
from ktapjit.events.records.perf_ring import tracepoint_id
from ktapjit.events.probes.probe_sites import SITE_FIELD, SiteTable, site_fetcharg
from ktapjit.events.errors import EventsError, TracefsPermissionError
from ktapjit.events.tracefs import tracefs_root

__all__ = [
    "DynamicProbeError",
    "KprobesUnavailable",
    "ProbeEvent",
    "Availability",
    "DynamicProbes",
    "GROUP_PREFIX",
    "group_name",
    "event_name",
    "translate_fetchargs",
    "uprobe_definition",
    "kprobe_definition",
    "kprobe_definition_for",
    "sdt_fetchargs",
    "kprobes_available",
    "list_dynamic_events",
    "remove_all",
    "sweep_stale",
    "uprobe_pmu_type",
    "uprobe_pmu_event",
    "uprobe_pmu_format",
    "uprobe_pmu_format_text",
]

GROUP_PREFIX = "ktapjit_"
# The kernel's MAX_EVENT_NAME_LEN is 64 with the NUL: names hold at most 63.
MAX_NAME = 63
UPROBE_EVENTS = "uprobe_events"
KPROBE_EVENTS = "kprobe_events"
RETURN_SUFFIX = "__return"  # perf probe's convention for return probes

# Fields the kernel puts before the fetch args, and the common ones: a fetch
# arg may not take these names.
_RESERVED = frozenset({"__probe_ip", "__probe_func", "__probe_ret_ip", "common_type",
                       "common_flags", "common_preempt_count", "common_pid"})


class DynamicProbeError(EventsError):
    """A dynamic event could not be created or removed; ``str()`` is one line."""


class KprobesUnavailable(DynamicProbeError):
    """This kernel has no kprobe_events."""


@dataclass(frozen=True)
class ProbeEvent:
    """One dynamic event ktapjit created: trace it as tracepoint (system, event)."""

    system: str  # the group, ktapjit_<pid>
    event: str
    kind: str  # uprobe, uretprobe, usdt, kprobe, kretprobe
    definition: str  # the line written to the control file
    control: str  # uprobe_events or kprobe_events
    target: str  # path:symbol, path:0xoffset, path:provider:name, function
    offset: Optional[int] = None  # file offset of a uprobe
    ref_ctr_offset: Optional[int] = None  # file offset of a USDT semaphore
    arg_names: tuple[str, ...] = ()
    site_table: Optional[SiteTable] = None  # a glob's probes in this one event (probe_sites)

    @property
    def pair(self) -> tuple[str, str]:
        return (self.system, self.event)

    @property
    def sites(self) -> tuple[str, ...]:
        """The probe names of a site event, by site index; () for others."""
        return self.site_table.names if self.site_table is not None else ()

    @property
    def is_return(self) -> bool:
        return self.kind in ("uretprobe", "kretprobe")


@dataclass(frozen=True)
class RefusedSite:
    """A function a glob matched that the kernel cannot probe: left out of
    its site event, and reported."""

    system: str
    event: str  # the probe name it would have had
    errno: int

    @property
    def shown(self) -> str:
        return self.event


class Availability:
    """Truthy when available; ``reason`` says why not (one line) otherwise."""

    __slots__ = ("ok", "reason")

    def __init__(self, ok: bool, reason: str = ""):
        self.ok = ok
        self.reason = reason

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"Availability({self.ok}, {self.reason!r})"


# --- names -----------------------------------------------------------------------------------

def group_name(pid: Optional[int] = None) -> str:
    """``ktapjit_<pid>``: the group of this run's dynamic events."""
    return f"{GROUP_PREFIX}{os.getpid() if pid is None else pid}"


_GROUP_RE = re.compile(rf"^{GROUP_PREFIX}(\d+)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def event_name(base: str, is_return: bool = False) -> str:
    """A valid event name from a symbol, a path or an offset: characters other
    than letters, digits and ``_`` become ``_``; return probes end in ``__return``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", base) or "probe"
    if name[0].isdigit():
        name = "_" + name
    suffix = RETURN_SUFFIX if is_return else ""
    return name[:MAX_NAME - len(suffix) - 4] + suffix  # room for a _NNN uniquifier


def target_name(path: str, target, is_return: bool = False) -> str:
    """The probe name of one uprobe target (an elf.ResolvedSymbol): its
    symbol, or FILE_0xOFFSET."""
    return event_name(target.symbol.name if target.symbol else f"{Path(path).name}_{target.offset:#x}", is_return)


def sites_event_name(path: str, is_return: bool = False) -> str:
    """The event holding a glob's sites in ``path``: ``libc_so_6__sites``."""
    return event_name(f"{Path(path).name}__sites", is_return)


def is_glob_symbol(symbol: str) -> bool:
    """Whether a uprobe's SYMBOL is a glob, as ElfFile.resolve reads it."""
    return not is_hex_offset(symbol) and is_glob(symbol)


def unique_name(base: str, *taken) -> str:
    """``base``, or ``base_1``, ``base_2``... the first that none of the
    ``taken`` collections holds: how a second event of one name is named."""
    name, n = base, 0
    while any(name in names for names in taken):
        n += 1
        name = f"{base}_{n}"
    return name


def _unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats made unique in order (two static functions of
    one name), as separate events would be named."""
    seen: set[str] = set()
    out = []
    for base in names:
        name = unique_name(base, seen)
        seen.add(name)
        out.append(name)
    return out


# What the kernel answers about one site it cannot probe (ENOTSUPP for an
# instruction uprobes refuse); anything else (no permission, no memory, no
# fds) concerns every site alike, and halving would only repeat it.
_SITE_REFUSALS = frozenset({abi.ENOTSUPP, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOENT})


def trial_open(root: Path, group: str, event: str) -> Optional[int]:
    """Open ``group/event`` once with perf, disabled, on one CPU and for all
    processes, which places every uprobe of it in every process mapping its
    file: None when the kernel accepts them all, else its errno. A refusal
    that is not about one site raises."""
    attr = abi.perf_event_attr(type=abi.PERF_TYPE_TRACEPOINT, config=tracepoint_id(group, event, root),
                               sample_period=1, disabled=1)
    try:
        fd = abi.perf_event_open(attr, -1, min(os.sched_getaffinity(0)))
    except abi.PerfError as exc:
        if exc.errno in _SITE_REFUSALS:
            return exc.errno
        raise DynamicProbeError(f"cannot open {group}:{event}: {abi.refusal_reason(exc.errno)}") from None
    os.close(fd)
    return None


# --- fetch args ------------------------------------------------------------------------------

_X86_REGS = {
    "ax": ("ax", 8), "bx": ("bx", 8), "cx": ("cx", 8), "dx": ("dx", 8),
    "si": ("si", 8), "di": ("di", 8), "bp": ("bp", 8), "sp": ("sp", 8),
    "ip": ("ip", 8), "flags": ("flags", 8), "orig_ax": ("orig_ax", 8),
    "cs": ("cs", 8), "ss": ("ss", 8), "ds": ("ds", 8), "es": ("es", 8),
    "fs": ("fs", 8), "gs": ("gs", 8),
}
for _r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp"):
    _X86_REGS["r" + _r] = (_r, 8)
    _X86_REGS["e" + _r] = (_r, 4)
for _r, _l in (("ax", "al"), ("bx", "bl"), ("cx", "cl"), ("dx", "dl"),
               ("si", "sil"), ("di", "dil"), ("bp", "bpl"), ("sp", "spl")):
    _X86_REGS[_l] = (_r, 1)
_X86_REGS["rip"] = ("ip", 8)
for _n in range(8, 16):
    _X86_REGS[f"r{_n}"] = (f"r{_n}", 8)
    _X86_REGS[f"r{_n}d"] = (f"r{_n}", 4)
    _X86_REGS[f"r{_n}w"] = (f"r{_n}", 2)
    _X86_REGS[f"r{_n}b"] = (f"r{_n}", 1)
# 16-bit ax..sp share the kernel names already in the table (ax means the
# whole register to the kernel, as ktap scripts expect).

_ARM64_REGS = {f"x{n}": (f"x{n}", 8) for n in range(31)}
_ARM64_REGS.update({f"w{n}": (f"x{n}", 4) for n in range(31)})
_ARM64_REGS.update({"sp": ("sp", 8), "wsp": ("sp", 4), "pc": ("pc", 8), "pstate": ("pstate", 8),
                    "lr": ("x30", 8), "fp": ("x29", 8), "xzr": None, "wzr": None})

_ARG_REGS = {"x86_64": ("di", "si", "dx", "cx", "r8", "r9"),
             "aarch64": tuple(f"x{n}" for n in range(8))}

_MACHINE_BY_EM = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}


def _host_machine() -> str:
    m = os.uname().machine
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(m, m)


def _regs(machine: str) -> dict:
    if machine == "x86_64":
        return _X86_REGS
    if machine == "aarch64":
        return _ARM64_REGS
    raise DynamicProbeError(f"fetch args on {machine} are not supported (only x86_64 and aarch64)")


_TYPE_RE = re.compile(r"^(?:[sux](?:8|16|32|64)|char|string|ustring|symbol|symstr|%p[dD]|"
                      r"b\d+@\d+/\d+)(?:\[\d+\])?$")
_REG_IN_VALUE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)")


def _split_type(value: str) -> tuple[str, Optional[str]]:
    head, sep, tail = value.rpartition(":")
    if sep and head and _TYPE_RE.match(tail):
        return head, tail
    return value, None


def translate_fetchargs(fetchargs: Sequence[str], *, kind: str = "uprobe", is_return: bool = False,
                        machine: Optional[str] = None) -> list[str]:
    """ktap's fetch args (``a=%di:s32``, ``$retval``, ``+0(%si):string``,
    ``$arg1``, ``%rdi``) to the kernel's ``NAME=FETCHARG[:TYPE]`` list.

    ``kind`` is ``uprobe`` or ``kprobe``; ``machine`` is ``x86_64`` or
    ``aarch64`` (default: this machine's). Raises DynamicProbeError for what
    the kernel would reject with a less helpful message.
    """
    machine = machine or _host_machine()
    regs = _regs(machine)
    out: list[str] = []
    names: set[str] = set()
    for i, text in enumerate(fetchargs):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", text)
        name, value = (m.group(1), m.group(2)) if m else (None, text)
        if m is None and re.match(r"^[^\\(]*=", text):
            raise DynamicProbeError(f"bad fetch arg '{text}': the name before '=' must be an identifier")
        if not value:
            raise DynamicProbeError(f"fetch arg '{text}' has nothing to fetch")
        value, ftype = _split_type(value)
        implied_type = None

        if value == "$retval":
            if not is_return:
                raise DynamicProbeError(f"fetch arg '{text}': $retval exists only in %return probes")
        elif re.fullmatch(r"\$arg\d+", value):
            n = int(value[4:])
            if n < 1:
                raise DynamicProbeError(f"fetch arg '{text}': arguments count from $arg1")
            if kind == "uprobe":
                if is_return:
                    raise DynamicProbeError(
                        f"fetch arg '{text}': $argN is not available in a uprobe %return probe "
                        "(the argument registers are overwritten by then); use $retval")
                abi = _ARG_REGS.get(machine, ())
                if n > len(abi):
                    raise DynamicProbeError(
                        f"fetch arg '{text}': only $arg1..$arg{len(abi)} are in registers on {machine}")
                value = "%" + abi[n - 1]
        else:
            def fix_reg(mm: re.Match) -> str:
                nonlocal implied_type
                reg = mm.group(1)
                entry = regs.get(reg.lower())
                if entry is None:
                    raise DynamicProbeError(f"fetch arg '{text}': unknown register %{reg} on {machine}")
                kname, size = entry
                if size < 8 and mm.start() == 0 and mm.end() == len(value):
                    implied_type = f"s{size * 8}"
                return "%" + kname
            if "%" in value:
                value = _REG_IN_VALUE.sub(fix_reg, value)
        ftype = ftype or implied_type
        if name is None:
            name = f"arg{i + 1}"  # the kernel's own default name
        if name in _RESERVED or name.startswith("common_"):
            raise DynamicProbeError(f"fetch arg '{text}': the name '{name}' is reserved")
        if name in names:
            raise DynamicProbeError(f"fetch arg '{text}': the name '{name}' is used twice")
        names.add(name)
        out.append(f"{name}={value}" + (f":{ftype}" if ftype else ""))
    return out


def arg_names(kernel_args: Iterable[str]) -> tuple[str, ...]:
    return tuple(a.split("=", 1)[0] for a in kernel_args)


# --- USDT arguments ---------------------------------------------------------------------------

def sdt_fetchargs(note: SdtNote, machine: str, elf: Optional[ElfFile] = None) -> list[str]:
    """The USDT site's arguments as kernel fetch args ``arg1=...:s32 ...``.

    Register, immediate and base+displacement memory operands are supported on
    x86-64 and AArch64, and on x86-64 also ``symbol(%rip)`` (through the
    uprobe ``@+OFFSET`` fetch, relative to the probed file, when ``elf`` is
    given). Other operands raise DynamicProbeError."""
    out = []
    for i, arg in enumerate(note.args):
        fetch = _sdt_operand(arg, machine, note, elf)
        size = arg.size if arg.size in (1, 2, 4, 8) else 8
        ftype = f"{'s' if arg.signed else 'u'}{size * 8}"
        out.append(f"arg{i + 1}={fetch}:{ftype}")
    return out


def _imm(text: str, size: int) -> str:
    value = int(text, 0)
    if value < 0:
        value &= (1 << (8 * max(size, 1))) - 1
    return f"\\{value}"


def _sdt_operand(arg: SdtArg, machine: str, note: SdtNote, elf: Optional[ElfFile]) -> str:
    op = arg.operand.strip()
    where = f"USDT {note.provider}:{note.name} argument '{arg.text}'"
    regs = _regs(machine)

    def reg(name: str) -> str:
        entry = regs.get(name.lower().lstrip("%"))
        if entry is None:
            raise DynamicProbeError(f"{where}: unknown register {name}")
        return "%" + entry[0]

    if machine == "x86_64":
        if op.startswith("$"):
            try:
                return _imm(op[1:], arg.size)
            except ValueError:
                raise DynamicProbeError(f"{where}: unsupported immediate operand") from None
        if re.fullmatch(r"%\w+", op):
            return reg(op)
        m = re.fullmatch(r"([^()]*)\((%\w+)\)", op)
        if m:
            disp, base = m.group(1).strip(), m.group(2)
            if base.lower() == "%rip":
                return _rip_relative(disp, where, note, elf)
            try:
                d = int(disp, 0) if disp else 0
            except ValueError:
                raise DynamicProbeError(f"{where}: unsupported displacement '{disp}'") from None
            return f"{'+' if d >= 0 else '-'}{abs(d)}({reg(base)})"
        raise DynamicProbeError(f"{where}: unsupported operand (indexed addressing)")
    if machine == "aarch64":
        imm = op[1:] if op.startswith("#") else op
        if re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", imm):
            return _imm(imm, arg.size)
        if re.fullmatch(r"\w+", op):
            return reg(op)
        m = re.fullmatch(r"\[\s*(\w+)\s*(?:,\s*#?(-?(?:0x[0-9a-fA-F]+|\d+))\s*)?\]", op)
        if m:
            d = int(m.group(2), 0) if m.group(2) else 0
            return f"{'+' if d >= 0 else '-'}{abs(d)}({reg(m.group(1))})"
        raise DynamicProbeError(f"{where}: unsupported operand")
    raise DynamicProbeError(f"{where}: USDT arguments on {machine} are not supported")


def _rip_relative(disp: str, where: str, note: SdtNote, elf: Optional[ElfFile]) -> str:
    m = re.fullmatch(r"([A-Za-z_.$][\w.$@]*)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?", disp)
    if elf is None or m is None:
        raise DynamicProbeError(f"{where}: unsupported %rip-relative operand")
    name = m.group(1).split("@", 1)[0]
    sym = next((s for table in (".symtab", ".dynsym") for s in elf.symbols(table)
                if s.name == name and s.value), None)
    if sym is None:
        raise DynamicProbeError(f"{where}: symbol '{name}' is not in the file's symbol tables")
    vaddr = sym.value + (int(m.group(3), 0) * (-1 if m.group(2) == "-" else 1) if m.group(3) else 0)
    # uprobe '@+OFFSET' reads at (probe address - probe file offset + OFFSET):
    # an offset in the coordinates of the probe's own mapping.
    return f"@+{vaddr - (note.pc - note.pc_offset)}"


# --- definitions (pure) ----------------------------------------------------------------------

def uprobe_definition(group: str, event: str, path: str, offset: int, *, is_return: bool = False,
                      fetchargs: Sequence[str] = (), ref_ctr_offset: Optional[int] = None) -> str:
    """The uprobe_events line: ``p:GROUP/EVENT PATH:0xOFF[(0xREF)] ARGS`` (``r:``
    for a return probe). ``fetchargs`` are kernel syntax already."""
    if any(ch.isspace() for ch in path):
        raise DynamicProbeError(f"cannot probe '{path}': uprobe_events does not accept "
                                "paths with white space")
    place = f"{path}:{offset:#x}"
    if ref_ctr_offset:
        place += f"({ref_ctr_offset:#x})"
    head = f"{'r' if is_return else 'p'}:{group}/{event}"
    return " ".join([head, place, *fetchargs])


_KSYM = re.compile(r"^(?:[A-Za-z_][\w.]*:)?[A-Za-z_.][\w.$]*(?:\+(?:0x[0-9a-fA-F]+|\d+))?$")


def kprobe_definition(function: str, *, is_return: bool = False, fetchargs: Sequence[str] = (),
                      group: Optional[str] = None, event: Optional[str] = None,
                      machine: Optional[str] = None) -> str:
    """The kprobe_events line for a ktap ``probe:FUNCTION[%return] ARGS``:
    ``p:ktapjit_<pid>/NAME FUNCTION ARGS`` or ``r:...``. Pure: touches nothing."""
    if not _KSYM.match(function) and not is_hex_offset(function):
        raise DynamicProbeError(f"bad kprobe target '{function}': expected a kernel function "
                                "name, FUNC+OFFSET or MODULE:FUNC")
    if is_return and "+" in function:
        raise DynamicProbeError(f"kprobe '{function}%return': a return probe must be on a "
                                "function entry, not at an offset")
    group = group or group_name()
    event = event or event_name(function.split(":")[-1], is_return)
    args = translate_fetchargs(fetchargs, kind="kprobe", is_return=is_return, machine=machine)
    return " ".join([f"{'r' if is_return else 'p'}:{group}/{event}", function, *args])


def kprobe_definition_for(spec, group: Optional[str] = None, machine: Optional[str] = None) -> str:
    """kprobe_definition from a frontend ``KprobeSpec``."""
    return kprobe_definition(spec.function, is_return=spec.is_return, fetchargs=spec.fetchargs,
                             group=group, machine=machine)


def kprobes_available(root: Optional[Path] = None) -> Availability:
    """Whether this kernel has kprobe_events; when not, ``reason`` is the one
    line to show the user."""
    try:
        root = root if root is not None else tracefs_root()
    except EventsError as exc:
        return Availability(False, f"kprobes are not available: {exc}")
    if (root / KPROBE_EVENTS).exists():
        return Availability(True)
    return Availability(False, "kprobes are not available: this kernel was built without "
                               f"CONFIG_KPROBE_EVENTS (no {root / KPROBE_EVENTS})")


# --- talking to tracefs ---------------------------------------------------------------------

_LINE_RE = re.compile(r"^([pre])\d*:([^/\s]+)/(\S+)\s")


def list_dynamic_events(root: Optional[Path] = None,
                        controls: Sequence[str] = (UPROBE_EVENTS, KPROBE_EVENTS)) -> list[tuple[str, str, str]]:
    """(control file, group, event) for every line of uprobe_events and kprobe_events."""
    root = root if root is not None else tracefs_root()
    out = []
    for control in controls:
        path = root / control
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except PermissionError:
            raise TracefsPermissionError(f"permission denied reading {path} (run as root)") from None
        for line in text.splitlines():
            m = _LINE_RE.match(line + " ")
            if m:
                out.append((control, m.group(2), m.group(3)))
    return out


def _error_log(root: Path) -> str:
    try:
        return (root / "error_log").read_text(errors="replace")
    except OSError:
        return ""


def _kernel_reason(before: str, after: str) -> str:
    new = after[len(before):] if after.startswith(before) else after
    lines = [ln for ln in new.splitlines() if "error:" in ln]
    if not lines:
        return ""
    return lines[-1].split("error:", 1)[1].strip()


def _write_control(root: Path, control: str, line: str, what: str) -> None:
    path = root / control
    before = _error_log(root)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        if control == KPROBE_EVENTS:
            raise KprobesUnavailable(kprobes_available(root).reason) from None
        raise DynamicProbeError(f"uprobes are not available: this kernel was built without "
                                f"CONFIG_UPROBE_EVENTS (no {path})") from None
    except PermissionError:
        raise TracefsPermissionError(f"permission denied writing {path} (run as root)") from None
    try:
        os.write(fd, (line + "\n").encode("utf-8", "surrogateescape"))
    except OSError as exc:
        reason = _kernel_reason(before, _error_log(root))
        if exc.errno == errno.EEXIST:
            reason = reason or "an event of that name exists"
        elif exc.errno == errno.EBUSY:
            reason = reason or "the event is in use"
        elif exc.errno == errno.ENOENT and not reason:
            reason = "no such event" if line.startswith("-:") else "no such file or event"
        raise DynamicProbeError(f"{what}: {reason or exc.strerror} (kernel refused '{line}')",
                                ) from None
    finally:
        os.close(fd)


def _disable_ftrace(root: Path, group: str, event: str) -> None:
    enable = root / "events" / group / event / "enable"
    try:
        if enable.read_text().strip() != "0":
            enable.write_text("0")
    except OSError:
        pass


def _remove_one(root: Path, control: str, group: str, event: str, retries: int = 20) -> Optional[str]:
    """Remove one event; None when done (or already gone), else why not."""
    _disable_ftrace(root, group, event)
    last = ""
    for _attempt in range(max(1, retries)):
        try:
            _write_control(root, control, f"-:{group}/{event}", f"cannot remove {group}/{event}")
            return None
        except DynamicProbeError as exc:
            if not (root / "events" / group / event).exists():
                return None  # already gone
            if "in use" not in str(exc) and "busy" not in str(exc).lower():
                return str(exc)
            # A perf event being torn down may hold it for a moment.
            time.sleep(0.05)
            last = str(exc)
    return f"{last}: still in use after {max(1, retries) * 50} ms (close the perf events on it first)"


def remove_all(group: str, root: Optional[Path] = None) -> list[str]:
    """Remove every dynamic event of ``group`` (uprobe_events and
    kprobe_events); returns the problems, empty when all went."""
    root = root if root is not None else tracefs_root()
    problems = []
    for control, g, event in list_dynamic_events(root):
        if g == group:
            problem = _remove_one(root, control, g, event)
            if problem:
                problems.append(problem)
    return problems


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def sweep_stale(root: Optional[Path] = None) -> list[str]:
    """Remove the ``ktapjit_<pid>`` groups whose process is gone (left by a
    killed run). Returns the groups removed. Problems (events still in use)
    are not raised: the next run tries again."""
    root = root if root is not None else tracefs_root()
    groups = sorted({g for _c, g, _e in list_dynamic_events(root) if _GROUP_RE.match(g)})
    swept = []
    for g in groups:
        pid = int(_GROUP_RE.match(g).group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if not remove_all(g, root):
            swept.append(g)
    return swept


# --- planning (read-only) ---------------------------------------------------------------------
#
# What a probe spec stands for, found in its ELF file without writing to
# tracefs: the manager below creates exactly this, and `ktapjit run -d`
# shows it.

@dataclass(frozen=True)
class UprobePlan:
    """The uprobes of one ``PATH:SYMBOL`` (a function, a glob or a hex offset)."""

    path: str  # absolute, as uprobe_events gets it
    symbol: str  # as written
    is_return: bool
    machine: str  # x86_64, aarch64: the ABI of the fetch args
    targets: tuple  # elf.ResolvedSymbol: a function (or None) and its file offset, in file order
    kernel_args: tuple[str, ...]  # the fetch args in the kernel's syntax

    @property
    def is_glob(self) -> bool:
        return is_glob_symbol(self.symbol)


def plan_uprobe(path: str, symbol: str, *, is_return: bool = False,
                fetchargs: Sequence[str] = ()) -> UprobePlan:
    """Resolve ``symbol`` in ``path`` and check the fetch args; raises
    ElfError or DynamicProbeError (one line) when either is wrong."""
    elf = open_elf(path)
    machine = _MACHINE_BY_EM.get(elf.machine, _host_machine())
    targets = elf.resolve(symbol)
    args = translate_fetchargs(fetchargs, kind="uprobe", is_return=is_return, machine=machine)
    return UprobePlan(os.path.abspath(path), symbol, is_return, machine, tuple(targets), tuple(args))


def plan_usdt(path: str, provider: str, name: str) -> tuple[str, list[tuple[SdtNote, list[str]]]]:
    """The machine, and each USDT site of ``provider:name`` in ``path`` with
    its arguments as kernel fetch args."""
    elf = open_elf(path)
    machine = _MACHINE_BY_EM.get(elf.machine, _host_machine())
    return machine, [(note, sdt_fetchargs(note, machine, elf)) for note in elf.find_sdt(provider, name)]


# --- the manager ---------------------------------------------------------------------------

def _atexit_close(ref: "weakref.ReferenceType[DynamicProbes]") -> None:
    probes = ref()
    if probes is not None:
        probes.close()


class DynamicProbes:
    """Creates dynamic events in one group and removes them all on exit::

        with DynamicProbes() as dp:
            events = dp.add_uprobe("/bin/bash", "readline", fetchargs=("s=+0(%di):string",))
            with PerfSession([tracepoint(e.system, e.event) for e in events]) as s:
                ...
        # events removed here, also after an exception or Ctrl-C

    ``sweep`` (default True) first removes stale groups of dead ktapjit runs.
    """

    def __init__(self, group: Optional[str] = None, root: Optional[Path] = None, sweep: bool = True,
                 trial: Optional[Callable[[Path, str, str], Optional[int]]] = None):
        self.root = root if root is not None else tracefs_root()
        self.group = group or group_name()
        self.created: list[ProbeEvent] = []
        self.refused: list[RefusedSite] = []  # functions globs matched that the kernel cannot probe
        self._pending: set[str] = set()  # events being made, not yet in `created`
        self._trial = trial or trial_open
        self._names: set[str] = set()
        self._closed = False
        self.swept = sweep_stale(self.root) if sweep else []
        self._atexit = None

    def __enter__(self) -> "DynamicProbes":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        problems = self.close()
        if problems and exc_type is None:
            raise DynamicProbeError("; ".join(problems))

    # -- creation ------------------------------------------------------------------------

    def _unique(self, base: str) -> str:
        return unique_name(base, self._names, self._existing_events())

    def _existing_events(self) -> set[str]:
        try:
            return set(os.listdir(self.root / "events" / self.group))
        except OSError:
            return set()

    def _register_cleanup(self) -> None:
        if self._closed:
            raise DynamicProbeError("DynamicProbes is closed")
        if self._atexit is None:
            # One hook per instance (a partial compares by identity, so
            # unregistering it leaves other instances' hooks alone).
            self._atexit = functools.partial(_atexit_close, weakref.ref(self))
            atexit.register(self._atexit)

    def _create(self, control: str, line: str, ev: ProbeEvent, what: str) -> ProbeEvent:
        self._register_cleanup()
        _write_control(self.root, control, line, what)
        return self._record(ev)

    def _record(self, ev: ProbeEvent) -> ProbeEvent:
        self._pending.discard(ev.event)
        self.created.append(ev)
        self._names.add(ev.event)
        return ev

    def add_uprobe_at(self, path: str, offset: int, *, is_return: bool = False,
                      fetchargs: Sequence[str] = (), event: Optional[str] = None,
                      ref_ctr_offset: Optional[int] = None, kind: Optional[str] = None,
                      machine: Optional[str] = None, translate: bool = True,
                      target: Optional[str] = None) -> ProbeEvent:
        """A uprobe at a file offset of ``path``; ``fetchargs`` in ktap spelling
        (``translate=False``: kernel syntax already)."""
        path = os.path.abspath(path)
        if machine is None:
            machine = self._machine_of(path)
        args = (translate_fetchargs(fetchargs, kind="uprobe", is_return=is_return, machine=machine)
                if translate else list(fetchargs))
        name = self._unique(event or event_name(f"{Path(path).name}_{offset:#x}", is_return))
        line = uprobe_definition(self.group, name, path, offset, is_return=is_return,
                                 fetchargs=args, ref_ctr_offset=ref_ctr_offset)
        kind = kind or ("uretprobe" if is_return else "uprobe")
        ev = ProbeEvent(self.group, name, kind, line, UPROBE_EVENTS,
                        target or f"{path}:{offset:#x}", offset, ref_ctr_offset, arg_names(args))
        return self._create(UPROBE_EVENTS, line, ev, f"cannot create {kind} on {ev.target}")

    def add_uprobe(self, path: str, symbol: str, *, is_return: bool = False,
                   fetchargs: Sequence[str] = (), event: Optional[str] = None) -> list[ProbeEvent]:
        """uprobes (or uretprobes) on a function, a glob of functions, or a hex
        file offset of ``path``: one event per address, but for a glob, whose
        addresses are the sites of one event (add_sites)."""
        # Everything is resolved and checked (the fetch args too) before anything is created.
        planned = plan_uprobe(path, symbol, is_return=is_return, fetchargs=fetchargs)
        machine, targets = planned.machine, list(planned.targets)
        if planned.is_glob:
            site = self.add_sites(path, symbol, targets, is_return=is_return, fetchargs=fetchargs,
                                  machine=machine)
            if site is None:
                noun = "its function" if len(targets) == 1 else f"all {len(targets)} of its functions"
                reason = abi.refusal_reason(self.refused[-1].errno)
                raise DynamicProbeError(f"'{symbol}' traces nothing: the kernel refused {noun}: {reason}")
            return [site]
        out = []
        for t in targets:
            base = event if (event and len(targets) == 1) else None
            if base is None:
                base = target_name(path, t, is_return)
            out.append(self.add_uprobe_at(path, t.offset, is_return=is_return, fetchargs=fetchargs,
                                          event=base, machine=machine,
                                          target=f"{path}:{t.name}"))
        return out

    def add_sites(self, path: str, symbol: str, targets, *, is_return: bool, fetchargs: Sequence[str],
                  machine: str) -> Optional[ProbeEvent]:
        """One event whose sites are ``targets`` (probe_sites), named
        sites_event_name(path); the functions the kernel cannot probe are left
        out and listed in ``refused``. None when it refuses every one."""
        path = os.path.abspath(path)
        args = translate_fetchargs(fetchargs, kind="uprobe", is_return=is_return, machine=machine)
        if SITE_FIELD in arg_names(args):
            raise DynamicProbeError(f"'{path}:{symbol}': the fetch arg name '{SITE_FIELD}' is ktapjit's own "
                                    "(the site index)")
        names = _unique_names([target_name(path, t, is_return) for t in targets])
        name = self._unique(sites_event_name(path, is_return))
        kind = "uretprobe" if is_return else "uprobe"
        offsets = [t.offset for t in targets]

        def lines(indices: Sequence[int], event: str) -> list[str]:
            return [uprobe_definition(self.group, event, path, offsets[i], is_return=is_return,
                                      fetchargs=[*args, site_fetcharg(n)]) for n, i in enumerate(indices)]

        everything = range(len(targets))
        err = self._try_sites(lines(everything, name), name)
        if err is None:
            kept = list(everything)
        else:
            refused = self._refused_sites(everything, lines, name, err)
            self.refused.extend(RefusedSite(self.group, names[i], code) for i, code in refused)
            gone = {i for i, _ in refused}
            kept = [i for i in everything if i not in gone]
            if not kept:
                return None
            self._write_lines(lines(kept, name), name)
        table = SiteTable(path, symbol, is_return, tuple(names[i] for i in kept))
        ev = ProbeEvent(self.group, name, kind, lines(kept[:1], name)[0], UPROBE_EVENTS, f"{path}:{symbol}",
                        arg_names=arg_names(args), site_table=table)
        return self._record(ev)

    def _write_lines(self, lines: Sequence[str], event: str) -> None:
        what = f"cannot create uprobe {self.group}/{event}"
        self._pending.add(event)  # close() removes it, should this not finish
        try:
            for line in lines:
                _write_control(self.root, UPROBE_EVENTS, line, what)
        except DynamicProbeError:
            self._remove_pending(event)
            raise

    def _remove_pending(self, event: str) -> None:
        problem = _remove_one(self.root, UPROBE_EVENTS, self.group, event)
        if problem:
            raise DynamicProbeError(problem)
        self._pending.discard(event)

    def _try_sites(self, lines: Sequence[str], event: str) -> Optional[int]:
        """Create the event and open it once: None when the kernel can probe
        every site; else the errno of its refusal, with the event removed."""
        self._register_cleanup()
        self._write_lines(lines, event)
        err = self._trial(self.root, self.group, event)
        if err is not None:
            self._remove_pending(event)
        return err

    def _refused_sites(self, indices: Sequence[int], lines, event: str, err: int) -> list[tuple[int, int]]:
        """The sites the kernel refuses among ``indices``, which it refused as a
        whole with ``err``: halves that open are cleared at once, so k refusals
        among n sites take about 2k log2(n) trials."""
        if len(indices) == 1:
            return [(indices[0], err)]
        half = len(indices) // 2
        out = []
        for part in (indices[:half], indices[half:]):
            part_err = self._try_sites(lines(part, event), event)
            if part_err is None:
                self._remove_pending(event)
            else:
                out.extend(self._refused_sites(part, lines, event, part_err))
        return out

    def add_usdt(self, path: str, provider: str, name: str, *,
                 event: Optional[str] = None) -> list[ProbeEvent]:
        """One uprobe per USDT site of ``provider:name`` (globs allowed), with
        the site's arguments as ``arg1..argN`` and its semaphore, if any,
        counted up by the kernel (``ref_ctr_offset``) while the event is in use."""
        machine, prepared = plan_usdt(path, provider, name)
        out = []
        for note, args in prepared:
            base = event or event_name(note.name)
            out.append(self.add_uprobe_at(path, note.pc_offset, fetchargs=args, event=base,
                                          ref_ctr_offset=note.semaphore_offset, kind="usdt",
                                          machine=machine, translate=False,
                                          target=f"{path}:{note.provider}:{note.name}"))
        return out

    def add_kprobe(self, function: str, *, is_return: bool = False, fetchargs: Sequence[str] = (),
                   event: Optional[str] = None) -> ProbeEvent:
        avail = kprobes_available(self.root)
        if not avail:
            raise KprobesUnavailable(avail.reason)
        name = self._unique(event or event_name(function.split(":")[-1], is_return))
        line = kprobe_definition(function, is_return=is_return, fetchargs=fetchargs,
                                 group=self.group, event=name)
        kind = "kretprobe" if is_return else "kprobe"
        ev = ProbeEvent(self.group, name, kind, line, KPROBE_EVENTS, function,
                        arg_names=arg_names(line.split()[2:]))
        return self._create(KPROBE_EVENTS, line, ev, f"cannot create {kind} on {function}")

    def _machine_of(self, path: str) -> str:
        try:
            return _MACHINE_BY_EM.get(open_elf(path).machine, _host_machine())
        except ElfError:
            return _host_machine()

    # -- removal -----------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove every event this instance created (return probes and all);
        idempotent. Returns the problems, if any (events still in use)."""
        if self._closed:
            return []
        self._closed = True
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        problems = []
        leftovers = [(UPROBE_EVENTS, name) for name in self._pending]
        for control, name in [*leftovers, *((ev.control, ev.event) for ev in reversed(self.created))]:
            problem = _remove_one(self.root, control, self.group, name)
            if problem:
                problems.append(problem)
        self.created.clear()
        self._pending.clear()
        return problems


# --- the uprobe PMU -----------------------------------------------------------------------------
#
# perf_event_open can create a uprobe itself (type from the uprobe PMU, path in
# config1, file offset in config2): nothing is written to tracefs, and the
# kernel removes the probe when the last fd closes, so nothing can go stale.
# It fetches no args, and its events have no tracefs format (so a perf.data
# recording cannot describe them to `perf script`); the format is synthesized
# here with the layout the kernel writes.

_PMU_DIR = Path("/sys/bus/event_source/devices/uprobe")
_PMU_PATHS: dict[str, object] = {}  # path -> ctypes buffer, alive while the process is


def uprobe_pmu_type(pmu_dir: Path = _PMU_DIR) -> Optional[int]:
    """The uprobe PMU's perf type, or None when the kernel has no uprobe PMU."""
    try:
        return int((pmu_dir / "type").read_text())
    except (OSError, ValueError):
        return None


def _pmu_bit(pmu_dir: Path, name: str, default: int) -> int:
    try:
        spec = (pmu_dir / "format" / name).read_text().strip()  # e.g. config:0, config:32-63
        return int(spec.split(":")[1].split("-")[0])
    except (OSError, ValueError, IndexError):
        return default


def uprobe_pmu_event(path: str, offset: int, *, is_return: bool = False,
                     ref_ctr_offset: Optional[int] = None, callchain: bool = False,
                     name: Optional[str] = None, pmu_dir: Path = _PMU_DIR):
    """A ``perf_ring.TraceEvent`` for a uprobe made by the uprobe PMU (no
    fetch args). Decode its RAW data with :func:`uprobe_pmu_format`."""
    import ctypes

    from ktapjit.events.records import perf_abi as abi
    from ktapjit.events.records.perf_ring import SAMPLE_TYPE, TraceEvent

    ptype = uprobe_pmu_type(pmu_dir)
    if ptype is None:
        raise DynamicProbeError(f"the uprobe PMU is not available (no {pmu_dir / 'type'})")
    path = os.path.abspath(path)
    buf = _PMU_PATHS.get(path)
    if buf is None:
        buf = _PMU_PATHS[path] = ctypes.create_string_buffer(os.fsencode(path))
    config = 0
    if is_return:
        config |= 1 << _pmu_bit(pmu_dir, "retprobe", 0)
    if ref_ctr_offset:
        config |= ref_ctr_offset << _pmu_bit(pmu_dir, "ref_ctr_offset", 32)
    st = SAMPLE_TYPE | abi.PERF_SAMPLE_RAW | (abi.PERF_SAMPLE_CALLCHAIN if callchain else 0)
    attr = abi.perf_event_attr(type=ptype, config=config, sample_period=1, sample_type=st)
    attr.uprobe_path = ctypes.addressof(buf)
    attr.probe_offset = offset
    label = name or f"uprobe:{path}:{offset:#x}{'%return' if is_return else ''}"
    return TraceEvent(label, attr)


def uprobe_pmu_format_text(name: str, is_return: bool = False, ident: int = 0) -> str:
    """The tracefs-style format text of an argless uprobe (what the PMU's
    events carry in RAW), for ``schema.parse_format``."""
    common = ("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
              "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
              "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
              "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n")
    if is_return:
        fields = ("\tfield:unsigned long __probe_func;\toffset:8;\tsize:8;\tsigned:0;\n"
                  "\tfield:unsigned long __probe_ret_ip;\toffset:16;\tsize:8;\tsigned:0;\n")
        fmt = 'print fmt: "(%lx <- %lx)", REC->__probe_func, REC->__probe_ret_ip\n'
    else:
        fields = "\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n"
        fmt = 'print fmt: "(%lx)", REC->__probe_ip\n'
    return f"name: {name}\nID: {ident}\nformat:\n{common}{fields}\n{fmt}"


# A fetch arg's type -> (the field's C type, size, signed, printf conversion),
# as the kernel writes a probe event's format (kernel/trace/trace_probe.c).
_FETCH_FIELD_TYPES = {f"{sign}{bits}": (f"{sign}{bits}", bits // 8, int(sign == "s"), conv)
                      for bits in (8, 16, 32, 64)
                      for sign, conv in (("u", "%u"), ("s", "%d"), ("x", "0x%x"))}
_FETCH_FIELD_TYPES.update({"string": ("__data_loc char[]", 4, 1, '\\"%s\\"'),
                           "ustring": ("__data_loc char[]", 4, 1, '\\"%s\\"'),
                           "symstr": ("__data_loc char[]", 4, 1, '\\"%s\\"'),
                           "char": ("char", 1, 0, "'%c'")})
_DEFAULT_FETCH_TYPE = "u64"  # the kernel's default on 64-bit machines


def planned_format_text(name: str, is_return: bool, kernel_args: Sequence[str]) -> str:
    """The format text the kernel will give a uprobe with ``kernel_args``
    once it is created (fields packed after the probe address, as probe
    events are): for checking filters against before anything exists."""
    text = uprobe_pmu_format_text(name, is_return)
    head, _, _ = text.partition("\nprint fmt:")
    offset = 24 if is_return else 16
    fields, convs, refs = [], [], []
    for arg in kernel_args:
        arg_name, _, fetch = arg.partition("=")
        ftype = _split_type(fetch)[1] or _DEFAULT_FETCH_TYPE
        ctype, size, signed, conv = _FETCH_FIELD_TYPES.get(ftype, _FETCH_FIELD_TYPES[_DEFAULT_FETCH_TYPE])
        fields.append(f"\tfield:{ctype} {arg_name};\toffset:{offset};\tsize:{size};\tsigned:{signed};\n")
        convs.append(f" {arg_name}={conv}")
        refs.append(f"__get_str({arg_name})" if ctype.startswith("__data_loc") else f"REC->{arg_name}")
        offset += size
    place = "(%lx <- %lx)" if is_return else "(%lx)"
    probe_refs = "REC->__probe_func, REC->__probe_ret_ip" if is_return else "REC->__probe_ip"
    print_fmt = f'print fmt: "{place}{"".join(convs)}", ' + ", ".join([probe_refs, *refs]) + "\n"
    return head + "".join(fields) + "\n" + print_fmt


def uprobe_pmu_format(name: str, is_return: bool = False, ident: int = 0):
    from ktapjit.events.schema import parse_format
    return parse_format(uprobe_pmu_format_text(name, is_return, ident), system="uprobes")
