"""The native ABI as LLVM types: values, the run state, closures and the
runtime functions generated code calls (their C side is runtime/ktrt.h).

Every generated function is a ``kcode``:
``i64 f(kstate *s, kfunc *self, kval *args, i64 nargs, i64 depth, kval *ret)``.
A kval crosses calls into the runtime as two i64 arguments (tag, payload):
that is how the C compilers pass a 16-byte struct of two integers on x86-64
and AArch64, as long as it fits in registers, which every signature below
keeps.

May import: llvmlite.ir, ktapjit.jit.rtlib (constants only).
"""

from __future__ import annotations

from llvmlite import ir

from ktapjit.jit import rtlib

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
I8P = ir.IntType(8).as_pointer()
VOID = ir.VoidType()
KVAL = ir.LiteralStructType([I64, I64])
KVALP = KVAL.as_pointer()

# The public prefix of struct kstate, field by field (ktrt.h gives offsets).
STATE_FIELDS = [
    ("max_table", I64), ("max_string", I64), ("max_loop", I64), ("max_depth", I64),
    ("out", I8P), ("out_len", I64), ("out_cap", I64), ("n_tables", I64), ("n_funcs", I64),
    ("err", ir.LiteralStructType([I64, I64, I64])),
    ("globals", KVALP), ("now_ns", I64), ("site", I64), ("event", KVALP),
    ("tail_args", KVALP), ("tail_n", I64), ("tail_fn", I8P), ("tail_cap", I64),
    ("stack_floor", I64), ("stack_budget", I64),
]
STATE = ir.LiteralStructType([t for _, t in STATE_FIELDS])
STATEP = STATE.as_pointer()
STATE_INDEX = {name: i for i, (name, _) in enumerate(STATE_FIELDS)}

# struct kfunc: code, nparams, ncells, cells[] (cells are kcell *, a kval each).
KFUNC = ir.LiteralStructType([I8P, I64, I64, ir.ArrayType(KVALP, 0)])
KFUNCP = KFUNC.as_pointer()
KCODE = ir.FunctionType(I64, [STATEP, KFUNCP, KVALP, I64, I64, KVALP])

# struct ksnapshot: len, keys[].
SNAPSHOT = ir.LiteralStructType([I64, ir.ArrayType(KVAL, 0)])
SNAPSHOTP = SNAPSHOT.as_pointer()

# Value tags (KT_* in ktrt.h) and run statuses (K_RUN_*).
NIL, BOOLEAN, INTEGER, STRING, TABLE, FUNCTION = (
    rtlib.NIL, rtlib.BOOLEAN, rtlib.INTEGER, rtlib.STRING, rtlib.TABLE, rtlib.FUNCTION)
RUN_OK, RUN_EXIT, RUN_ERROR, RUN_TAIL = rtlib.RUN_OK, rtlib.RUN_EXIT, rtlib.RUN_ERROR, rtlib.RUN_TAIL

# The type names typeinfer prints, for values whose tag is known at compile time.
EXACT_TAGS = {"nil": NIL, "bool": BOOLEAN, "int": INTEGER, "string": STRING,
              "table": TABLE, "function": FUNCTION}

_KV = (I64, I64)  # a kval argument

# Runtime functions: name -> (return type, argument types).
RUNTIME = {
    "k_fail": (I32, [STATEP, I32, I64, I64]),
    "k_fail_table": (I32, [STATEP, I8P, I32]),
    "k_table_new": (I8P, [STATEP]),
    "k_table_get": (I32, [I8P, *_KV, KVALP]),
    "k_table_set": (I32, [I8P, *_KV, *_KV]),
    "k_table_clear": (VOID, [I8P]),
    "k_snapshot_scratch": (SNAPSHOTP, [STATEP, I8P]),
    "k_stringof": (I32, [STATEP, *_KV, KVALP]),
    "k_concat": (I32, [STATEP, *_KV, *_KV, KVALP]),
    "k_compare": (I32, [STATEP, *_KV, *_KV, I64.as_pointer()]),
    "k_len": (I32, [STATEP, *_KV, I64.as_pointer()]),
    "k_print": (I32, [STATEP, KVALP, I64]),
    "k_printf": (I32, [STATEP, *_KV, KVALP, I64]),
    "k_print_hist": (I32, [STATEP, *_KV, *_KV]),
    "k_print_folded": (I32, [STATEP, *_KV]),
    "k_hist": (I32, [STATEP, KVALP]),
    "k_lhist": (I32, [STATEP, KVALP]),
    "k_stats": (I32, [STATEP, KVALP]),
    "k_print_agg": (I32, [STATEP, *_KV]),
    "k_cell_new": (KVALP, [STATEP, *_KV]),
    "k_escape": (VOID, [*_KV]),
    "k_closure_new": (KFUNCP, [STATEP, I8P, I64, I64]),
    "k_call": (I64, [STATEP, *_KV, KVALP, I64, I64, KVALP, I64]),
    "k_tail_args": (KVALP, [STATEP, *_KV, I64, I64]),
    "k_table_fill": (I32, [STATEP, I8P, I64.as_pointer(), I64, I64.as_pointer(), I64.as_pointer()]),
}

# The runtime's error codes generated code raises itself.
E_NOMEM = rtlib.E_NOMEM
E_ARITH = rtlib.E_ARITH
E_INDEX = rtlib.E_INDEX
E_DIV_ZERO = rtlib.E_DIV_ZERO
E_LOOP_LIMIT = rtlib.E_LOOP_LIMIT
E_FOR_STEP_ZERO = rtlib.E_FOR_STEP_ZERO
E_EVENT = rtlib.E_EVENT
E_FOR_NOT_INT = {"initial value": rtlib.E_FOR_INITIAL, "limit": rtlib.E_FOR_LIMIT,
                 "step": rtlib.E_FOR_STEP}

# Host values follow the script globals in s->globals: run_api.Host's
# attributes, in this order (lower.py reads them by position).
HOST_SLOTS = ("num_cpus", "arch", "kernel_release")
