"""Every compile-time check of LANGUAGE.md: the message, and the exact byte
position of the offending token (line, column)."""

import pytest

from ktapjit.diag import CompileError
from ktapjit.frontend.parse import parse_program
from ktapjit.frontend.resolve import resolve_program

CASES = [
    # (source, line, col, words the message must contain)
    ("print(x)", 1, 7, "undeclared name 'x'"),
    ("x = 1", 1, 1, "assignment to undeclared name 'x'"),
    ("var a = 9223372036854775808", 1, 9, "out of range"),
    ("var a = -9223372036854775808", 1, 10, "out of range"),
    ("var a = 0x10000000000000000", 1, 9, "out of range"),
    ('var s = "a\\qb"', 1, 9, "invalid escape"),
    ('var s = "\\x4"', 1, 9, "invalid escape"),
    ('var s = "\\x"', 1, 9, "invalid escape"),
    ('var s = "abc\nx"', 1, 9, "unfinished string"),
    ("var s = 'abc", 1, 9, "unfinished string"),
    ("if (1) { trace_end { } }", 1, 10, "only allowed at top level"),
    ("function f() {\n  trace a:b { }\n}", 2, 3, "only allowed at top level"),
    ("while (1) { tick-1s { } }", 1, 13, "only allowed at top level"),
    ("trace_end { }\ntrace_end { }", 2, 1, "only one trace_end"),
    ("break", 1, 1, "'break' outside a loop"),
    ("while (1) { var f = function() { break } }", 1, 34, "'break' outside a loop"),
    ("print(pid)", 1, 7, "event value 'pid'"),
    ("print(args.foo)", 1, 7, "args.foo"),
    ("function f() { return execname }", 1, 23, "event value 'execname'"),
    ("trace a:b { var f = function() { return tid } }", 1, 41, "event value 'tid'"),
    ("tick-1s { print(cpu) }", 1, 17, "event value 'cpu'"),
    ("trace_end { print(arg0) }", 1, 19, "event value 'arg0'"),
    ("print(stack())", 1, 7, "stack()"),
    ("print(user_string(args.f))", 1, 7, "event value 'user_string()'"),
    ("tick-1s { print(in_iowait()) }", 1, 17, "event value 'in_iowait()'"),
    ("trace a:b { print(user_string(1)) }", 1, 31, "user_string() takes one event field, args.NAME or argN"),
    ("trace a:b { var p = args.f\n print(kernel_string(p)) }", 2, 22, "kernel_string() takes one event field"),
    ("trace a:b { print(user_string()) }", 1, 30, "user_string() takes one event field"),
    ("trace a:b { print(user_string(arg1, arg2)) }", 1, 31, "user_string() takes one event field"),
    ("trace a:b { print(in_iowait(1)) }", 1, 29, "in_iowait() takes no arguments"),
    ("var x = print", 1, 9, "builtin 'print' is not a value"),
    ("var x = table", 1, 9, "builtin 'table' is not a value"),
    ("var t = {}\nprint(pairs(t))", 2, 7, "'pairs' is only allowed"),
    ("var t = {}\nfor (k in foo(t)) { }", 2, 11, "pairs"),
    ("x = = 1", 1, 5, "syntax error"),
    ("var a = 1 +", 1, 12, "end of file"),
    ("\tvar a = 1 @", 1, 12, "'@'"),
    ("print(1) 2", 1, 10, "syntax error"),
    ("var a\na", 2, 1, "not a statement"),
    ("var a\n(a) = 1", 2, 1, "cannot assign"),
    ("var f\nf() = 1", 2, 1, "cannot assign"),
    ("tick-0s { }", 1, 1, "timer period out of range"),
    ("tick-99999999999999999999s { }", 1, 1, "timer period out of range"),
    ("var x = " + "(" * 201 + "1" + ")" * 201, 1, 9 + 200, "nesting deeper than 200"),
    ("var x = -" + "-" * 200 + "1", 1, 9 + 200, "nesting deeper than 200"),
    ("trace a:b { print(stack(n)) }", 1, 25, "stack(depth, skip) takes integer constants"),
    ("trace a:b { print(ustack(1, 1 + 1)) }", 1, 29, "ustack(depth, skip) takes integer constants"),
    ("trace a:b { print(stack(1, 2, 3)) }", 1, 31, "at most 2 arguments"),
    ("trace a:b { print(stack(4, -1)) }", 1, 28, "skip cannot be negative"),
    # ktap's library: unknown members, its FFI, and kdebug.tracepoint's shape
    ("ansi.blink()", 1, 1, "library 'ansi' has no function 'blink'"),
    ("var x = ansi", 1, 9, "builtin 'ansi' is not a value"),
    ("ffi.cdef[[\n  int printk(char *fmt, ...);\n]]", 1, 1, "ktap's FFI"),
    ("print(1)\n  ffi.cdef [[ void f(void); ]]\nffi.C.f()", 2, 3, "ktap's FFI"),
    ('trace a:b { ffi.C.printk("x") }', 1, 13, "ktap's FFI"),
    ('kdebug.tracepoint(name, function () { })', 1, 1, "takes an event name and a function literal"),
    ('kdebug.tracepoint("a", function (x) { })', 1, 1, "write `trace *:NAME"),
    ('kdebug.tracepoint("a")', 1, 1, "takes an event name"),
    ('if (1) { kdebug.tracepoint("a", function () { }) }', 1, 10, "at top level"),
    ('kdebug.tracepoint("a:", function () { })', 1, 19, "is not a tracepoint"),
    # ipof: one string literal, so that addresses are looked up when the run starts
    ("trace a:b { print(ipof(arg0)) }", 1, 24, "ktap's ipof(ADDRESS), the function at an address, is not supported"),
    ('var s = "vfs_read"\nprint(ipof(s))', 2, 12,
     'ipof takes a kernel symbol\'s name as a string literal: ipof("vfs_read")'),
    ('print(ipof("vfs_" .. "read"))', 1, 12, "as a string literal"),
    ("print(ipof())", 1, 11, "as a string literal"),
    ('print(ipof("vfs_read", 1))', 1, 24, "as a string literal"),
]

