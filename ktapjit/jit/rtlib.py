"""The JIT's native runtime: build it, cache it, load it, bind it with ctypes.

The runtime is the small C library in ``ktapjit/jit/runtime/`` (ABI in
``ktrt.h``). It is compiled on first use with the system C compiler (``$CC``,
else ``cc``, ``gcc`` or ``clang``; ``-O2 -fPIC -shared``, no Python headers)
into a per-user cache directory:

    $KTAPJIT_CACHE_DIR/rt, else $XDG_CACHE_HOME/ktapjit/rt, else ~/.cache/ktapjit/rt

The file name carries a hash of the sources, the ABI version, the flags, the
compiler's identity (``--version``) and the machine, so a change to any of
them builds a new library. Concurrent builds are serialised with a file lock
and the result is renamed into place atomically.

Generated code links against this library: ``library_path()`` gives the
``.so`` to hand to ``llvmlite.binding.load_library_permanently`` or the
linker. ``load()`` gives a ``Runtime`` with ctypes prototypes for every
exported function, used by tests and by the Python side of the engine
(state, output, error messages).

May import: stdlib, ktapjit.diag, ktapjit.cache_paths.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shlex
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from ktapjit.cache_paths import cache_root
from ktapjit.diag import RuntimeFault

RUNTIME_DIR = Path(__file__).with_name("runtime")
ABI_VERSION = 5  # KRT_ABI_VERSION in ktrt.h
CFLAGS = ("-O2", "-fPIC", "-shared", "-std=gnu11", "-fno-strict-aliasing", "-fno-semantic-interposition")

# Tags (KT_* in ktrt.h).
NIL, BOOLEAN, INTEGER, STRING, TABLE, FUNCTION = range(6)

# Error codes (K_OK, K_E_* in ktrt.h).
(
    OK, E_NOMEM, E_COMPARE, E_ARITH, E_CONCAT, E_INDEX, E_CALL, E_LEN, E_DIV_ZERO,
    E_NIL_INDEX, E_TABLE_OVERFLOW, E_STRING_TOO_LONG, E_LOOP_LIMIT, E_STACK_OVERFLOW,
    E_TOO_MANY_ARGS, E_FOR_INITIAL, E_FOR_LIMIT, E_FOR_STEP, E_FOR_STEP_ZERO,
    E_PRINTF_FORMAT, E_PRINTF_ARGS, E_PRINTF_BADARG, E_PRINTF_CONV, E_PRINTF_INCOMPLETE,
    E_PRINTF_WIDTH, E_HIST_TABLE, E_HIST_ROWS, E_HIST_VALUES, E_EVENT, E_NATIVE_STACK,
    E_FOLDED_TABLE, E_FOLDED_VALUES, E_AGG_TABLE, E_AGG_VALUE, E_AGG_KIND,
    E_LHIST_BOUND_TYPE, E_LHIST_BOUNDS, E_LHIST_OTHER, E_PRINT_AGG_TABLE, E_PRINT_AGG_VALUES,
) = range(40)

# How generated functions return (K_RUN_* in ktrt.h).
RUN_OK, RUN_EXIT, RUN_ERROR, RUN_TAIL = range(4)
# k_feed's own statuses (K_FEED_* in ktrt.h).
FEED_STREAM, FEED_BAD, FEED_MORE = 16, 17, 18


class RuntimeBuildError(Exception):
    """The runtime library could not be built (no compiler, or it failed)."""


class KVal(ctypes.Structure):
    """``struct kval``: passed and returned by value."""

    _fields_ = [("tag", ctypes.c_int64), ("payload", ctypes.c_int64)]

    def __repr__(self) -> str:
        return f"KVal({self.tag}, {self.payload:#x})"


class KErr(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int64), ("a", ctypes.c_int64), ("b", ctypes.c_int64)]


class KStateFields(ctypes.Structure):
    """The public prefix of ``struct kstate``."""

    _fields_ = [
        ("max_table", ctypes.c_int64),
        ("max_string", ctypes.c_int64),
        ("max_loop", ctypes.c_int64),
        ("max_depth", ctypes.c_int64),
        ("out", ctypes.c_void_p),
        ("out_len", ctypes.c_uint64),
        ("out_cap", ctypes.c_uint64),
        ("n_tables", ctypes.c_int64),
        ("n_funcs", ctypes.c_int64),
        ("err", KErr),
        ("globals", ctypes.c_void_p),
        ("now_ns", ctypes.c_int64),
        ("site", ctypes.c_int64),
        ("event", ctypes.c_void_p),
        ("tail_args", ctypes.c_void_p),
        ("tail_n", ctypes.c_int64),
        ("tail_fn", ctypes.c_void_p),
        ("tail_cap", ctypes.c_int64),
        ("stack_floor", ctypes.c_uint64),
        ("stack_budget", ctypes.c_uint64),
    ]


_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_KV = KVal
_KVP = ctypes.POINTER(KVal)
_I64P = ctypes.POINTER(ctypes.c_int64)

# name: (restype, argtypes)
_PROTOTYPES = {
    "k_intern": (_P, [ctypes.c_char_p, ctypes.c_uint32]),
    "k_intern_count": (ctypes.c_uint64, []),
    "k_state_new": (_P, [_I64, _I64, _I64, _I64]),
    "k_state_free": (None, [_P]),
    "k_fail": (_INT, [_P, _INT, _I64, _I64]),
    "k_fail_table": (_INT, [_P, _P, _INT]),
    "k_err_message": (_INT, [_P, ctypes.c_char_p, ctypes.c_size_t]),
    "k_type_name": (ctypes.c_char_p, [_I64]),
    "k_out_take": (None, [_P, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_uint64)]),
    "k_out_write": (_INT, [_P, ctypes.c_char_p, ctypes.c_uint64]),
    "k_out_marks_on": (None, [_P]),
    "k_out_marks_take": (None, [_P, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_uint64)]),
    "k_key_hash": (ctypes.c_uint64, [_KV]),
    "k_table_new": (_P, [_P]),
    "k_table_get": (_INT, [_P, _KV, _KVP]),
    "k_table_set": (_INT, [_P, _KV, _KV]),
    "k_table_len": (_I64, [_P]),
    "k_tables_live": (_I64, [_P]),
    "k_arena_bytes": (_I64, [_P]),
    "k_table_clear": (None, [_P]),
    "k_table_keys": (_P, [_P]),
    "k_snapshot_len": (_I64, [_P]),
    "k_snapshot_get": (_KV, [_P, _I64]),
    "k_snapshot_free": (None, [_P]),
    "k_value_text": (_INT, [_P, _KV, _KVP]),
    "k_stringof": (_INT, [_P, _KV, _KVP]),
    "k_concat": (_INT, [_P, _KV, _KV, _KVP]),
    "k_compare": (_INT, [_P, _KV, _KV, _I64P]),
    "k_len": (_INT, [_P, _KV, _I64P]),
    "k_div": (_INT, [_P, _I64, _I64, _I64P]),
    "k_mod": (_INT, [_P, _I64, _I64, _I64P]),
    "k_print": (_INT, [_P, _KVP, _I64]),
    "k_printf": (_INT, [_P, _KV, _KVP, _I64]),
    "k_print_hist": (_INT, [_P, _KV, _KV]),
    "k_print_folded": (_INT, [_P, _KV]),
    "k_hist": (_INT, [_P, _KVP]),
    "k_lhist": (_INT, [_P, _KVP]),
    "k_stats": (_INT, [_P, _KVP]),
    "k_print_agg": (_INT, [_P, _KV]),
    "k_enter": (_I64, [_P, _P]),
    # the native event path (feed.c)
    "k_feed_new": (_P, [_I64]),
    "k_feed_free": (None, [_P]),
    "k_feed_layout": (_I64, [_P, ctypes.c_uint64, _I64]),
    "k_feed_resolver": (None, [_P, _I64, _I64, _I64, _I64]),
    "k_feed_id": (_INT, [_P, ctypes.c_uint64, _I64, _I64]),
    "k_feed_group": (_I64, [_P]),
    "k_feed_probe": (_I64, [_P, _I64, _P, _I64, ctypes.c_char_p, ctypes.c_char_p]),
    "k_feed_slot": (_INT, [_P, _I64, _I64, _I64, _I64, _I64, _I64, _KV]),
    "k_feed_dyn": (_INT, [_P, _I64, _I64, _I64, _I64, ctypes.c_char_p]),
    "k_feed_filter": (_INT, [_P, _I64, _P, _I64, ctypes.c_char_p, _I64]),
    "k_feed_timer": (_INT, [_P, _I64, _P]),
    "k_feed_argstr": (_INT, [_P, _I64, _P, _I64, ctypes.c_char_p, _I64]),
    "k_feed_sites": (_INT, [_P, _I64, _KVP, _I64]),
    "k_argstr_eval": (_INT, [_P, _I64, ctypes.c_char_p, _I64, ctypes.c_char_p, ctypes.c_uint64, _KVP]),
    "k_feed": (_I64, [_P, _P, _P, ctypes.c_uint64, _P, ctypes.c_uint64, ctypes.c_uint64]),
    "k_feed_count": (_I64, [_P, ctypes.c_uint64]),
    "k_feed_order": (_I64, [_P, _P, ctypes.c_uint64, _P, ctypes.c_uint64]),
    "k_feed_push": (_INT, [_P, _I64, _P, ctypes.c_uint64]),
    "k_feed_release": (_I64, [_P, _P, _I64, ctypes.c_uint64]),
    "k_feed_discard": (_I64, [_P]),
    "k_feed_keep": (None, [_P, _I64]),
    "k_feed_kept": (_P, [_P, ctypes.POINTER(ctypes.c_uint64)]),
    "k_feed_kept_clear": (None, [_P]),
    "k_feed_info": (None, [_P, _I64P]),
    "k_feed_fault": (ctypes.c_char_p, [_P, _I64]),
    "k_feed_message": (ctypes.c_char_p, [_P]),
}


# -- building -------------------------------------------------------------------


def cache_dir() -> Path:
    """Where built libraries go (see the module docstring)."""
    return cache_root() / "rt"


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` (split like a shell), else cc, gcc, clang."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        cmd = shlex.split(cc)
        if shutil.which(cmd[0]):
            return cmd
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise RuntimeBuildError(
        "ktapjit: the JIT needs a C compiler to build its runtime, and none was found "
        "(set CC or install gcc)"
    )


def _sources() -> list[Path]:
    return sorted(RUNTIME_DIR.glob("*.[ch]"))


def _build_key(compiler: list[str]) -> str:
    h = hashlib.sha256()
    h.update(f"abi={ABI_VERSION}\0flags={' '.join(CFLAGS)}\0".encode())
    h.update(f"machine={platform.machine()}\0".encode())
    h.update(" ".join(compiler).encode() + b"\0")
    try:
        version = subprocess.run(
            [*compiler, "--version"], capture_output=True, timeout=30, check=False
        ).stdout
    except OSError as e:
        raise RuntimeBuildError(f"ktapjit: cannot run the C compiler {compiler[0]}: {e}") from e
    h.update(version + b"\0")
    for src in _sources():
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _fingerprint(compiler: list[str]) -> str:
    """What the build key depends on, cheaply (file metadata, no subprocess):
    asking the compiler its --version costs ~35 ms of every JIT start-up."""
    h = hashlib.sha256()
    h.update(f"abi={ABI_VERSION}\0flags={' '.join(CFLAGS)}\0{platform.machine()}\0".encode())
    for path in [Path(shutil.which(compiler[0]) or compiler[0]).resolve(), *_sources()]:
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update(" ".join(compiler).encode())
    return h.hexdigest()[:24]


# One runtime per process and cache directory: if the sources change while a
# process runs (a developer's long fuzz run), a second copy must not load
# beside the first, with its own intern table and perhaps other layouts.
_chosen: dict[Path, Path] = {}


def library_path(cache: Path | None = None) -> Path:
    """The runtime's shared library, building it first if it is not cached."""
    directory = cache if cache is not None else cache_dir()
    chosen = _chosen.get(directory)
    if chosen is None:
        chosen = _chosen[directory] = _find_or_build(directory)
    return chosen


