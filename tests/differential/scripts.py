"""Hypothesis strategies for random, well-formed ktap scripts.

``scripts()`` draws a ``Script``: source text that always compiles (a
generated script that exits 2 is a bug of this module), plus the script
arguments it reads and whether it must run on a recording.

How the generator keeps scripts well formed and interesting:

* **Scopes are tracked.** A ``Ctx`` lists every variable visible at the
  point being written, so every name read or assigned was declared (an
  undeclared name is a compile error), event values appear only lexically in
  probe bodies, ``break`` only in loops.
* **Types are tracked too.** Each variable has a *kind* (``INT``, ``STR``,
  table of ints ``TAB``, ...) and expressions are drawn by the type they
  should have (``int_expr``, ``str_expr``, ...), so most scripts run long
  enough to do something. Wrong types are then added on purpose, rarely
  (``hazard``): type errors, division by zero, bad printf formats, calls with
  too many arguments. Those are runtime errors both engines must report
  identically.
* **Small name pools** (``a b c`` for integer globals, ``x y`` for integer
  locals, ...) so reads hit writes, closures capture variables that others
  change, and redeclarations shadow.
* **Loops are bounded** by counters no statement may assign (``n0``, ``c1``),
  small constant bounds, and keys from small pools (tables stay small). The
  harness also passes a low ``--max-loop``, so a runaway is a clean runtime
  error. User functions only call functions declared before them, and not
  from inside loops, so call trees stay small; recursion is a dedicated,
  bounded pair (``rec``, non-tail; ``spin``, tail calls).

The layout of a script: global declarations, functions, closures made by
them, then top-level statements interleaved with probes, a timer and
``trace_end`` (blocks are registered wherever they appear).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from hypothesis import strategies as st

from tests.differential.streams import COMMON_FIELDS, RAW_ENTER, TRACEPOINTS, UNSIGNED_FIELDS, Tracepoint

# --- kinds of variables ------------------------------------------------------------------------

INT = "int"      # holds an integer
STR = "str"      # holds a string
TAB = "tab"      # a table whose values are integers (counters)
MIX = "mix"      # a table with values of any type, nested tables included
HIST = "hist"    # a table of non-negative counts, for print_hist
NEST = "nest"    # a table whose .sub is a table of integers
CLOS = "clos"    # a closure taking one integer, returning an integer
PAIR = "pair"    # a table {inc = closure(d), get = closure()} sharing one upvalue
FUNS = "funs"    # a table of closures like CLOS
AGG = "agg"      # a table of aggregations (hist, lhist, stats), for print_agg
ANY = "any"      # anything (nil included): only printed, compared, concatenated...

# The globals every script declares, with their kinds.
GLOBALS: Mapping[str, str] = {
    "a": INT, "b": INT, "c": INT, "s": STR, "w": STR,
    "t": TAB, "u": TAB, "m": MIX, "h": HIST, "g": NEST, "fs": FUNS, "ag": AGG,
}
INT_LOCALS = ("x", "y")
STR_LOCALS = ("z",)
FOR_VARS = ("i", "j")               # numeric-for variables, by loop nesting
NAME_KEYS = ("x", "y", "name", "end")  # t.NAME fields; `end` is a keyword, fine after a dot

# Byte strings that stress output and escapes: NUL, tab, newline, quotes,
# backslash, high bytes, printf's %, a glob.
STRING_POOL = (b"", b"a", b"x", b"hello", b"read", b"1", b"%d", b"a\tb", b"nl\n", b'q"t',
               b"sq'", b"back\\slash", b"nul\0byte", b"\xff\xfe", b"bash", b"b*")
STRING_ALPHABET = b"abxyz019 %\t\n\"'\\\0\xff-_/*"

# Integer literals: small ones, and the int64 edges (INT64_MIN / -1 and wrapping).
EDGE_INTS = ("9223372036854775807", "0x7fffffffffffffff", "0x8000000000000000",
             "0xffffffffffffffff", "-1", "255", "0x10", "1000", "-9223372036854775807")

TIMERS = ("tick-1ms", "tick-2ms", "tick-500us", "tick-5msec", "tick-1000usec", "tick-1s", "tick-1sec")

INT_OPS = ("+", "-", "*", "&", "|", "^", "<<", ">>")
COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")
COMPOUND_OPS = ("+=", "-=", "*=", "/=", "%=")

# printf pieces: conversions that take an integer, and the invalid ones.
INT_CONVERSIONS = "diuxXoc"
BAD_CONVERSIONS = ("%f", "%q", "%p", "%e", "%hhd", "%*d", "%lld%", "%5000d")
PRINTF_TEXT = (" ", "|", "x=", ": ", "\\t", "[", "]", "ab")

# Keys shaped like stack() text (innermost frame first, `+0xOFFSET`s), for print_folded.
STACK_KEYS = ("inner+0x1a\nouter+0x2", "inner+0x1b\nouter+0x9", "[unknown]\nmain+0x10", "\n\nx", "a\n")

BAD_STEPS = ("0", "nil", '"2"')
# lhist bounds; the aggregation under "l<i>" always uses LHIST_BOUNDS[i].
LHIST_BOUNDS = ("0, 100, 10", "-2048, 2048, 1024", "0, 5, 1")
BAD_LHIST_BOUNDS = ("0, 10, 3", "10, 0, 1", "0, 2000, 1", "0, nil, 1", "0, 100, 20")
MIX_VALUES = ("{1, 2}", "{x = {}}", "nil", "true", '"v"', "3")   # m's first values, nested tables too

# Multipliers of the deliberate-error weights; the first (none) is what shrinking reaches.
RISK_LEVELS = (0.0, 0.0, 0.0, 0.25, 1.0, 2.0)

SCRIPT_ARGS = ("1", "-7", "x", "99999999999999999999", "0x10", "", "a b")


@dataclass(frozen=True)
class Probe:
    """An EVENTDEF and the recording's tracepoints it matches."""

    text: str
    events: tuple[Tracepoint, ...]


def _probe(text: str, *names: str) -> Probe:
    by_name = {tp.name: tp for tp in TRACEPOINTS}
    return Probe(text, tuple(by_name[n] for n in names))


