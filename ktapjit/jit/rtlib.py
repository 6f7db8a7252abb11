"""The JIT's native runtime: load it, bind it with ctypes.

The runtime is the small C library in ``ktapjit/jit/runtime/`` (its ABI is
the table in ``runtime_abi.py``; its C side ``ktrt.h``). No C compiler runs
here: ``runtime_build.py`` compiled it, at development or packaging time,
into LLVM bitcode and a relocatable object per target, shipped in
``runtime/generated/``. This module links the host's object with the JIT's
own linker (``elflink``) into a position-independent image, caches the image
(best effort) in

    $KTAPJIT_CACHE_DIR/rt, else $XDG_CACHE_HOME/ktapjit/rt, else ~/.cache/ktapjit/rt

and maps it into the process (``image.map_image``), its libc calls bound to
the process's libc. A process maps one copy: it holds the intern table.

``load()`` gives a ``RuntimeLibrary`` with ctypes prototypes for every
exported function (from the ABI table), used by tests and by the Python side
of the engine (state, output, error messages); compiled scripts import its
symbols (``RuntimeLibrary.symbols``). For other targets and for bundles:
``runtime_object(target)``, ``runtime_bitcode(target)``, ``runtime_image(target)``.

May import: stdlib, ktapjit.diag, ktapjit.cache_paths, ktapjit.jit (runtime_abi,
runtime_files, image, elflink).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import struct
from pathlib import Path

from ktapjit.cache_paths import cache_root
from ktapjit.diag import RuntimeFault
from ktapjit.jit import runtime_abi, runtime_files
from ktapjit.jit.image import Image, ImageError, MappedImage, host_machine, map_image, store_image

RUNTIME_DIR = runtime_files.RUNTIME_DIR
ABI_VERSION = runtime_abi.ABI_VERSION  # KRT_ABI_VERSION in ktrt_abi.h

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
    """The runtime could not be linked or loaded here; ``str()`` is one line."""


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
    "kstate *": _P, "ktable *": _P, "kfeed *": _P, "kfunc *": _P, "kcode": _P, "kwalk": _P, "kstr *": _P,
    "kcell *": _P, "ksnapshot *": _P,
}

# name: (restype, argtypes)
PROTOTYPES = {
    c.name: (_CTYPES[c.ret], [_CTYPES[p.ctype] for p in c.params]) for c in runtime_abi.CALLS
}


# -- the runtime for a target ---------------------------------------------------


def cache_dir() -> Path:
    """Where linked runtime images go (see the module docstring)."""
    return cache_root() / "rt"


def _target(target: str | None) -> str:
    """A target name from a name, an LLVM triple or None (this machine)."""
    try:
        return runtime_files.target_name(target or host_machine())
    except ValueError as exc:
        raise RuntimeBuildError(f"ktapjit: {exc}") from None


def runtime_object(target: str | None = None) -> bytes:
    """The runtime for `target` (a name such as "aarch64" or an LLVM triple;
    default: this machine's) as a relocatable ELF object, compiled from its
    bitcode by ``runtime_build`` for the target's generic CPU."""
    target = _target(target)
    try:
        return runtime_files.object_path(target).read_bytes()
    except OSError as exc:
        raise RuntimeBuildError(f"ktapjit: the JIT runtime for {target} is not in this installation "
                                f"({exc.strerror or exc})") from None


def runtime_bitcode(target: str | None = None) -> bytes:
    """The runtime for `target` as LLVM bitcode (for another CPU, or inlining)."""
    target = _target(target)
    try:
        return runtime_files.bitcode_path(target).read_bytes()
    except OSError as exc:
        raise RuntimeBuildError(f"ktapjit: the JIT runtime's bitcode for {target} is not in this "
                                f"installation ({exc.strerror or exc})") from None


@functools.cache
def runtime_identity(target: str | None = None) -> str:
    """A name for the runtime's code: compiled scripts are cached against it."""
    return hashlib.sha256(runtime_object(target)).hexdigest()[:24]


def runtime_image(target: str | None = None) -> Image:
    """The runtime for `target`, linked into an image (see ``image.py``)."""
    from ktapjit.jit import elflink  # only when the cache misses

    target = _target(target)
    try:
        return elflink.link([(runtime_files.object_path(target).name, runtime_object(target))])
    except elflink.LinkError as exc:
        raise RuntimeBuildError(f"ktapjit: cannot link the JIT runtime: {exc}") from None


def _cached_image() -> Image:
    """This machine's runtime image, from the cache when it holds it; an
    unusable cache costs only the link (a few milliseconds)."""
    path = cache_dir() / f"ktrt-{host_machine()}-{runtime_identity()}.kimg"
    try:
        return Image.from_bytes(path.read_bytes())
    except (OSError, ImageError):
        pass
    image = runtime_image()
    store_image(path, image)
    return image


# -- loading --------------------------------------------------------------------

_loaded: "RuntimeLibrary | None" = None


def load() -> "RuntimeLibrary":
    """The runtime, mapped once per process."""
    global _loaded
    if _loaded is None:
        try:
            mapped = map_image(_cached_image(), what="the JIT runtime")
        except ImageError as exc:
            raise RuntimeBuildError(str(exc)) from None
        _loaded = RuntimeLibrary(mapped)
    return _loaded


class RuntimeLibrary:
    """The loaded runtime: every ``k_*`` call of the ABI is an attribute, a
    ctypes function with its prototype (bound on first use)."""

    def __init__(self, mapped: MappedImage):
        self.mapped = mapped
        self.symbols = mapped.symbols  # every global symbol's address

    def address(self, name: str) -> int:
        address = self.symbols.get(name)
        if address is None:
            raise AttributeError(f"the JIT runtime has no symbol {name}")
        return address

    def function(self, name: str, restype, argtypes):
        """A ctypes function for a runtime symbol outside the ABI table."""
        return ctypes.CFUNCTYPE(restype, *argtypes)(self.address(name))

    def __getattr__(self, name: str):
        prototype = PROTOTYPES.get(name)
        if prototype is None:
            raise AttributeError(name)
        fn = self.function(name, *prototype)
        setattr(self, name, fn)
        return fn

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
