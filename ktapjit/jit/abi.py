"""The native ABI as LLVM types: values, the run state, closures and the
runtime functions generated code calls, derived from the one table of the
runtime ABI (runtime_abi.py; its C side is runtime/ktrt.h).

Every generated function is a ``kcode``:
``i64 f(kstate *s, kfunc *self, kval *args, i64 nargs, i64 depth, kval *ret)``.
A kval crosses calls into the runtime as two i64 arguments (tag, payload):
that is how the C compilers pass a 16-byte struct of two integers on x86-64
and AArch64, as long as it fits in registers, which every signature below
keeps.

May import: llvmlite.ir, ktapjit.jit.runtime_abi.
"""

from __future__ import annotations

from llvmlite import ir

from ktapjit.jit import runtime_abi
from ktapjit.jit.runtime_abi import CODE_CALLS, STATE_FIELDS as _FIELDS

CONSTANTS = {name: value for name, value, _doc in runtime_abi.CONSTANTS}  # KTABLE_*_AT: struct ktable

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
I8P = ir.IntType(8).as_pointer()
VOID = ir.VoidType()
KVAL = ir.LiteralStructType([I64, I64])
KVALP = KVAL.as_pointer()

# struct kfunc: code, nparams, ncells, cells[] (cells are kcell *, a kval each).
KFUNC = ir.LiteralStructType([I8P, I64, I64, ir.ArrayType(KVALP, 0)])
KFUNCP = KFUNC.as_pointer()

# struct ksnapshot: len, keys[].
SNAPSHOT = ir.LiteralStructType([I64, ir.ArrayType(KVAL, 0)])
SNAPSHOTP = SNAPSHOT.as_pointer()

KERR = ir.LiteralStructType([I64, I64, I64])
I64P = I64.as_pointer()

# C types as LLVM types. A kval argument crosses as two i64 (see above).
# kstate * is the state's own type, defined from the table below.
_LLVM = {
    "void": VOID, "int": I32, "int64_t": I64, "uint64_t": I64, "uintptr_t": I64,
    "kval": (I64, I64), "kval *": KVALP, "const kval *": KVALP, "kcell *": KVALP,
    "int64_t *": I64P, "const int64_t *": I64P, "char *": I8P, "kerr": KERR,
    "ktable *": I8P, "kcode": I8P, "kfunc *": KFUNCP, "ksnapshot *": SNAPSHOTP,
}


def _llvm(ctype: str, state=None, types=_LLVM) -> list[ir.Type]:
    t = state if ctype == "kstate *" else types[ctype]
    return list(t) if isinstance(t, tuple) else [t]


# The public prefix of struct kstate, field by field. Generated code never
# reads tail_fn (k_tail_args fills it), so the state holds it untyped.
STATE = ir.LiteralStructType([
    t for f in _FIELDS for t in _llvm(f.ctype, types={**_LLVM, "kfunc *": I8P, "kval": KVAL})])
STATEP = STATE.as_pointer()
STATE_INDEX = {f.name: i for i, f in enumerate(_FIELDS)}
KCODE = ir.FunctionType(I64, [STATEP, KFUNCP, KVALP, I64, I64, KVALP])

# Runtime functions generated code calls: name -> (return type, argument types).
RUNTIME = {
    c.name: (_llvm(c.ret, STATEP)[0], [t for p in c.params for t in _llvm(p.ctype, STATEP)])
    for c in CODE_CALLS
}


def attributes(effects: frozenset[str]) -> list[str]:
    """LLVM function attributes a runtime call's effects allow. The runtime
    is C: it never unwinds. A call that runs no generated code returns; its
    memory effects bound what LLVM may assume it leaves untouched."""
    attrs = ["nounwind"]
    if "cold" in effects:
        attrs.append("cold")
    if "reenters" in effects:
        return attrs
    attrs.append("willreturn")
    if "writes" not in effects:
        kinds = ["read"] if "reads" in effects else []
        kinds += ["argmem: readwrite"] if "argmem" in effects else []
        attrs.append(f"memory({', '.join(kinds) or 'none'})")
    return attrs


RUNTIME_ATTRIBUTES = {c.name: attributes(c.effects) for c in CODE_CALLS}


class _RuntimeAttributes(ir.FunctionAttributes):
    # llvmlite checks names against a list older than willreturn and memory().
    _known = ir.FunctionAttributes._known | {a for attrs in RUNTIME_ATTRIBUTES.values() for a in attrs}


def define_kcode(module: ir.Module, name: str) -> ir.Function:
    """A generated function. It keeps its unwind table: with every runtime
    call nounwind LLVM would infer nounwind and drop it, and gdb and perf's
    DWARF call graphs need it to walk through generated code."""
    fn = ir.Function(module, KCODE, name)
    fn.attributes.add("uwtable")
    return fn


def declare_runtime(module: ir.Module) -> dict[str, ir.Function]:
    """Declare every runtime function generated code calls, with the
    attributes its effects allow."""
    declared = {}
    for name, (ret, args) in RUNTIME.items():
        fn = declared[name] = ir.Function(module, ir.FunctionType(ret, args), name)
        fn.attributes = _RuntimeAttributes(RUNTIME_ATTRIBUTES[name])
    return declared


_TAGS = runtime_abi.values(runtime_abi.TAGS, "KT_")
_ERRORS = runtime_abi.values(runtime_abi.ERROR_CODES, "K_")
_RUN = runtime_abi.values(runtime_abi.RUN_STATUSES, "K_RUN_")

# Value tags and run statuses.
NIL, BOOLEAN, INTEGER, STRING, TABLE, FUNCTION = (
    _TAGS["NIL"], _TAGS["BOOL"], _TAGS["INT"], _TAGS["STR"], _TAGS["TABLE"], _TAGS["FUNC"])
RUN_OK, RUN_EXIT, RUN_ERROR, RUN_TAIL = _RUN["OK"], _RUN["EXIT"], _RUN["ERROR"], _RUN["TAIL"]

# The type names typeinfer prints, for values whose tag is known at compile time.
EXACT_TAGS = {"nil": NIL, "bool": BOOLEAN, "int": INTEGER, "string": STRING,
              "table": TABLE, "function": FUNCTION}

# The runtime's error codes generated code raises itself.
E_NOMEM = _ERRORS["E_NOMEM"]
E_ARITH = _ERRORS["E_ARITH"]
E_INDEX = _ERRORS["E_INDEX"]
E_DIV_ZERO = _ERRORS["E_DIV_ZERO"]
E_LOOP_LIMIT = _ERRORS["E_LOOP_LIMIT"]
E_FOR_STEP_ZERO = _ERRORS["E_FOR_STEP_ZERO"]
E_EVENT = _ERRORS["E_EVENT"]
E_FOR_NOT_INT = {"initial value": _ERRORS["E_FOR_INITIAL"], "limit": _ERRORS["E_FOR_LIMIT"],
                 "step": _ERRORS["E_FOR_STEP"]}

from ktapjit.jit.lowered import HOST_SLOTS  # noqa: E402,F401  (lower.py reads abi.HOST_SLOTS)