# Exact names, globs (* ? [..]) and lists. Globs match what the recording
# carries, which is always TRACEPOINTS (streams.py).
PROBES = (
    _probe("syscalls:sys_enter_openat", "syscalls:sys_enter_openat"),
    _probe("syscalls:sys_exit_read", "syscalls:sys_exit_read"),
    _probe("sched:sched_switch", "sched:sched_switch"),
    _probe("sched:sched_process_exec", "sched:sched_process_exec"),
    _probe("raw_syscalls:sys_enter", "raw_syscalls:sys_enter"),
    _probe("syscalls:sys_enter_*", "syscalls:sys_enter_openat"),
    _probe("syscalls:sys_exit_rea?", "syscalls:sys_exit_read"),
    _probe("sched:sched_[s]witch", "sched:sched_switch"),
    _probe("syscalls:*", "syscalls:sys_enter_openat", "syscalls:sys_exit_read"),
    _probe("sched:*", "sched:sched_switch", "sched:sched_process_exec"),
    _probe("*:*", *(tp.name for tp in TRACEPOINTS)),
    _probe("syscalls:sys_enter_openat, sched:sched_switch",
           "syscalls:sys_enter_openat", "sched:sched_switch"),
    _probe("raw_syscalls:*, syscalls:sys_exit_read", "raw_syscalls:sys_enter", "syscalls:sys_exit_read"),
)


@dataclass(frozen=True)
class Script:
    """A generated script: its source, its arguments, and whether it must run on
    a recording (it has probes or timers, or reads the clock, which is only
    deterministic in stream time)."""

    source: str
    args: tuple[str, ...] = ()
    needs_stream: bool = False


@dataclass
class _Meta:
    """What the script being written uses, found while writing it."""

    uses_clock: bool = False
    uses_blocks: bool = False


@dataclass(frozen=True)
class Ctx:
    """Where the generator is writing: what is in scope and what is allowed."""

    vars: Mapping[str, str]                 # visible variable -> kind
    readonly: frozenset[str] = frozenset()  # loop counters: read, never assigned
    funcs: tuple[tuple[str, int], ...] = ()  # callable int functions (name, arity)
    where: str = "top"                      # top, probe, timer, end, func, closure
    events: tuple[Tracepoint, ...] = ()     # the probe's tracepoints (event values allowed)
    loops: int = 0                          # enclosing loops in this function body
    depth: int = 2                          # compound statements that may still nest
    nargs: int = 0                          # script arguments passed

    def names(self, *kinds: str) -> list[str]:
        return sorted(n for n, k in self.vars.items() if k in kinds)

    def assignable(self, *kinds: str) -> list[str]:
        return [n for n in self.names(*kinds) if n not in self.readonly]

    def declare(self, name: str, kind: str, readonly: bool = False) -> "Ctx":
        """A new variable (a redeclaration shadows, so the kind may change)."""
        vars_ = {**self.vars, name: kind}
        ro = self.readonly | {name} if readonly else self.readonly - {name}
        return replace(self, vars=vars_, readonly=ro)

    @property
    def in_function(self) -> bool:
        return self.where in ("func", "closure")


def quote(raw: bytes | str, q: str = '"') -> str:
    """A ktap string literal for ``raw``, escaping what must be escaped."""
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    out = []
    for byte in raw:
        ch = chr(byte)
        if ch in "\\\"'":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif byte == 0:
            out.append("\\0")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return q + "".join(out) + q


def _indent(lines: Sequence[str]) -> list[str]:
    return ["\t" + line for line in lines]


