"""The JIT against the interpreter on scripts aimed at the lowering's own
risks: constant-table fills, the call machinery (depth, tail calls,
argument counts), wrapping arithmetic, the tagged fast paths and the native
stack guard. Each case must give byte-identical stdout, stderr and status
under both engines, and the expected output where one is given."""

from __future__ import annotations

import io

import pytest

from ktapjit.cli import main


def run(engine: str, program: str, *opts: str) -> tuple[bytes, bytes, int]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", engine, *opts, "-e", program], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), status


def big_table(n: int) -> str:
    return "var t = {" + ", ".join(f'[{i}] = "v{i}"' for i in range(n)) + "}"


CASES = [
    # (id, program, options, expected stdout or None)
    ("fill", big_table(40) + " print(len(t), t[0], t[39], t[40])", (), b"40\tv0\tv39\tnil\n"),
    ("fill overflow names the element", big_table(40) + " print(len(t))", ("--max-table", "17"), b""),
    ("fill then update", big_table(12) + ' t[3] = nil t[3] = "x" for (k, v in pairs(t)) { printf("%d=%s ", k, v) } print()',
     (), None),
    ("fill mixed keys", 'var t = {1, 2, 3, 4, "a", "b", true, false, a = 1, b = 2, [10] = nil} print(len(t))', (), b"10\n"),
    ("int64 min / -1", "var m = -9223372036854775807 - 1 print(m / -1, m % -1, m * -1, -m)", (),
     b"-9223372036854775808\t0\t-9223372036854775808\t-9223372036854775808\n"),
    ("shift counts wrap", "var x = 1 print(x << 64, x << 65, -8 >> 1, -8 >> 65)", (), b"1\t2\t-4\t-4\n"),
    ("mixed compare is an error", 'var a = 1 var b = "1" print(a < b)', (), b""),
    ("string compare", 'print("a" < "b", "ab" < "a", "" < "a", "b" >= "b")', (), b"true\tfalse\ttrue\ttrue\n"),
    ("deep recursion within --max-depth",
     "function d(n) { if (n == 0) { return 0 } return 1 + d(n - 1) } print(d(50000))",
     ("--max-depth", "60000"), b"50000\n"),
    ("depth limit", "function d(n) { return 1 + d(n + 1) } print(d(0))", ("--max-depth", "1000"), b""),
    ("tail calls run in constant depth",
     "function t(n, acc) { if (n == 0) { return acc } return t(n - 1, acc + n) } print(t(1000000, 0))",
     ("--max-depth", "3"), b"500000500000\n"),
    ("mutual tail calls",
     "function ev(n) { if (n == 0) { return true } return od(n - 1) }\n"
     "function od(n) { if (n == 0) { return false } return ev(n - 1) }\nprint(ev(100001))", (), b"false\n"),
    ("too many arguments", "function f(a) { return a } print(f(1, 2))", (), b""),
    ("tail call checks", "function f(a) { return a } function g() { return f(1, 2) } print(g())", (), b""),
    ("call a non-function", "var x = 3 x()", (), b""),
    ("closures share a cell",
     "function mk() { var n = 0 return function() { n += 1 return n }, function() { return n } }\n"
     "var inc, get = mk() inc() inc() print(get())", (), None),
    ("closure identity numbering", "var f = function() {} var g = function() {} print(g, f, g)", (), None),
    ("loop limit counts per call", "var i = 0 while (true) { i += 1 }", ("--max-loop", "1000"), b""),
    ("pairs snapshot skips deleted keys",
     "var t = {1, 2, 3, 4} for (k, v in pairs(t)) { t[k + 1] = nil print(k, v) }", (), None),
    ("exit inside a call", "function f() { print(1) exit() print(2) } f() print(3)", (), b"1\n"),
    ("printf errors print nothing", 'printf("%d %d\\n", 1)', (), b""),
    ("string limit", 'var s = "x" while (true) { s = s .. s }', ("--max-string", "100"), b""),
    # t[k] = v right after a lookup of k overwrites in place (lower.py _memo_set); the rest calls the runtime
    ("memo: updates in place", "var t = {} var i = 0 while (i < 100) { t[i % 7] += i i += 1 }\n"
     'for (k, v in pairs(t)) { printf("%d=%d ", k, v) } print()', (), b"0=735 1=750 2=665 3=679 4=693 5=707 6=721 \n"),
    ("memo: nil after a lookup deletes", 'var t = {a = 1, b = 2} var x = t["a"] t["a"] = nil print(len(t), t["a"])\n'
     't["a"] = x + 4 for (k, v in pairs(t)) { printf("%s=%d ", k, v) } print()', (), b"1\tnil\nb=2 a=5 \n"),
    ("memo: a table stored after a lookup escapes", "var t = {} function f() { var x = t[1] t[1] = 0 "
     "var y = t[1] t[1] = {7} } f() f() trace_end { print(t[1][1]) }", (), b"7\n"),
    ("memo: bool, string and table keys", 'var k = {} var t = {} t[true] = 1 t[true] += 1 t["s"] = 1 t["s"] += 2\n'
     "t[k] = 1 t[k] += 1 print(t[true], t[\"s\"], t[k], len(t))", (), b"2\t3\t2\t3\n"),
    ("memo: survives inserts, not a rebuild", "var t = {} t[1] = 1 var x = t[1] var i = 2\n"
     "while (i < 100) { t[i] = i i += 1 } t[1] = x + 4 var y = t[50] t[50] = nil t[50] = y print(t[1], t[50], len(t))",
     (), b"5\t50\t99\n"),
    ("memo: overflow still fails", "var t = {} var i = 0 while (true) { t[i] = t[i - 1] i += 1 }", ("--max-table", "5"),
     b""),
]


@pytest.mark.parametrize("program,opts,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_engines_agree(program, opts, expected):
    interp = run("interp", program, *opts)
    jit = run("jit", program, *opts)
    assert jit == interp, f"\ninterp: {interp}\njit:    {jit}"
    if expected is not None:
        assert jit[0] == expected
    assert b"internal error" not in jit[1]