def _find_or_build(directory: Path) -> Path:
    compiler = find_compiler()
    memo = directory / f"fingerprint-{_fingerprint(compiler)}"
    try:
        known = directory / memo.read_text().strip()
        if known.exists():
            return known
    except OSError:
        pass
    target = directory / f"libktrt-{_build_key(compiler)}.so"
    if target.exists():
        _remember(memo, target)
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeBuildError(f"ktapjit: cannot create the JIT cache directory {directory}: "
                                f"{e.strerror or e} (set KTAPJIT_CACHE_DIR)") from None
    with open(directory / f"{target.name}.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.exists():  # another process may have built it meanwhile
                _compile(compiler, target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _remember(memo, target)
    return target


def _remember(memo: Path, target: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=".memo-")
        with os.fdopen(fd, "w") as handle:
            handle.write(target.name)
        os.replace(tmp, memo)
    except OSError:
        pass  # an unwritable cache only costs the next start-up the compiler check


def _compile(compiler: list[str], target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [*compiler, *CFLAGS, "-o", tmp, *(str(s) for s in _sources() if s.suffix == ".c")]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[:5]
            reason = " | ".join(detail) or f"{compiler[0]} exited with status {done.returncode}"  # a silent failure
            raise RuntimeBuildError("ktapjit: building the JIT runtime failed: " + reason)
        os.replace(tmp, target)
    except OSError as e:
        raise RuntimeBuildError(f"ktapjit: building the JIT runtime failed: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- loading --------------------------------------------------------------------

_loaded: dict[Path, "Runtime"] = {}


def load(cache: Path | None = None) -> "Runtime":
    """The runtime library, built if needed and loaded once per path."""
    path = library_path(cache)
    rt = _loaded.get(path)
    if rt is None:
        rt = _loaded[path] = Runtime(path)
    return rt


class Runtime:
    """ctypes bindings: every exported ``k_*`` function is an attribute."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)

    # values
    @staticmethod
    def nil() -> KVal:
        return KVal(NIL, 0)

    @staticmethod
    def boolean(b: bool) -> KVal:
        return KVal(BOOLEAN, 1 if b else 0)

    @staticmethod
    def integer(n: int) -> KVal:
        return KVal(INTEGER, n)

    def string(self, data: bytes) -> KVal:
        ptr = self.k_intern(data, len(data))
        if not ptr:
            raise MemoryError("k_intern")
        return KVal(STRING, ptr)

    @staticmethod
    def string_bytes(v: KVal) -> bytes:
        """The bytes of a string value (kstr: len at offset 8, data at 12)."""
        assert v.tag == STRING
        n = ctypes.c_uint32.from_address(v.payload + 8).value
        return ctypes.string_at(v.payload + 12, n)

    def state(self, **limits: int) -> "State":
        return State(self, **limits)


class State:
    """One ``kstate``: limits, output buffer, identities, the last error."""

    def __init__(
        self,
        rt: Runtime,
        max_table: int = 1_000_000,
        max_string: int = 4096,
        max_loop: int = 1_000_000,
        max_depth: int = 200,
    ):
        self.rt = rt
        self.ptr = rt.k_state_new(max_table, max_string, max_loop, max_depth)
        if not self.ptr:
            raise MemoryError("k_state_new")

    def close(self) -> None:
        if self.ptr:
            self.rt.k_state_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> "State":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()

    @property
    def fields(self) -> KStateFields:
        return KStateFields.from_address(self.ptr)

    def take_output(self) -> bytes:
        p, n = ctypes.c_void_p(), ctypes.c_uint64()
        self.rt.k_out_take(self.ptr, ctypes.byref(p), ctypes.byref(n))
        return ctypes.string_at(p.value, n.value) if n.value else b""

    def take_marks(self) -> list[tuple[int, int, int, int, int]]:
        """The output marks recorded since the last take (ktrt.h, "Output
        marks"), as (kind, at, len, a, b); take them with the output."""
        p, n = ctypes.c_void_p(), ctypes.c_uint64()
        self.rt.k_out_marks_take(self.ptr, ctypes.byref(p), ctypes.byref(n))
        if not n.value:
            return []
        return list(struct.iter_unpack("=5q", ctypes.string_at(p.value, 40 * n.value)))

    def error_message(self) -> str:
        n = self.rt.k_err_message(self.ptr, None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        self.rt.k_err_message(self.ptr, buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def check(self, rc: int) -> None:
        """Raise the recorded error as a RuntimeFault when rc is nonzero."""
        if rc:
            raise RuntimeFault(self.error_message())

    def table_new(self) -> int:
        t = self.rt.k_table_new(self.ptr)
        if not t:
            raise MemoryError("k_table_new")
        return t