class _Writer:
    """Writes one script, drawing every choice from hypothesis.

    ``choose`` and ``chance`` shrink toward their first / False outcome, so a
    shrunk failing script is the plainest one: few statements, no hazards.
    """

    def __init__(self, draw: Callable):
        self._draw = draw
        self.meta = _Meta()
        # How often runtime errors are provoked, per script: most scripts get
        # none and run to the end; the others die early in varied ways.
        self.risk = self.pick(RISK_LEVELS)

    # --- drawing primitives -------------------------------------------------------------------

    def pick(self, items: Sequence):
        return self._draw(st.sampled_from(items))

    def chance(self, p: float) -> bool:
        return self._draw(st.integers(0, 999)) >= 1000 - int(p * 1000)

    def count(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def mishap(self, p: float) -> bool:
        """``chance`` scaled by the script's risk: for deliberate errors."""
        return self.chance(min(1.0, p * self.risk))

    def choose(self, options: Sequence[tuple[float, Callable[[], object]]]):
        """Call one of the thunks, with the given relative weights (0 = never)."""
        live = [(int(w * 10), fn) for w, fn in options if int(w * 10) > 0]
        n = self._draw(st.integers(0, sum(w for w, _ in live) - 1))
        for w, fn in live:
            if n < w:
                return fn()
            n -= w
        raise AssertionError("unreachable")

    # --- literals -----------------------------------------------------------------------------

    def int_literal(self) -> str:
        return self.choose([
            (6, lambda: str(self.count(0, 9))),
            (2, lambda: str(-self.count(1, 20))),
            (1, lambda: hex(self.count(0, 0xFFFF))),
            (1, lambda: self.pick(EDGE_INTS)),
        ])

    def str_literal(self) -> str:
        raw = self.choose([
            (3, lambda: self.pick(STRING_POOL)),
            (1, lambda: bytes(self._draw(st.lists(st.sampled_from(STRING_ALPHABET), max_size=6)))),
        ])
        return quote(raw, "'" if self.chance(0.15) else '"')

    # --- expressions, by type -----------------------------------------------------------------

    def int_expr(self, ctx: Ctx, d: int = 2) -> str:
        if d <= 0:
            return self.int_leaf(ctx)
        return self.choose([
            (5, lambda: self.int_leaf(ctx)),
            (3, lambda: f"({self.int_expr(ctx, d - 1)} {self.pick(INT_OPS)} {self.int_expr(ctx, d - 1)})"),
            (2, lambda: f"({self.int_expr(ctx, d - 1)} {self.pick('/%')} {self.divisor(ctx, d - 1)})"),
            (1, lambda: f"({self.pick('-~')} {self.int_expr(ctx, d - 1)})"),
            (2, lambda: self.int_call(ctx, d - 1)),
            (0.5, lambda: f"({self.int_expr(ctx, d - 1)} {self.pick(['&&', '||'])} {self.int_expr(ctx, d - 1)})"),
            (0.3 * self.risk, lambda: self.hazard(ctx)),
        ])

    def int_leaf(self, ctx: Ctx) -> str:
        ints, tabs = ctx.names(INT), ctx.names(TAB)
        return self.choose([
            (4, self.int_literal),
            (4 if ints else 0, lambda: self.pick(ints)),
            (2 if tabs else 0, lambda: f"({self.pick(tabs)}[{self.key(ctx)}] || 0)"),
            (0.5 if "g" in ctx.vars else 0, lambda: f"(g.sub[{self.key(ctx)}] || 0)"),
            (1, lambda: f"len({self.pick([self.str_leaf(ctx), self.table_leaf(ctx)])})"),
            (3 if ctx.events else 0, lambda: self.event_int(ctx)),
            (0.5, self.clock),
            (0.3, lambda: "num_cpus()"),
        ])

    def divisor(self, ctx: Ctx, d: int) -> str:
        """Usually never zero (`| 1`); sometimes anything, so `divide by zero` happens."""
        return self.choose([
            (5, lambda: f"({self.int_expr(ctx, d)} | 1)"),
            (2, lambda: str(self.pick([1, 2, 3, 7, -1, -4]))),
            (1 * self.risk, lambda: self.int_expr(ctx, d)),
        ])

    def int_call(self, ctx: Ctx, d: int) -> str:
        """A call that returns an integer: a user function, a closure, recursion."""
        # User functions are not called from inside loops, so call trees stay small.
        funcs = ctx.funcs if not ctx.loops else ()
        closures, pairs = ctx.names(CLOS), ctx.names(PAIR)
        return self.choose([
            (1, lambda: self.int_leaf(ctx)),
            (3 if funcs else 0, lambda: self.call_function(ctx, self.pick(funcs), d)),
            (2 if closures else 0, lambda: f"{self.pick(closures)}({self.int_expr(ctx, d)})"),
            (1 if pairs else 0, lambda: self.pair_call(ctx, self.pick(pairs), d)),
            # A call of an expression; not from closures, which could be in fs themselves.
            (1 if "fs" in ctx.vars and ctx.where != "closure" else 0,
             lambda: f"(fs[{self.key(ctx)}] || function(p) {{ return 0 }})({self.int_expr(ctx, d)})"),
        ])

    def call_function(self, ctx: Ctx, func: tuple[str, int], d: int) -> str:
        name, arity = func
        if name == "rec":   # non-tail recursion: depth <= 16, or past --max-depth rarely
            bound = "(%s & 15)" % self.int_expr(ctx, d) if not self.mishap(0.03) else "99"
            return f"rec({bound})"
        if name == "spin":  # tail recursion: deep, but tail calls do not grow the stack
            return f"spin(({self.int_expr(ctx, d)} & 63), {self.int_expr(ctx, d)})"
        n = arity
        if self.mishap(0.05):   # missing arguments are nil; surplus ones an error
            n = self.pick([max(arity - 1, 0), arity + 1])
        return f"{name}({', '.join(self.int_expr(ctx, d) for _ in range(n))})"

    def pair_call(self, ctx: Ctx, pair: str, d: int) -> str:
        if self.chance(0.5):
            return f"{pair}.inc({self.int_expr(ctx, d)})"
        return f"{pair}.get()"

    def str_expr(self, ctx: Ctx, d: int = 2) -> str:
        if d <= 0:
            return self.str_leaf(ctx)
        return self.choose([
            (5, lambda: self.str_leaf(ctx)),
            (3, lambda: f"({self.str_expr(ctx, d - 1)} .. {self.str_expr(ctx, d - 1)})"),
            (2, lambda: f"({self.str_expr(ctx, d - 1)} .. {self.int_expr(ctx, d - 1)})"),
            (1, lambda: f"({self.int_expr(ctx, d - 1)} .. {self.str_expr(ctx, d - 1)})"),
            (1, lambda: f"stringof({self.any_expr(ctx, d - 1)})"),
            (0.2 * self.risk, lambda: self.hazard(ctx)),
        ])

    def str_leaf(self, ctx: Ctx) -> str:
        strs = ctx.names(STR)
        return self.choose([
            (4, self.str_literal),
            (4 if strs else 0, lambda: self.pick(strs)),
            (3 if ctx.events else 0, lambda: self.event_str(ctx)),
            (0.3, lambda: self.pick(["arch()", "kernel_v()"])),
        ])

    def bool_expr(self, ctx: Ctx, d: int = 2) -> str:
        if d <= 0:
            return self.choose([
                (2, lambda: f"({self.int_leaf(ctx)} {self.pick(COMPARE_OPS)} {self.int_leaf(ctx)})"),
                (1, lambda: self.pick(["true", "false"])),
            ])
        return self.choose([
            (4, lambda: f"({self.int_expr(ctx, d - 1)} {self.pick(COMPARE_OPS)} {self.int_expr(ctx, d - 1)})"),
            (2, lambda: f"({self.str_expr(ctx, d - 1)} {self.pick(COMPARE_OPS)} {self.str_expr(ctx, d - 1)})"),
            (2, lambda: f"({self.any_expr(ctx, d - 1)} {self.pick(['==', '!='])} {self.any_expr(ctx, d - 1)})"),
            (1, lambda: f"(! {self.any_expr(ctx, d - 1)})"),
            (2, lambda: f"({self.bool_expr(ctx, d - 1)} {self.pick(['&&', '||'])} {self.bool_expr(ctx, d - 1)})"),
            (0.2 * self.risk, lambda: self.hazard(ctx)),
        ])

    def any_expr(self, ctx: Ctx, d: int = 2) -> str:
        """A value of any type: what print, stringof, == and table values take."""
        mixes = ctx.names(MIX, ANY)
        return self.choose([
            (3, lambda: self.int_expr(ctx, d)),
            (2, lambda: self.str_expr(ctx, d)),
            (1, lambda: self.bool_expr(ctx, d)),
            (1, lambda: self.table_leaf(ctx)),
            (1, lambda: self.mix_read(ctx, mixes)),
            (2 if ctx.events else 0, lambda: self.event_any(ctx)),
            (0.5, lambda: self.function_value(ctx)),
            (1 if ctx.nargs else 0, lambda: f"arg[{self.count(0, ctx.nargs + 1)}]"),
            (0.5 if d > 0 else 0, lambda: f"({self.any_expr(ctx, d - 1)} {self.pick(['&&', '||'])} "
                                          f"{self.any_expr(ctx, d - 1)})"),
            (0.3 * self.risk, lambda: self.hazard(ctx)),
        ])

    def mix_read(self, ctx: Ctx, mixes: list[str]) -> str:
        """m[k], m.name, or a variable that holds anything."""
        plain = [n for n in mixes if ctx.vars[n] == ANY]
        has_m = "m" in ctx.vars   # not while the globals are being initialised
        return self.choose([
            (0.5, lambda: "nil"),
            (2 if has_m else 0, lambda: f"m[{self.key(ctx)}]"),
            (1 if has_m else 0, lambda: f"m.{self.pick(NAME_KEYS)}"),
            (1 if plain else 0, lambda: self.pick(plain)),
        ])

    def function_value(self, ctx: Ctx) -> str:
        """A function as a value: printed as `function: N`, compared by identity."""
        names = [n for n, _ in ctx.funcs] + ctx.names(CLOS)
        if not names or self.chance(0.3):
            return "function(p) { return p }"
        return self.pick(names)

    def table_leaf(self, ctx: Ctx) -> str:
        tables = ctx.names(TAB, MIX, HIST, FUNS)
        if "g" in ctx.vars:
            tables += ["g.sub", "arg"]
        return self.choose([
            (3 if tables else 0, lambda: self.pick(tables)),
            (1, lambda: self.constructor(ctx, lambda: self.any_expr(ctx, 0))),
            (0.3, lambda: f"table.new({self.int_leaf(ctx)}, {self.int_leaf(ctx)})"),
        ])

    def constructor(self, ctx: Ctx, value: Callable[[], str]) -> str:
        """`{}`, `{e1, e2}`, `{name = e, [k] = e}`, mixed, maybe a trailing comma."""
        items = []
        for _ in range(self.count(0, 4)):
            items.append(self.choose([
                (2, value),
                (1, lambda: f"{self.pick(NAME_KEYS[:3])} = {value()}"),
                (1, lambda: f"[{self.key(ctx)}] = {value()}"),
            ]))
        trailing = "," if items and self.chance(0.1) else ""
        return "{" + ", ".join(items) + trailing + "}"

    def key(self, ctx: Ctx) -> str:
        """A table key from a small pool, so tables stay small and keys repeat."""
        return self.choose([
            (3, lambda: str(self.count(-1, 4))),
            (2, lambda: quote(self.pick(NAME_KEYS + ("1", "")))),
            (0.5, lambda: quote(self.pick(STACK_KEYS))),
            (1, lambda: f"({self.int_expr(ctx, 1)} % 4)"),
            (1, lambda: self.pick(["true", "false"])),
            (1 if ctx.names(INT) else 0, lambda: self.pick(ctx.names(INT))),
            (1 if ctx.events else 0, lambda: self.pick(["execname", "probename", "cpu"])),
            (0.3, lambda: self.identity_key(ctx)),
            (0.1 * self.risk, lambda: "nil"),   # reads give nil; stores are `table index is nil`
        ])

    def identity_key(self, ctx: Ctx) -> str:
        """A table or function as a key: equal by identity, printed as `table: N`."""
        names = ctx.names(TAB, MIX, HIST, CLOS) + [n for n, _ in ctx.funcs]
        return self.pick(names) if names else "{}"

    def clock(self) -> str:
        # Event time is deterministic only on a recording: mark the script.
        self.meta.uses_clock = True
        return self.pick(["gettimeofday_ns()", "gettimeofday_us()", "gettimeofday_ms()", "gettimeofday_s()"])

    def hazard(self, ctx: Ctx) -> str:
        """An expression that is a runtime error when evaluated, on purpose."""
        i, s = self.int_leaf(ctx), self.str_leaf(ctx)
        return self.pick([
            f"({s} + {i})",                      # arithmetic on a string
            f"({i} < {s})",                      # compare integer with string
            f"({self.table_leaf(ctx)} < {i})",   # compare table with integer
            f"(nil .. {s})",                     # concatenate nil
            f"({s} .. {self.table_leaf(ctx)})",  # concatenate a table
            f"len({i})",                         # length of an integer
            f"({i} / 0)", f"({i} % 0)",          # divide by zero
            f"({i} | true)",                     # bitwise on a boolean
            "m.zz.yy",                           # index nil
            f"{self.pick(ctx.names(INT) or ['a'])}[1]",  # index an integer
            f"{self.pick(ctx.names(INT) or ['a'])}(1)",  # call an integer
            "(- nil)", "(~ \"s\")",
        ])

    # --- event values -------------------------------------------------------------------------

    def event_int(self, ctx: Ctx) -> str:
        fields = self.shared_fields(ctx, "int_fields") + list(COMMON_FIELDS)
        options = [
            (3, lambda: self.pick(["pid", "tid", "cpu"])),
            (3, lambda: f"(args.{self.pick(fields)} || 0)"),
        ]
        if ctx.events == (RAW_ENTER,):
            options.append((2, lambda: f"(args.args[{self.count(0, 6)}] || 0)"))
        return self.choose(options)

    def event_str(self, ctx: Ctx) -> str:
        fields = self.shared_fields(ctx, "str_fields")
        return self.choose([
            (3, lambda: self.pick(["execname", "probename", "argstr"])),
            (2 if fields else 0, lambda: f"(args.{self.pick(fields)} || \"\")"),
        ])

    def event_any(self, ctx: Ctx) -> str:
        every = sorted({f for tp in ctx.events for f in tp.fields()} | {"nope"})
        return self.choose([
            (2, lambda: f"arg{self.count(0, 9)}"),
            (2, lambda: f"args.{self.pick(every)}"),
            (1, lambda: self.pick(["uid", "stack()", "ustack()"])),
        ])

    def shared_fields(self, ctx: Ctx, attr: str) -> list[str]:
        """Fields of that type in every tracepoint the probe matches."""
        sets = [set(getattr(tp, attr)) for tp in ctx.events]
        return sorted(set.intersection(*sets)) if sets else []

    # --- statements ---------------------------------------------------------------------------

    def block(self, ctx: Ctx, lo: int = 0, hi: int = 4, terminate: bool = True) -> list[str]:
        """Statements in their own scope, maybe ended by break/return/exit."""
        lines: list[str] = []
        for _ in range(self.count(lo, hi)):
            stmt, ctx = self.statement(ctx)
            lines += stmt
        if terminate:
            lines += self.terminator(ctx)
        return lines

    def statement(self, ctx: Ctx) -> tuple[list[str], Ctx]:
        nested = replace(ctx, depth=ctx.depth - 1)
        compound = ctx.depth > 0
        return self.choose([
            (4, lambda: ([self.assign_int(ctx)], ctx)),
            (2, lambda: ([self.assign_str(ctx)], ctx)),
            (4, lambda: ([self.table_store(ctx)], ctx)),
            (1, lambda: ([self.multi_assign(ctx)], ctx)),
            (3, lambda: self.declare_local(ctx)),
            (3, lambda: ([self.print_stmt(ctx)], ctx)),
            (3, lambda: ([self.printf_stmt(ctx)], ctx)),
            (1, lambda: ([self.print_hist_stmt(ctx)], ctx)),
            (0.5, lambda: ([self.print_folded_stmt(ctx)], ctx)),
            (1, lambda: ([self.aggregate_stmt(ctx)], ctx)),
            (0.4, lambda: ([self.print_agg_stmt(ctx)], ctx)),
            (2, lambda: ([self.call_stmt(ctx)], ctx)),
            (0.3, lambda: ([f"delete({self.pick(['t', 'u', 'm', 'h'])})"], ctx)),
            (2 if compound else 0, lambda: (self.if_stmt(nested), ctx)),
            (1 if compound else 0, lambda: (self.while_stmt(nested), ctx)),
            (1 if compound else 0, lambda: (self.repeat_stmt(nested), ctx)),
            (1.5 if compound else 0, lambda: (self.for_numeric(nested), ctx)),
            (1 if compound else 0, lambda: (self.for_c(nested), ctx)),
            (1.5 if compound else 0, lambda: (self.for_pairs(nested), ctx)),
            (1 if compound else 0, lambda: self.local_function(nested, ctx)),
            (1 if compound else 0, lambda: (self.store_closure(nested), ctx)),
        ])

    def assign_int(self, ctx: Ctx) -> str:
        name = self.pick(ctx.assignable(INT) or ["a"])
        if self.chance(0.5):
            return f"{name} = {self.int_expr(ctx)}"
        op = self.pick(COMPOUND_OPS)
        rhs = self.divisor(ctx, 1) if op in ("/=", "%=") else self.int_expr(ctx)
        return f"{name} {op} {rhs}"

    def assign_str(self, ctx: Ctx) -> str:
        name = self.pick(ctx.assignable(STR) or ["s"])
        if self.chance(0.4):   # grows; past --max-string it is `string too long`
            return f"{name} = {name} .. {self.str_expr(ctx, 1)}"
        return f"{name} = {self.str_expr(ctx)}"

    def table_store(self, ctx: Ctx) -> str:
        tab = self.pick(ctx.names(TAB))
        return self.choose([
            (3, lambda: f"{tab}[{self.key(ctx)}] = {self.int_expr(ctx)}"),
            (3, lambda: f"{tab}[{self.key(ctx)}] += {self.int_expr(ctx, 1)}"),   # nil counts as 0
            (1, lambda: f"{tab}.{self.pick(NAME_KEYS)} {self.pick(COMPOUND_OPS[:3])} {self.int_leaf(ctx)}"),
            (1, lambda: f"{tab}[{self.key(ctx)}] = nil"),                         # deletes
            (2, lambda: f"h[{self.key(ctx)}] += {self.count(0, 3)}"),
            (2, lambda: f"m[{self.key(ctx)}] = {self.any_expr(ctx, 1)}"),
            (1, lambda: f"m.{self.pick(NAME_KEYS)} = {self.any_expr(ctx, 1)}"),
            (1, lambda: f"g.sub[{self.key(ctx)}] {self.pick(['=', '+='])} {self.int_leaf(ctx)}"),
            (0.5, lambda: f"{tab} = {self.constructor(ctx, lambda: self.int_expr(ctx, 0))}"),
            (0.3, lambda: f"m = {self.constructor(ctx, lambda: self.any_expr(ctx, 0))}"),
        ])

    def multi_assign(self, ctx: Ctx) -> str:
        ints = ctx.assignable(INT) or ["a"]
        x, y = self.pick(ints), self.pick(ints)
        return self.choose([
            (2, lambda: f"{x}, {y} = {y}, {x}"),                     # swap
            (2, lambda: f"{x}, t[{x}] = {x} + 1, {self.int_expr(ctx, 1)}"),  # stores the old t[x]
            (1, lambda: f"{x}, {y} = {self.int_expr(ctx, 1)}, {self.int_expr(ctx, 1)}, "
                        f"{self.any_expr(ctx, 1)}"),                # surplus: evaluated, dropped
            (1, lambda: f"m[{self.key(ctx)}], m.{self.pick(NAME_KEYS)} = {self.any_expr(ctx, 1)}"),
        ])

    def declare_local(self, ctx: Ctx) -> tuple[list[str], Ctx]:
        """`var` declarations; at top level they redeclare the one global."""
        return self.choose([
            (3, lambda: self._declare(ctx, [self.pick(INT_LOCALS)], INT, self.int_expr)),
            (1, lambda: self._declare(ctx, list(INT_LOCALS), INT, self.int_expr, surplus=self.chance(0.3))),
            (2, lambda: self._declare(ctx, list(STR_LOCALS), STR, self.str_expr)),
            (0.5, lambda: self._declare_nil(ctx, self.pick(INT_LOCALS))),
        ])

    def _declare_nil(self, ctx: Ctx, name: str) -> tuple[list[str], Ctx]:
        return [f"var {name}"], ctx.declare(name, ANY)   # nil: only printed, compared

    def _declare(self, ctx: Ctx, names: list[str], kind: str, expr, surplus: bool = False):
        # Values are drawn in the outer scope: in `var x = x` the right side is the outer x.
        values = [expr(ctx) for _ in names] + ([self.any_expr(ctx, 1)] if surplus else [])
        for name in names:
            ctx = ctx.declare(name, kind)
        return [f"var {', '.join(names)} = {', '.join(values)}"], ctx

    def print_stmt(self, ctx: Ctx) -> str:
        args = [self.any_expr(ctx) for _ in range(self.count(0, 4))]
        return f"print({', '.join(args)})"

    def print_hist_stmt(self, ctx: Ctx) -> str:
        table = self.choose([
            (4, lambda: "h"),
            (1 * self.risk, lambda: self.pick(["t", "u", "g.sub"])),   # may hold negatives: an error
            (0.2 * self.risk, lambda: self.any_expr(ctx, 0)),
        ])
        if self.chance(0.4):
            return f"print_hist({table}, {self.pick(['1', '2', '0', '-1', 'nil', self.int_leaf(ctx)])})"
        return f"print_hist({table})"

    def print_folded_stmt(self, ctx: Ctx) -> str:
        """print_folded (a project addition, docs/language-notes.md): keys are
        split into frames at newlines; STACK_KEYS make that matter."""
        table = self.choose([
            (4, lambda: "h"),
            (1 * self.risk, lambda: self.pick(["t", "m", "nil"])),   # negatives, non-integers
        ])
        return f"print_folded({table})"

    def aggregate_stmt(self, ctx: Ctx) -> str:
        """hist, lhist and stats (a project addition, docs/language-notes.md)
        into `ag`, each kind under its own keys so updates agree; wrong kinds,
        bounds, tables and values on purpose."""
        n = self.count(0, 2)
        value = self.int_expr(ctx, 1)
        return self.choose([
            (3, lambda: f"hist(ag, {self.pick([quote(f'h{n}'), self.key(ctx)])}, {value})"),
            (2, lambda: f'lhist(ag, "l{n}", {value}, {LHIST_BOUNDS[n]})'),
            (2, lambda: f'stats(ag, "s{n}", {value})'),
            (0.3 * self.risk, lambda: f'{self.pick(["hist", "stats"])}(ag, "l{n}", {value})'),
            (0.3 * self.risk, lambda: f'lhist(ag, "l{n}", {value}, {self.pick(BAD_LHIST_BOUNDS)})'),
            (0.3 * self.risk, lambda: f'hist(ag, "h{n}", {self.any_expr(ctx, 0)})'),
            (0.2 * self.risk, lambda: f'stats({self.pick(["t", "m", "nil"])}, {self.key(ctx)}, {value})'),
        ])

    def print_agg_stmt(self, ctx: Ctx) -> str:
        table = self.choose([
            (4, lambda: "ag"),
            (1 * self.risk, lambda: self.pick(["t", "h", "m", "nil"])),
        ])
        return f"print_agg({table})"

    def printf_stmt(self, ctx: Ctx) -> str:
        """printf with a format that matches its arguments, or is wrong on purpose."""
        fmt, args = "", []
        for _ in range(self.count(1, 4)):
            piece, arg = self.choose([
                (3, lambda: self.conversion(ctx)),
                (2, lambda: (self.pick(PRINTF_TEXT), None)),
                (0.5, lambda: (self.pick(["%%", "%5%"]), None)),
                (0.2 * self.risk, lambda: (self.pick(BAD_CONVERSIONS), self.int_leaf(ctx))),
            ])
            fmt += piece
            args += [arg] if arg is not None else []
        fmt = fmt.replace('"', '\\"') + ("\\n" if self.chance(0.8) else "")
        if args and self.mishap(0.05):
            args.pop()                                  # too few arguments
        if self.chance(0.1):
            args.append(self.any_expr(ctx, 0))          # extra arguments are ignored
        if self.mishap(0.02):
            fmt_text = self.pick(["nil", "1", "s"])      # a non-string (or unknown) format
        else:
            fmt_text = f'"{fmt}"' if not self.mishap(0.02) else f'"{fmt}%"'   # trailing %
        return f"printf({', '.join([fmt_text] + args)})"

    def conversion(self, ctx: Ctx) -> tuple[str, str]:
        flags = "".join(self._draw(st.lists(st.sampled_from("-+0# "), max_size=2)))
        width = self.pick(["", "", "5", "10", "1", "31", "100"])
        precision = self.pick(["", "", ".0", ".3", ".", ".12", ".40", ".007"])
        length = self.pick(["", "", "l", "ll", "h"])
        conv = self.pick(INT_CONVERSIONS + "ss")
        if conv == "s":
            arg = self.any_expr(ctx, 1)
            if self.mishap(0.03):
                conv, arg = "d", self.str_leaf(ctx)     # integer conversion of a string
        else:
            arg = self.int_expr(ctx, 1)
        return f"%{flags}{width}{precision}{length}{conv}", arg

    def call_stmt(self, ctx: Ctx) -> str:
        """A call standing alone: a user function, a closure, a pair method, a builtin."""
        funcs = ctx.funcs if not ctx.loops else ()
        closures, pairs = ctx.names(CLOS), ctx.names(PAIR)
        return self.choose([
            (1, lambda: f"stringof({self.any_expr(ctx, 1)})"),   # value dropped
            (3 if funcs else 0, lambda: self.call_function(ctx, self.pick(funcs), 1)),
            (2 if closures else 0, lambda: f"{self.pick(closures)}({self.int_expr(ctx, 1)})"),
            (2 if pairs else 0, lambda: self.pair_call(ctx, self.pick(pairs), 1)),
        ])

    def terminator(self, ctx: Ctx) -> list[str]:
        """A last statement that leaves the block: break, return, exit()."""
        if ctx.in_function:     # every function body ends with its own `return INT`
            return self.choose([
                (10, lambda: []),
                (2 if ctx.loops else 0, lambda: ["break"]),
                (1, lambda: [f"return {self.int_expr(ctx, 1)}"]),
                (0.2, lambda: ["exit()"]),   # from a function: stops the whole block
            ])
        return self.choose([
            (20, lambda: []),
            (2 if ctx.loops else 0, lambda: ["break"]),
            (1, lambda: ["return;"]),   # `return;`: a bare return would take the next line
            (0.5, lambda: [f"return {self.int_call(ctx, 0)}"]),  # an ordinary call here
            (0.3, lambda: ["exit()"]),
        ])

    # --- compound statements ------------------------------------------------------------------

    def condition(self, ctx: Ctx) -> str:
        return self.choose([(4, lambda: self.bool_expr(ctx)), (1, lambda: self.any_expr(ctx, 1))])

    def if_stmt(self, ctx: Ctx) -> list[str]:
        lines = [f"if ({self.condition(ctx)}) {{", *_indent(self.block(ctx, 1)), "}"]
        for _ in range(self.count(0, 2)):
            lines[-1] = f"}} elseif ({self.condition(ctx)}) {{"
            lines += [*_indent(self.block(ctx, 1)), "}"]
        if self.chance(0.4):
            lines[-1] = "} else {"
            lines += [*_indent(self.block(ctx, 1)), "}"]
        return lines

    def loop_body(self, ctx: Ctx, counter: str | None = None) -> Ctx:
        ctx = replace(ctx, loops=ctx.loops + 1)
        return ctx.declare(counter, INT, readonly=True) if counter else ctx

    def while_stmt(self, ctx: Ctx) -> list[str]:
        n = f"n{ctx.loops}"
        body = self.loop_body(ctx, n)
        return [f"var {n} = 0", f"while ({n} < {self.count(0, 5)}) {{",
                *_indent(self.block(body, 1, 3, terminate=False)),
                *_indent(self.maybe_break(body)), f"\t{n} += 1", "}"]

    def maybe_break(self, ctx: Ctx) -> list[str]:
        """`if (c) { break }` in the middle of a loop body, now and then."""
        if not self.chance(0.25):
            return []
        return [f"if ({self.bool_expr(ctx, 1)}) {{", "\tbreak", "}"]

    def repeat_stmt(self, ctx: Ctx) -> list[str]:
        r = f"r{ctx.loops}"
        body = self.loop_body(ctx, r)
        # The until condition sees the body's locals; the counter bounds it.
        return [f"var {r} = 0", "repeat {", *_indent(self.block(body, 1, 3, terminate=False)),
                f"\t{r} += 1", f"}} until ({r} >= {self.count(1, 4)} || {self.bool_expr(body, 1)})"]

    def for_numeric(self, ctx: Ctx) -> list[str]:
        var = FOR_VARS[ctx.loops % len(FOR_VARS)]
        start, limit = self.count(-3, 3), self.count(-3, 6)
        step = self.pick(["", ", 1", ", 2", ", -1", ", -2", ", 3"])
        bounds = self.choose([
            (5, lambda: f"{start}, {limit}{step}"),
            (1, lambda: f"1, {self.pick([16, 40])}"),    # long enough to grow tables
            (2, lambda: f"({self.int_expr(ctx, 1)} % 5), ({self.int_expr(ctx, 1)} % 7){step}"),
            (0.2 * self.risk, lambda: "1, 3, " + self.pick(BAD_STEPS)),              # step 0 / not an integer
            (0.2 * self.risk, lambda: "1, 0x7fffffffffffffff"),                       # ends at --max-loop
        ])
        # The loop variable is assignable: that must not change the iteration.
        body = self.loop_body(ctx).declare(var, INT)
        return [f"for ({var} = {bounds}) {{", *_indent(self.fill(body, var) + self.block(body, 1, 3)), "}"]

    def fill(self, ctx: Ctx, var: str) -> list[str]:
        """Sometimes a store keyed by the loop variable: tables grow past small
        sizes (and past a low --max-table)."""
        if not self.chance(0.3):
            return []
        return [self.pick([f"t[{var}] = {self.int_leaf(ctx)}", f"h[{var}] += 1",
                           f"m[{var}] = {self.any_expr(ctx, 0)}"])]

    def for_c(self, ctx: Ctx) -> list[str]:
        c = f"c{ctx.loops}"
        body = self.loop_body(ctx, c)
        cond = f"{c} < {self.count(0, 5)}" if self.chance(0.9) else ""   # a missing condition is true
        return [f"for ({c} = 0; {cond}; {c} += 1) {{",
                *_indent(self.block(body, 1, 3, terminate=False)),
                *_indent(self.maybe_break(body) if cond else ["break"]), "}"]

    def for_pairs(self, ctx: Ctx) -> list[str]:
        table, value_kind = self.choose([
            (3, lambda: (self.pick(["t", "u", "h", "g.sub"]), INT)),
            (2, lambda: ("m", ANY)),
            (1, lambda: (self.constructor(ctx, lambda: self.any_expr(ctx, 0)), ANY)),
            (0.3, lambda: ("arg", ANY)),
            (0.1 * self.risk, lambda: (self.pick(["a", "s", "nil"]), ANY)),   # pairs of a non-table
        ])
        body = self.loop_body(ctx).declare("key", ANY)
        head = "key"
        if self.chance(0.7):
            head, body = "key, val", body.declare("val", value_kind)
        # The body may store and delete keys of the table it walks: that is specified.
        return [f"for ({head} in pairs({table})) {{", *_indent(self.block(body, 1, 3)), "}"]

    def closure_body(self, ctx: Ctx) -> list[str]:
        """The body of `function(p) {..}`: it captures (and may change) the
        enclosing locals, loop variables included (fresh in each iteration)."""
        fctx = replace(ctx, where="closure", events=(), loops=0, depth=0, funcs=())
        # `function lf(p)` sees itself as `lf`: calling it would recurse without end.
        fctx = replace(fctx, vars={k: v for k, v in fctx.vars.items() if k != "lf"})
        fctx = fctx.declare("p", INT)
        return self.block(fctx, 0, 2) + [f"return {self.int_expr(fctx, 1)}"]

    def local_function(self, ctx: Ctx, outer: Ctx) -> tuple[list[str], Ctx]:
        """`function lf(p) {..}` or `var lf = function(p) {..}` in a block."""
        body = self.closure_body(ctx)
        head = "function lf(p) {" if self.chance(0.5) else "var lf = function(p) {"
        return [head, *_indent(body), "}"], outer.declare("lf", CLOS)

    def store_closure(self, ctx: Ctx) -> list[str]:
        """A closure kept in the global `fs`: it outlives the block (and the probe
        run) whose locals it captured, and is called later through `fs`."""
        return [f"fs[{self.key(ctx)}] = function(p) {{", *_indent(self.closure_body(ctx)), "}"]

    # --- the script ---------------------------------------------------------------------------

    def script(self) -> Script:
        nargs = self.count(0, 2) if self.chance(0.2) else 0
        args = tuple(self.pick(SCRIPT_ARGS) for _ in range(nargs))
        base = Ctx(vars=dict(GLOBALS), nargs=nargs)
        lines = self.globals_decl(base)
        funcs_lines, ctx = self.functions(base)
        lines += funcs_lines
        lines += self.items(ctx)
        source = "\n".join(lines) + "\n"
        needs = self.meta.uses_clock or self.meta.uses_blocks
        return Script(source=source, args=args, needs_stream=needs)

    def globals_decl(self, ctx: Ctx) -> list[str]:
        leaf = Ctx(vars={}, nargs=ctx.nargs)   # nothing declared yet
        return [
            f"var a, b, c = {self.int_expr(leaf, 1)}, {self.int_expr(leaf, 1)}, {self.int_expr(leaf, 1)}",
            f"var s, w = {self.str_literal()}, {self.str_literal()}",
            f"var t, u = {self.constructor(leaf, self.int_literal)}, {{}}",
            f"var m = {self.constructor(leaf, lambda: self.pick(MIX_VALUES))}",
            "var h = {}",
            "var fs = {}",
            "var ag = {}",
            f"var g = {{sub = {self.constructor(leaf, self.int_literal)}, name = {self.str_literal()}}}",
        ]

    def functions(self, ctx: Ctx) -> tuple[list[str], Ctx]:
        """Top-level functions, recursion helpers and closures, in declaration order."""
        lines: list[str] = []
        for k in range(self.count(0, 3)):
            name, arity = f"f{k}", self.count(0, 2)
            lines += self.function_decl(ctx, name, arity)
            ctx = replace(ctx, funcs=ctx.funcs + ((name, arity),))
        if self.chance(0.5):
            lines += RECURSION
            ctx = replace(ctx, funcs=ctx.funcs + (("rec", 1), ("spin", 2)))
        if self.chance(0.4):
            lines += COUNTER + [f"var k1, k2 = counter({self.int_literal()}), counter({self.int_literal()})"]
            ctx = ctx.declare("k1", CLOS).declare("k2", CLOS)
        if self.chance(0.3):
            lines += PAIR_MAKER + ["var pr = pair()"]
            ctx = ctx.declare("pr", PAIR)
        return lines, ctx

    def function_decl(self, ctx: Ctx, name: str, arity: int) -> list[str]:
        params = ("p", "q")[:arity]
        fctx = replace(ctx, where="func", depth=1)
        for p in params:
            fctx = fctx.declare(p, INT)
        body = self.block(fctx, 0, 3)
        if self.chance(0.3) and fctx.funcs:   # `return CALL`: a tail call
            body.append(f"return {self.call_function(fctx, self.pick(fctx.funcs), 1)}")
        else:
            body.append(f"return {self.int_expr(fctx)}")
        return [f"function {name}({', '.join(params)}) {{", *_indent(body), "}"]

    def items(self, ctx: Ctx) -> list[str]:
        """Top-level statements interleaved with probes, a timer and trace_end."""
        top = replace(ctx, depth=TOP_DEPTH)
        items: list[list[str]] = []
        for _ in range(self.count(0, 4)):
            stmt, top = self.statement(top)
            items.append(stmt)
        blocks = [self.probe(ctx) for _ in range(self.count(0, 3))]
        if self.chance(0.3):
            blocks.append(self.timer(ctx))
        if self.chance(0.6):
            blocks.append(["trace_end {", *_indent(self.block(replace(ctx, where="end"), 0, 3)), "}"])
        for blk in blocks:   # blocks anywhere among the top-level statements
            items.insert(self.count(0, len(items)), blk)
        if self.chance(0.1):
            items.append(self.terminator(top) or ["return;"])
        return [line for item in items for line in item]

    def probe(self, ctx: Ctx) -> list[str]:
        self.meta.uses_blocks = True
        probe = self.pick(PROBES)
        head = f"trace {probe.text}"
        if self.chance(0.4):
            head += f" /{self.filter(probe)}/"
        body_ctx = replace(ctx, where="probe", events=probe.events)
        return [head + " {", *_indent(self.block(body_ctx, 1, 4)), "}"]

    def timer(self, ctx: Ctx) -> list[str]:
        self.meta.uses_blocks = True
        body = self.block(replace(ctx, where="timer"), 1, 3)   # no event values in timers
        return [self.pick(TIMERS) + " {", *_indent(body), "}"]

    def filter(self, probe: Probe, d: int = 1) -> str:
        """The kernel's filter language, on fields every matched event has."""
        if d > 0 and self.chance(0.4):
            op = self.pick(["&&", "||"])
            return f"({self.filter(probe, d - 1)}) {op} {self.filter(probe, d - 1)}"
        ints = sorted(set.intersection(*[tp.filter_int_fields() for tp in probe.events]) | set(COMMON_FIELDS))
        strs = sorted(set.intersection(*[tp.filter_str_fields() for tp in probe.events]) | {"comm"})
        return self.choose([
            (3, lambda: self.int_condition(self.pick(ints + ["cpu"]))),
            (2, lambda: f"{self.pick(strs)} {self.pick(['==', '!=', '~'])} "
                        f"{quote(self.pick([b'bash', b'b*', b'*o*', b'?ginx', b'[bc]*', b'/usr/*']))}"),
        ])


    def int_condition(self, name: str) -> str:
        values = ["0", "1", "3", "100", "1000", "0x10"]
        if name not in UNSIGNED_FIELDS:
            values.append("-2")
        return f"{name} {self.pick(COMPARE_OPS + ('&',))} {self.pick(values)}"


# Compound statements nest at most this deep (blocks, not expressions).
TOP_DEPTH = 2

RECURSION = [
    "function rec(n) {",
    "\tif (n <= 0) { return 1 }",
    "\treturn n + rec(n - 1)",
    "}",
    "function spin(n, acc) {",
    "\tif (n <= 0) { return acc }",
    "\treturn spin(n - 1, acc + n)",
    "}",
]
COUNTER = [
    "function counter(start) {",
    "\tvar n = start",
    "\treturn function(step) { n += step; return n }",
    "}",
]
PAIR_MAKER = [
    "function pair() {",
    "\tvar v = 0",
    "\treturn {inc = function(d) { v += d; return v }, get = function() { return v }}",
    "}",
]


@st.composite
def scripts(draw) -> Script:
    """A random well-formed script (see the module docstring)."""
    return _Writer(draw).script()
