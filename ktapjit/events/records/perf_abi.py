"""The perf_event ABI: ``perf_event_attr``, record and sample constants, ioctls,
the mmap control page, and a ``perf_event_open`` wrapper through ctypes.

Everything here mirrors ``include/uapi/linux/perf_event.h`` (Linux 6.18) and the
perf tool's user record types (``tools/lib/perf/include/perf/event.h``). Only
little-endian hosts are supported (x86-64 and AArch64), as the rest of ktapjit.

This module has no policy: opening rings lives in ``perf_ring``, decoding in
``decode``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

from ktapjit.events.errors import EventsError

# --- perf_type_id -----------------------------------------------------------
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5

# --- perf_sw_ids (config for PERF_TYPE_SOFTWARE) -------------------------------
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_TASK_CLOCK = 1
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_COUNT_SW_CONTEXT_SWITCHES = 3
PERF_COUNT_SW_CPU_MIGRATIONS = 4
PERF_COUNT_SW_PAGE_FAULTS_MIN = 5
PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6
PERF_COUNT_SW_ALIGNMENT_FAULTS = 7
PERF_COUNT_SW_EMULATION_FAULTS = 8
PERF_COUNT_SW_DUMMY = 9
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_COUNT_SW_CGROUP_SWITCHES = 11

# --- perf_event_sample_format: the bits of attr.sample_type --------------------
PERF_SAMPLE_IP = 1 << 0
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_ADDR = 1 << 3
PERF_SAMPLE_READ = 1 << 4
PERF_SAMPLE_CALLCHAIN = 1 << 5
PERF_SAMPLE_ID = 1 << 6
PERF_SAMPLE_CPU = 1 << 7
PERF_SAMPLE_PERIOD = 1 << 8
PERF_SAMPLE_STREAM_ID = 1 << 9
PERF_SAMPLE_RAW = 1 << 10
PERF_SAMPLE_BRANCH_STACK = 1 << 11
PERF_SAMPLE_REGS_USER = 1 << 12
PERF_SAMPLE_STACK_USER = 1 << 13
PERF_SAMPLE_WEIGHT = 1 << 14
PERF_SAMPLE_DATA_SRC = 1 << 15
PERF_SAMPLE_IDENTIFIER = 1 << 16
PERF_SAMPLE_TRANSACTION = 1 << 17
PERF_SAMPLE_REGS_INTR = 1 << 18
PERF_SAMPLE_PHYS_ADDR = 1 << 19
PERF_SAMPLE_AUX = 1 << 20
PERF_SAMPLE_CGROUP = 1 << 21
PERF_SAMPLE_DATA_PAGE_SIZE = 1 << 22
PERF_SAMPLE_CODE_PAGE_SIZE = 1 << 23
PERF_SAMPLE_WEIGHT_STRUCT = 1 << 24
PERF_SAMPLE_MAX = 1 << 25

SAMPLE_TYPE_NAMES = {
    PERF_SAMPLE_IP: "IP", PERF_SAMPLE_TID: "TID", PERF_SAMPLE_TIME: "TIME",
    PERF_SAMPLE_ADDR: "ADDR", PERF_SAMPLE_READ: "READ",
    PERF_SAMPLE_CALLCHAIN: "CALLCHAIN", PERF_SAMPLE_ID: "ID",
    PERF_SAMPLE_CPU: "CPU", PERF_SAMPLE_PERIOD: "PERIOD",
    PERF_SAMPLE_STREAM_ID: "STREAM_ID", PERF_SAMPLE_RAW: "RAW",
    PERF_SAMPLE_BRANCH_STACK: "BRANCH_STACK", PERF_SAMPLE_REGS_USER: "REGS_USER",
    PERF_SAMPLE_STACK_USER: "STACK_USER", PERF_SAMPLE_WEIGHT: "WEIGHT",
    PERF_SAMPLE_DATA_SRC: "DATA_SRC", PERF_SAMPLE_IDENTIFIER: "IDENTIFIER",
    PERF_SAMPLE_TRANSACTION: "TRANSACTION", PERF_SAMPLE_REGS_INTR: "REGS_INTR",
    PERF_SAMPLE_PHYS_ADDR: "PHYS_ADDR", PERF_SAMPLE_AUX: "AUX",
    PERF_SAMPLE_CGROUP: "CGROUP", PERF_SAMPLE_DATA_PAGE_SIZE: "DATA_PAGE_SIZE",
    PERF_SAMPLE_CODE_PAGE_SIZE: "CODE_PAGE_SIZE",
    PERF_SAMPLE_WEIGHT_STRUCT: "WEIGHT_STRUCT",
}

# --- branch_sample_type bits that change the sample layout --------------------
PERF_SAMPLE_BRANCH_HW_INDEX = 1 << 17
PERF_SAMPLE_BRANCH_COUNTERS = 1 << 19

# --- perf_event_read_format -------------------------------------------------------
PERF_FORMAT_TOTAL_TIME_ENABLED = 1 << 0
PERF_FORMAT_TOTAL_TIME_RUNNING = 1 << 1
PERF_FORMAT_ID = 1 << 2
PERF_FORMAT_GROUP = 1 << 3
PERF_FORMAT_LOST = 1 << 4

# --- perf_event_type: kernel record types -----------------------------------------
PERF_RECORD_MMAP = 1
PERF_RECORD_LOST = 2
PERF_RECORD_COMM = 3
PERF_RECORD_EXIT = 4
PERF_RECORD_THROTTLE = 5
PERF_RECORD_UNTHROTTLE = 6
PERF_RECORD_FORK = 7
PERF_RECORD_READ = 8
PERF_RECORD_SAMPLE = 9
PERF_RECORD_MMAP2 = 10
PERF_RECORD_AUX = 11
PERF_RECORD_ITRACE_START = 12
PERF_RECORD_LOST_SAMPLES = 13
PERF_RECORD_SWITCH = 14
PERF_RECORD_SWITCH_CPU_WIDE = 15
PERF_RECORD_NAMESPACES = 16
PERF_RECORD_KSYMBOL = 17
PERF_RECORD_BPF_EVENT = 18
PERF_RECORD_CGROUP = 19
PERF_RECORD_TEXT_POKE = 20
PERF_RECORD_AUX_OUTPUT_HW_ID = 21

# --- perf tool's user record types (only in perf.data and pipes) ------------------
PERF_RECORD_USER_TYPE_START = 64
PERF_RECORD_HEADER_ATTR = 64
PERF_RECORD_HEADER_EVENT_TYPE = 65
PERF_RECORD_HEADER_TRACING_DATA = 66
PERF_RECORD_HEADER_BUILD_ID = 67
PERF_RECORD_FINISHED_ROUND = 68
PERF_RECORD_ID_INDEX = 69
PERF_RECORD_AUXTRACE_INFO = 70
PERF_RECORD_AUXTRACE = 71
PERF_RECORD_AUXTRACE_ERROR = 72
PERF_RECORD_THREAD_MAP = 73
PERF_RECORD_CPU_MAP = 74
PERF_RECORD_STAT_CONFIG = 75
PERF_RECORD_STAT = 76
PERF_RECORD_STAT_ROUND = 77
PERF_RECORD_EVENT_UPDATE = 78
PERF_RECORD_TIME_CONV = 79
PERF_RECORD_HEADER_FEATURE = 80
PERF_RECORD_COMPRESSED = 81
PERF_RECORD_FINISHED_INIT = 82

# --- perf_event_header.misc --------------------------------------------------------
PERF_RECORD_MISC_CPUMODE_MASK = 7
PERF_RECORD_MISC_CPUMODE_UNKNOWN = 0
PERF_RECORD_MISC_KERNEL = 1
PERF_RECORD_MISC_USER = 2
PERF_RECORD_MISC_HYPERVISOR = 3
PERF_RECORD_MISC_GUEST_KERNEL = 4
PERF_RECORD_MISC_GUEST_USER = 5
PERF_RECORD_MISC_MMAP_DATA = 1 << 13
PERF_RECORD_MISC_COMM_EXEC = 1 << 13
PERF_RECORD_MISC_SWITCH_OUT = 1 << 13
PERF_RECORD_MISC_EXACT_IP = 1 << 14
PERF_RECORD_MISC_MMAP_BUILD_ID = 1 << 14
PERF_RECORD_MISC_EXT_RESERVED = 1 << 15

# --- callchain context markers (values in a callchain, not addresses) -------------
PERF_CONTEXT_HV = (1 << 64) - 32
PERF_CONTEXT_KERNEL = (1 << 64) - 128
PERF_CONTEXT_USER = (1 << 64) - 512
PERF_CONTEXT_GUEST = (1 << 64) - 2048
PERF_CONTEXT_GUEST_KERNEL = (1 << 64) - 2176
PERF_CONTEXT_GUEST_USER = (1 << 64) - 2560
PERF_CONTEXT_MAX = (1 << 64) - 4095

# --- perf_event_open flags ------------------------------------------------------------
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3


# --- ioctls: _IOC(dir, '$', nr, size) with the generic encoding (x86-64, AArch64) ---
def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("$") << 8) | nr


_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
PERF_EVENT_IOC_ENABLE = _ioc(_IOC_NONE, 0, 0)
PERF_EVENT_IOC_DISABLE = _ioc(_IOC_NONE, 1, 0)
PERF_EVENT_IOC_REFRESH = _ioc(_IOC_NONE, 2, 0)
PERF_EVENT_IOC_RESET = _ioc(_IOC_NONE, 3, 0)
PERF_EVENT_IOC_PERIOD = _ioc(_IOC_WRITE, 4, 8)
PERF_EVENT_IOC_SET_OUTPUT = _ioc(_IOC_NONE, 5, 0)
PERF_EVENT_IOC_SET_FILTER = _ioc(_IOC_WRITE, 6, 8)
PERF_EVENT_IOC_ID = _ioc(_IOC_READ, 7, 8)
PERF_EVENT_IOC_SET_BPF = _ioc(_IOC_WRITE, 8, 4)
PERF_EVENT_IOC_PAUSE_OUTPUT = _ioc(_IOC_WRITE, 9, 4)
PERF_EVENT_IOC_QUERY_BPF = _ioc(_IOC_READ | _IOC_WRITE, 10, 8)
PERF_EVENT_IOC_MODIFY_ATTRIBUTES = _ioc(_IOC_WRITE, 11, 8)
# Argument of ENABLE/DISABLE/RESET: apply to the whole group.
PERF_IOC_FLAG_GROUP = 1


# --- perf_event_attr --------------------------------------------------------------------
# Sizes of the published ABI versions; the kernel accepts any of them.
PERF_ATTR_SIZE_VER0 = 64
PERF_ATTR_SIZE_VER1 = 72
PERF_ATTR_SIZE_VER2 = 80
PERF_ATTR_SIZE_VER3 = 96
PERF_ATTR_SIZE_VER4 = 104
PERF_ATTR_SIZE_VER5 = 112
PERF_ATTR_SIZE_VER6 = 120
PERF_ATTR_SIZE_VER7 = 128
PERF_ATTR_SIZE_VER8 = 136

# The single-bit flags of the 64-bit flags word, in kernel order (precise_ip is 2 bits).
_ATTR_FLAG_BITS = (
    ("disabled", 1), ("inherit", 1), ("pinned", 1), ("exclusive", 1),
    ("exclude_user", 1), ("exclude_kernel", 1), ("exclude_hv", 1),
    ("exclude_idle", 1), ("mmap", 1), ("comm", 1), ("freq", 1),
    ("inherit_stat", 1), ("enable_on_exec", 1), ("task", 1), ("watermark", 1),
    ("precise_ip", 2), ("mmap_data", 1), ("sample_id_all", 1),
    ("exclude_host", 1), ("exclude_guest", 1), ("exclude_callchain_kernel", 1),
    ("exclude_callchain_user", 1), ("mmap2", 1), ("comm_exec", 1),
    ("use_clockid", 1), ("context_switch", 1), ("write_backward", 1),
    ("namespaces", 1), ("ksymbol", 1), ("bpf_event", 1), ("aux_output", 1),
    ("cgroup", 1), ("text_poke", 1), ("build_id", 1), ("inherit_thread", 1),
    ("remove_on_exec", 1), ("sigtrap", 1), ("__reserved_1", 26),
)


class perf_event_attr(ctypes.Structure):
    """``struct perf_event_attr``, the full VER8 (136-byte) layout.

    Unions are flattened to their first member name; the aliases
    (``sample_freq``, ``wakeup_watermark``, ``config1``...) are properties.
    A fresh instance has ``size`` already set to ``sizeof``.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),  # union with sample_freq
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        *[(name, ctypes.c_uint64, bits) for name, bits in _ATTR_FLAG_BITS],
        ("wakeup_events", ctypes.c_uint32),  # union with wakeup_watermark
        ("bp_type", ctypes.c_uint32),
        ("bp_addr", ctypes.c_uint64),  # union: kprobe_func, uprobe_path, config1
        ("bp_len", ctypes.c_uint64),  # union: kprobe_addr, probe_offset, config2
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("__reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("aux_action", ctypes.c_uint32),  # aux_start_paused/aux_pause/aux_resume bits
        ("sig_data", ctypes.c_uint64),
        ("config3", ctypes.c_uint64),
    ]

    def __init__(self, **kwargs):
        super().__init__()
        self.size = ctypes.sizeof(self)
        for key, value in kwargs.items():
            setattr(self, key, value)

    # Union aliases, so callers can use the kernel's names.
    sample_freq = property(lambda s: s.sample_period,
                           lambda s, v: setattr(s, "sample_period", v))
    wakeup_watermark = property(lambda s: s.wakeup_events,
                                lambda s, v: setattr(s, "wakeup_events", v))
    config1 = property(lambda s: s.bp_addr, lambda s, v: setattr(s, "bp_addr", v))
    config2 = property(lambda s: s.bp_len, lambda s, v: setattr(s, "bp_len", v))
    kprobe_func = uprobe_path = config1
    kprobe_addr = probe_offset = config2

    def to_bytes(self, size: int | None = None) -> bytes:
        """The attr as the kernel/perf.data see it, cut to ``size`` bytes
        (``self.size`` by default) with the size field set to match."""
        size = self.size if size is None else size
        raw = bytearray(bytes(self))
        raw[4:8] = size.to_bytes(4, "little")
        if size <= len(raw):
            return bytes(raw[:size])
        return bytes(raw) + bytes(size - len(raw))

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> "perf_event_attr":
        """Parse an attr of any ABI size; missing tail fields read as zero and
        the ``size`` field keeps the on-disk value."""
        attr = cls()
        n = min(len(data), ctypes.sizeof(cls))
        ctypes.memmove(ctypes.addressof(attr), bytes(data[:n]), n)
        return attr

    def describe(self) -> str:
        """A short human-readable summary, for error messages and debugging."""
        bits = [name for bit, name in SAMPLE_TYPE_NAMES.items() if self.sample_type & bit]
        return (f"type={self.type} config={self.config:#x} "
                f"sample_type={'|'.join(bits) or 0}")


