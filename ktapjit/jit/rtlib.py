"""The JIT's native runtime: build it, cache it, load it, bind it with ctypes.

The runtime is the small C library in ``ktapjit/jit/runtime/`` (its ABI is
the table in ``runtime_abi.py``; its C side ``ktrt.h``). It is compiled on
first use with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``; ``-O2 -fPIC -shared``, no Python headers) into a per-user cache
directory:

    $KTAPJIT_CACHE_DIR/rt, else $XDG_CACHE_HOME/ktapjit/rt, else ~/.cache/ktapjit/rt

The file name carries a hash of the sources, the ABI version, the flags, the
compiler's identity (``--version``) and the machine, so a change to any of
them builds a new library. Concurrent builds are serialised with a file lock
and the result is renamed into place atomically.

Generated code links against this library: ``library_path()`` gives the
``.so`` to hand to ``llvmlite.binding.load_library_permanently`` or the
linker. ``load()`` gives a ``RuntimeLibrary`` with ctypes prototypes for
every exported function (from the ABI table), used by tests and by the
Python side of the engine (state, output, error messages).

May import: stdlib, ktapjit.diag, ktapjit.cache_paths, ktapjit.jit.runtime_abi.
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
from ktapjit.jit import runtime_abi

RUNTIME_DIR = Path(__file__).with_name("runtime")
ABI_VERSION = runtime_abi.ABI_VERSION  # KRT_ABI_VERSION in ktrt_abi.h
CFLAGS = ("-O2", "-fPIC", "-shared", "-std=gnu11", "-fno-strict-aliasing", "-fno-semantic-interposition")

# Tags (KT_* in the ABI table).
_TAG = runtime_abi.values(runtime_abi.TAGS, "KT_")
NIL, BOOLEAN, INTEGER, STRING, TABLE, FUNCTION = (
    _TAG["NIL"], _TAG["BOOL"], _TAG["INT"], _TAG["STR"], _TAG["TABLE"], _TAG["FUNC"])

# Error codes: OK, E_NOMEM, E_COMPARE, ... (K_OK, K_E_* without the K_).
globals().update(runtime_abi.values(runtime_abi.ERROR_CODES, "K_"))
# How generated functions return: RUN_OK, RUN_EXIT, RUN_ERROR, RUN_TAIL.
globals().update(runtime_abi.values(runtime_abi.RUN_STATUSES, "K_"))
# k_feed's own statuses: FEED_STREAM, FEED_BAD, FEED_MORE.
globals().update(runtime_abi.values(runtime_abi.FEED_STATUSES, "K_"))


class RuntimeBuildError(Exception):
    """The runtime library could not be built (no compiler, or it failed)."""


class KVal(ctypes.Structure):
    """``struct kval``: passed and returned by value."""

    _fields_ = [("tag", ctypes.c_int64), ("payload", ctypes.c_int64)]

    def __repr__(self) -> str:
        return f"KVal({self.tag}, {self.payload:#x})"


class KErr(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int64), ("a", ctypes.c_int64), ("b", ctypes.c_int64)]


# The public state fields as ctypes types: pointers as addresses.
_FIELD_CTYPES = {"int64_t": ctypes.c_int64, "uint64_t": ctypes.c_uint64, "uintptr_t": ctypes.c_uint64,
                 "char *": ctypes.c_void_p, "kval *": ctypes.c_void_p, "kfunc *": ctypes.c_void_p,
                 "kerr": KErr}


class KStateFields(ctypes.Structure):
    """The public prefix of ``struct kstate``."""

    _fields_ = [(f.name, _FIELD_CTYPES[f.ctype]) for f in runtime_abi.STATE_FIELDS]


_P = ctypes.c_void_p
_KVP = ctypes.POINTER(KVal)

# C types as ctypes types. Pointers to const integers and array parameters
# are buffers passed by address; other integer pointers are out-parameters.
_CTYPES = {
    "void": None, "int": ctypes.c_int, "int64_t": ctypes.c_int64, "uint64_t": ctypes.c_uint64,
    "uint32_t": ctypes.c_uint32, "size_t": ctypes.c_size_t, "kval": KVal,
    "kval *": _KVP, "const kval *": _KVP, "int64_t *": ctypes.POINTER(ctypes.c_int64),
    "uint64_t *": ctypes.POINTER(ctypes.c_uint64), "char *": ctypes.c_char_p,
    "const char *": ctypes.c_char_p, "const char **": ctypes.POINTER(_P),
    "const kmark **": ctypes.POINTER(_P),
    "const int64_t *": _P, "const uint64_t *": _P, "const uint8_t *": _P,
    "uint64_t[]": _P, "int64_t[7]": _P,
    "kstate *": _P, "ktable *": _P, "kfeed *": _P, "kfunc *": _P, "kcode": _P, "kstr *": _P,
    "kcell *": _P, "ksnapshot *": _P,
}

# name: (restype, argtypes)
PROTOTYPES = {
    c.name: (_CTYPES[c.ret], [_CTYPES[p.ctype] for p in c.params]) for c in runtime_abi.CALLS
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

_loaded: dict[Path, "RuntimeLibrary"] = {}


def load(cache: Path | None = None) -> "RuntimeLibrary":
    """The runtime library, built if needed and loaded once per path."""
    path = library_path(cache)
    rt = _loaded.get(path)
    if rt is None:
        rt = _loaded[path] = RuntimeLibrary(path)
    return rt


class RuntimeLibrary:
    """The loaded runtime library: every ``k_*`` call of the ABI is an
    attribute, a ctypes function with its prototype."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in PROTOTYPES.items():
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
        rt: RuntimeLibrary,
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