ACCEPTED = [
    "var x = " + "(" * 199 + "1" + ")" * 199,
    "var x = 0xffffffffffffffff",
    "var x = 0x8000000000000000",
    "var x = 9223372036854775807",
    "#!/usr/bin/env ktapjit\nprint(1)",
    'var s = "\\n\\t\\r\\\\\\"\\\'\\x41\\0"',
    "var print = 1\nprint = 2",
    'var ipof = function (a) { return a }\nprint(ipof(1))',
    'print(ipof("vfs_read"))\ntrace a:b { print(ipof("x")) }\ntrace_end { print(ipof("y")) }',
    "var table = {}\ntable.new = 1",
    "trace a:b { print(pid, tid, cpu, uid, execname, probename, argstr, arg0, arg9, args.x, stack(), ustack()) }",
    "profile-10ms { print(pid, stack()) }",
    "profile-10ms { print(stack(5), stack(5, 2), ustack(0, 0)) }",
    "profile-10ms { print(stack(-1, 12), ustack(-1)) }",
    "if (1) { var a = 1 } print(1)",
    "function f() { return\n1 }",
    "ansi.clear_screen() ansi.set_color(31) ansi.set_color2(1, 2) ansi.set_color3(1, 2, 3) ansi.reset_color() ansi.new_line()",
    "var ansi = {}\nansi.blink = 1",
    'kdebug.tracepoint("sys_enter_open", function () { print(execname) })',
    'var kdebug = {}\nkdebug.tracepoint = 1',
    '# ffi.cdef[[ ]]\nprint(1)',
]


@pytest.mark.parametrize("source,line,col,words", CASES, ids=[c[0][:40] for c in CASES])
def test_compile_error_points_at_offending_token(source, line, col, words):
    with pytest.raises(CompileError) as info:
        resolve_program(parse_program(source.encode(), "t.kp"))
    diag = info.value.diagnostic
    assert (diag.span.line, diag.span.col) == (line, col), diag.message
    assert words in diag.message


@pytest.mark.parametrize("source", ACCEPTED, ids=[s[:40] for s in ACCEPTED])
def test_accepted(source):
    resolve_program(parse_program(source.encode(), "t.kp"))


def test_rendering_keeps_tabs_and_places_caret():
    source = b"var a = 1\n\tvar b = @\n"
    with pytest.raises(CompileError) as info:
        parse_program(source, "dir/s.kp")
    assert info.value.diagnostic.render(source) == (
        "dir/s.kp:2:10: error: syntax error near '@'\n"
        "\tvar b = @\n"
        "\t        ^"
    )


def test_only_first_error_in_source_order_is_reported():
    with pytest.raises(CompileError) as info:
        resolve_program(parse_program(b"print(a)\nprint(b)\n", "t.kp"))
    assert info.value.diagnostic.span.line == 1