assert ctypes.sizeof(perf_event_attr) == PERF_ATTR_SIZE_VER8


# --- the mmap control page ----------------------------------------------------------------
class perf_event_mmap_page(ctypes.Structure):
    """The first page of a perf ring mapping. ``data_head`` is written by the
    kernel, ``data_tail`` by us; both are at byte 1024."""

    _fields_ = [
        ("version", ctypes.c_uint32),
        ("compat_version", ctypes.c_uint32),
        ("lock", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("offset", ctypes.c_int64),
        ("time_enabled", ctypes.c_uint64),
        ("time_running", ctypes.c_uint64),
        ("capabilities", ctypes.c_uint64),
        ("pmc_width", ctypes.c_uint16),
        ("time_shift", ctypes.c_uint16),
        ("time_mult", ctypes.c_uint32),
        ("time_offset", ctypes.c_uint64),
        ("time_zero", ctypes.c_uint64),
        ("size", ctypes.c_uint32),
        ("__reserved_1", ctypes.c_uint32),
        ("time_cycles", ctypes.c_uint64),
        ("time_mask", ctypes.c_uint64),
        ("__reserved", ctypes.c_uint8 * (116 * 8)),
        ("data_head", ctypes.c_uint64),
        ("data_tail", ctypes.c_uint64),
        ("data_offset", ctypes.c_uint64),
        ("data_size", ctypes.c_uint64),
        ("aux_head", ctypes.c_uint64),
        ("aux_tail", ctypes.c_uint64),
        ("aux_offset", ctypes.c_uint64),
        ("aux_size", ctypes.c_uint64),
    ]


assert perf_event_mmap_page.data_head.offset == 1024


# --- perf_event_open ----------------------------------------------------------------------
class PerfError(EventsError):
    """A perf_event_open, ioctl or mmap failure, with a user-facing message."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


_SYSCALL_NR = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def _perf_open_nr() -> int:
    machine = platform.machine().lower()
    try:
        return _SYSCALL_NR[machine]
    except KeyError:
        raise PerfError(f"perf_event_open: unsupported architecture {machine!r}") from None


# The kernel's own "not supported" (include/linux/errno.h), which user space's
# errno.h lacks: uprobe_register returns it for an instruction it cannot probe.
ENOTSUPP = 524


def errno_name(err: int) -> str:
    """EPERM, ENOTSUPP, ...: the symbolic name of an errno, for messages."""
    return "ENOTSUPP" if err == ENOTSUPP else errno.errorcode.get(err, f"errno {err}")


def _paranoid() -> str:
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            return f.read().strip()
    except OSError:
        return "?"


# What the kernel answers about one event (it forbids sampling it, cannot
# probe there, lacks it): a glob skips that event. Running out of fds or
# memory, or a traced process that is gone, concerns every event: fatal.
REFUSALS = frozenset({errno.EPERM, errno.EACCES, ENOTSUPP, errno.EOPNOTSUPP, errno.EINVAL,
                       errno.ENOENT, errno.ENODEV, errno.EBUSY})


def refusal_reason(err: int, root: bool | None = None) -> str:
    """Why perf_event_open (or an ioctl) failed, in words that fit whoever
    runs ktapjit: a permission error means "become root" only to a user who
    is not; root gets it because the event itself forbids sampling (as
    irq_vectors:irq_work_exit does) or a security policy says no."""
    if root is None:
        root = os.geteuid() == 0
    if err in (errno.EACCES, errno.EPERM):
        if root:
            return (f"the kernel refuses it to perf even for root ({errno_name(err)}: the event "
                    "may not be sampled, or a security policy such as lockdown forbids it)")
        return ("permission denied: run as root or lower /proc/sys/kernel/perf_event_paranoid "
                f"(now {_paranoid()})")
    if err == ENOTSUPP:
        return ("the kernel cannot probe that instruction (ENOTSUPP, errno 524: uprobes refuse "
                "some instructions, e.g. lock-prefixed ones)")
    if err == errno.ENOENT:
        return "unknown event (no such tracepoint or event type in this kernel)"
    if err == errno.ENODEV:
        return "no such device (event or CPU not supported here)"
    if err == errno.EOPNOTSUPP:
        return "operation not supported by this event or kernel"
    if err == errno.EINVAL:
        return "invalid argument (this kernel cannot open the event with these settings)"
    if err == errno.E2BIG:
        return "perf_event_attr too big or has unknown non-zero fields"
    if err == errno.EMFILE:
        return "too many open files (raise ulimit -n)"
    if err == errno.ESRCH:
        return "no such process"
    if err == errno.EBUSY:
        return "event busy (exclusive use by another tracer)"
    return os.strerror(err)


def explain_errno(err: int, what: str) -> str:
    """Turn a perf errno into a message that says what to do about it."""
    return f"{what}: {refusal_reason(err)}"


def perf_event_open(attr: perf_event_attr, pid: int, cpu: int,
                    group_fd: int = -1, flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """``perf_event_open(2)``: returns the new event fd or raises PerfError."""
    fd = _syscall(ctypes.c_long(_perf_open_nr()), ctypes.byref(attr),
                  ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(group_fd),
                  ctypes.c_ulong(flags))
    if fd < 0:
        err = ctypes.get_errno()
        where = f"perf_event_open({attr.describe()}, pid={pid}, cpu={cpu})"
        raise PerfError(explain_errno(err, where), err)
    return fd


def perf_ioctl(fd: int, request: int, arg: int | ctypes._SimpleCData | bytes | None = 0,
               what: str = "ioctl") -> int:
    """An ioctl on a perf fd; ``arg`` is an int, a pointer target or bytes."""
    if isinstance(arg, bytes):
        buf = ctypes.create_string_buffer(arg)
        ptr = ctypes.cast(buf, ctypes.c_void_p)
    elif isinstance(arg, ctypes._SimpleCData):
        ptr = ctypes.cast(ctypes.byref(arg), ctypes.c_void_p)
    else:
        ptr = ctypes.c_void_p(arg or 0)
    rc = _ioctl(fd, request, ptr)
    if rc < 0:
        err = ctypes.get_errno()
        raise PerfError(explain_errno(err, what), err)
    return rc


def event_id(fd: int) -> int:
    """PERF_EVENT_IOC_ID: the kernel's sample id of the event behind ``fd``."""
    value = ctypes.c_uint64()
    perf_ioctl(fd, PERF_EVENT_IOC_ID, value, "PERF_EVENT_IOC_ID")
    return value.value


def set_filter(fd: int, text: str) -> None:
    """PERF_EVENT_IOC_SET_FILTER with a tracepoint filter expression."""
    try:
        perf_ioctl(fd, PERF_EVENT_IOC_SET_FILTER, text.encode("latin-1") + b"\0",
                   "PERF_EVENT_IOC_SET_FILTER")
    except PerfError as exc:
        if exc.errno == errno.EINVAL:
            raise PerfError(f"invalid tracepoint filter: {text!r}", exc.errno) from None
        raise
