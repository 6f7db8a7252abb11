"""Source bytes to AST.

grammar.lark defines the syntax. Valid scripts are parsed by lalr.py from
tables lark generated (lalr_gen.py), without importing lark; lark itself
parses a script only to report its syntax error (see _parse_tree).

The script is decoded as latin-1 before lexing, so lark's columns are byte
columns (LANGUAGE.md counts bytes) and string literals round-trip to the exact
bytes written. Syntax-level checks that lark cannot express (literal ranges,
escapes, nesting depth, which expressions may be statements) are made here,
and the first one found is raised as a CompileError.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ktapjit.cache_paths import cache_root
from ktapjit.diag import CompileError, Diagnostic, Span
from ktapjit.frontend import ast, lalr
from ktapjit.frontend.lalr import Node, Tok
from ktapjit.semantics.intmath import INT64_MAX, parse_int_literal

MAX_NESTING = 200

_GRAMMAR = Path(__file__).with_name("grammar.lark")

# Rules that open one level of nesting (LANGUAGE.md: "nesting deeper than 200").
# A level is a block or an expression that contains expressions; every other
# tree node is structure. Bounding this bounds every recursion in the compiler.
_NESTING_RULES = frozenset({
    "block", "table_cons", "func_expr", "paren", "index", "field", "call",
    "binary", "logical", "unary",
})

_TIMER_UNIT_NS = {"s": 10**9, "sec": 10**9, "ms": 10**6, "msec": 10**6, "us": 10**3, "usec": 10**3}

_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", '"': b'"', "'": b"'", "0": b"\0"}


KEYWORDS = frozenset(
    "var function return if elseif else while for in break repeat until trace trace_end nil true false".split()
)
EVENT_VALUE_NAMES = frozenset(
    ["pid", "tid", "cpu", "uid", "execname", "probename", "argstr", "args"] + [f"arg{i}" for i in range(10)]
)
RESERVED_WORDS = KEYWORDS | EVENT_VALUE_NAMES


@functools.lru_cache(maxsize=1)
def _parser():
    """lark's parser for grammar.lark: the reference lalr.py reproduces, and
    the source of every syntax-error diagnostic. Imported only when needed."""
    from lark import Lark

    # lark's cache keys on the grammar text and options; the file lives in the
    # user's cache dir so a second start skips building the LALR tables.
    cache_dir = cache_root()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache: str | bool = str(cache_dir / "grammar.lark.cache")
    except OSError:
        # Never a shared directory: lark unpickles the cache file it finds.
        cache = False
    return Lark(
        _GRAMMAR.read_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=cache,
    )


def parse_program(source: bytes, path: str) -> ast.Program:
    """Parse a whole script. Raises CompileError with the first problem found."""
    text = source.decode("latin-1")
    tree = _parse_tree(text, path)
    _check_nesting(tree, path)
    builder = _AstBuilder(path)
    main_body = builder.block_from(tree.children, _span_at(path, 1, 1))
    main = ast.FuncExpr(params=[], body=main_body, span=_span_at(path, 1, 1), name="<main>")
    return ast.Program(main=main, path=path, source=source)


@functools.lru_cache(maxsize=1)
def _tables_fresh() -> bool:
    return lalr.tables_match(_GRAMMAR.read_text())


def _parse_tree(text: str, path: str) -> Node:
    """The tree lark would build. lalr.py parses valid scripts without lark;
    lark itself runs only to diagnose a syntax error (or when the generated
    tables are older than the grammar), so there is one source of messages."""
    if _tables_fresh():
        try:
            return lalr.parse(text)
        except lalr.SyntaxFallback:
            pass
    return _lark_tree(text, path)


def _lark_tree(text: str, path: str) -> Node:
    from lark.exceptions import UnexpectedInput

    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        diagnostic = _syntax_diagnostic(exc, text, path)
        raise CompileError(_ffi_diagnostic(text, path, diagnostic) or diagnostic) from None
    return _from_lark(tree)


# ktap's FFI: `ffi.cdef[[ C declarations ]]`, `ffi.C.func(...)`, `ffi.cast(...)`.
_FFI_USE = re.compile(r"\bffi\s*\.\s*(cdef|C|cast|new|sizeof|string|free)\b")
FFI_UNSUPPORTED = "ktap's FFI (ffi.cdef, ffi.C, ffi.cast) calls kernel functions from the script; ktapjit does not support it"


def _ffi_diagnostic(text: str, path: str, syntax: Diagnostic):
    """A syntax error at or after a use of ktap's FFI is reported as that use:
    its `ffi.cdef[[...]]` is not this language's syntax, and the FFI is not
    supported anyway (resolve reports the uses that do parse)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if number > syntax.span.line:
            break
        match = _FFI_USE.search(line.split("#", 1)[0])
        if match is not None:
            return Diagnostic(_span_at(path, number, match.start() + 1), FFI_UNSUPPORTED)
    return None


def _from_lark(tree) -> Node:
    """lark's Tree and Tokens as lalr.py's Node and Tok (iteratively: trees
    can be deeper than Python's recursion limit before _check_nesting)."""
    from lark import Token, Tree

    def convert(item):
        if isinstance(item, Token):
            return Tok(item.type, str(item), item.line, item.column, item.end_line, item.end_column)
        if isinstance(item, Tree):
            meta = item.meta
            node = Node(item.data, list(item.children), getattr(meta, "line", None), getattr(meta, "column", None))
            pending.append(node)
            return node
        return item

    pending: list[Node] = []
    root = convert(tree)
    while pending:
        node = pending.pop()
        node.children = [convert(child) for child in node.children]
    return root


def _span_at(path: str, line: int, col: int) -> Span:
    return Span(path, line, col, line, col)


def _token_span(path: str, tok: Tok) -> Span:
    return Span(path, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column)


# ------------------------------------------------------------ syntax errors


# Terminals that swallow free text; where they were not expected, lark's
# fallback lexer may have matched one, so describe only its first word.
_GREEDY_TERMINALS = frozenset({"EVENTDEF", "FILTER"})
_FIRST_WORD = re.compile(r"[A-Za-z0-9_]+|\S")


def _describe_token(tok, expected: set[str]) -> str:
    if tok.type == "$END":
        return "end of file"
    text = str(tok)
    if tok.type in _GREEDY_TERMINALS and tok.type not in expected:
        text = _FIRST_WORD.match(text).group(0)
    if len(text) > 20:
        text = text[:17] + "..."
    return f"'{text}'"


def _syntax_diagnostic(exc, text: str, path: str) -> Diagnostic:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if ch in "\"'":
            msg = "unfinished string"
        elif ch == "\\":
            msg = "unexpected character '\\'"
        elif ch.isprintable() and ch != "":
            msg = f"unexpected character '{ch}'"
        else:
            msg = f"unexpected byte 0x{ord(ch):02x}" if ch else "unexpected end of file"
        return Diagnostic(_span_at(path, exc.line, exc.column), msg)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        line, col = _end_position(text)
        return Diagnostic(_span_at(path, line, col), "unexpected end of file")
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if str(tok)[:1] in "\"'" and tok.type != "STRING":
        return Diagnostic(_span_at(path, tok.line, tok.column), "unfinished string")
    return Diagnostic(_span_at(path, tok.line, tok.column), f"syntax error near {_describe_token(tok, exc.expected)}")


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


# --------------------------------------------------------------- nesting


def _check_nesting(tree: Node, path: str) -> None:
    """Reject nesting deeper than MAX_NESTING before anything recurses on the tree."""
    stack: list[tuple[Node, int]] = [(tree, 0)]
    worst: tuple[int, int] | None = None
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_NESTING:
                pos = (node.line, node.column)
                worst = pos if worst is None or pos < worst else worst
                continue
        for child in node.children:
            if isinstance(child, Node):
                stack.append((child, depth))
    if worst is not None:
        raise CompileError(Diagnostic(_span_at(path, *worst), f"nesting deeper than {MAX_NESTING} levels"))


# ------------------------------------------------------------ tree to AST


def _fail(span: Span, message: str) -> None:
    raise CompileError(Diagnostic(span, message))


class _AstBuilder:
    """Turns the parse tree into AST nodes. Recursion is bounded by _check_nesting."""

    def __init__(self, path: str):
        self.path = path

    def span(self, tok: Tok) -> Span:
        return _token_span(self.path, tok)

    def name(self, tok: Tok) -> ast.Name:
        # lark's contextual lexer reads a keyword as NAME where only a name
        # fits (`var while`), so reserved words are refused here.
        text = str(tok)
        if text in RESERVED_WORDS:
            _fail(self.span(tok), f"'{text}' is a reserved word and cannot name a variable")
        return ast.Name(text, self.span(tok))

    def meta_span(self, tree: Node) -> Span:
        return _span_at(self.path, tree.line, tree.column)

    # ----- statements

    def block_from(self, children: list, span: Span) -> ast.Block:
        stmts = [self.stmt(c) for c in children if isinstance(c, Node)]
        return ast.Block(stmts, span)

    def block(self, tree: Node) -> ast.Block:
        lbrace = tree.children[0]
        return self.block_from(tree.children[1:], self.span(lbrace))

    def stmt(self, tree: Node) -> ast.Stmt:
        method = getattr(self, "stmt_" + tree.data)
        return method(tree)

    def stmt_var_decl(self, tree: Node) -> ast.Stmt:
        kw, names, values = tree.children
        name_nodes = [self.name(t) for t in names.children]
        value_nodes = self.expr_list(values) if values is not None else []
        return ast.VarDecl(name_nodes, value_nodes, self.span(kw))

    def stmt_func_decl(self, tree: Node) -> ast.Stmt:
        kw, name_tok, params, body = tree.children
        func = ast.FuncExpr(self.params(params), self.block(body), self.span(kw), name=str(name_tok))
        return ast.FuncDecl(self.name(name_tok), func, self.span(kw))

    def params(self, tree: Node) -> list[ast.Name]:
        return [self.name(t) for t in tree.children if t is not None]

    def stmt_assign(self, tree: Node) -> ast.Stmt:
        targets_tree, eq, values = tree.children
        targets = [self.target(t) for t in targets_tree.children]
        return ast.Assign(targets, self.expr_list(values), self.span(eq))

    def target(self, node) -> ast.Expr:
        expr = self.expr(node)
        if not isinstance(expr, (ast.Name, ast.Index)) or self._is_paren(node):
            _fail(self.node_span(node), "cannot assign to this expression")
        return expr

    @staticmethod
    def _is_paren(node) -> bool:
        return isinstance(node, Node) and node.data == "paren"

    def node_span(self, node) -> Span:
        if isinstance(node, Tok):
            return self.span(node)
        return self.meta_span(node)

    def stmt_compound_assign(self, tree: Node) -> ast.Stmt:
        target, op, value = tree.children
        return ast.CompoundAssign(str(op)[0], self.target(target), self.expr(value), self.span(op))

    def stmt_call_stmt(self, tree: Node) -> ast.Stmt:
        (node,) = tree.children
        expr = self.expr(node)
        if not isinstance(expr, ast.Call) or self._is_paren(node):
            _fail(self.node_span(node), "syntax error: this expression is not a statement")
        return ast.CallStmt(expr, expr.span)

    def stmt_if_stmt(self, tree: Node) -> ast.Stmt:
        kw, cond, body, *rest = tree.children
        clauses = [(self.expr(cond), self.block(body))]
        orelse = None
        for child in rest:
            if isinstance(child, Node) and child.data == "elseif_clause":
                _, c, b = child.children
                clauses.append((self.expr(c), self.block(b)))
            elif isinstance(child, Node) and child.data == "block":
                orelse = self.block(child)
        return ast.If(clauses, orelse, self.span(kw))

    def stmt_while_stmt(self, tree: Node) -> ast.Stmt:
        kw, cond, body = tree.children
        return ast.While(self.expr(cond), self.block(body), self.span(kw))

    def stmt_repeat_stmt(self, tree: Node) -> ast.Stmt:
        kw, body, _until, cond = tree.children
        return ast.Repeat(self.block(body), self.expr(cond), self.span(kw))

    def stmt_for_num(self, tree: Node) -> ast.Stmt:
        kw, name, _eq, start, limit, step, body = tree.children
        return ast.ForNum(
            self.name(name), self.expr(start), self.expr(limit),
            self.expr(step) if step is not None else None, self.block(body), self.span(kw),
        )

    def stmt_for_c(self, tree: Node) -> ast.Stmt:
        kw, name, _eq, init, cond, *rest = tree.children
        body = rest[-1]
        update = rest[0] if len(rest) == 2 else None
        return ast.ForC(
            self.name(name), self.expr(init),
            self.expr(cond) if cond is not None else None,
            self.stmt(update) if update is not None else None,
            self.block(body), self.span(kw),
        )

    def stmt_for_in(self, tree: Node) -> ast.Stmt:
        kw, key, value, _in, pairs, lparen, table, body = tree.children
        if str(pairs) != "pairs":
            _fail(self.span(pairs), "expected 'pairs(...)' after 'in'")
        return ast.ForIn(
            self.name(key),
            self.name(value) if value is not None else None,
            self.expr(table), self.block(body), self.span(kw), self.span(lparen),
        )

    def stmt_break_stmt(self, tree: Node) -> ast.Stmt:
        return ast.Break(self.span(tree.children[0]))

    def stmt_return_stmt(self, tree: Node) -> ast.Stmt:
        kw, value = tree.children
        return ast.Return(self.expr(value) if value is not None else None, self.span(kw))

    def probe_body(self, block: Node, span: Span, name: str) -> ast.FuncExpr:
        return ast.FuncExpr([], self.block(block), span, name=name)

    def stmt_trace_stmt(self, tree: Node) -> ast.Stmt:
        kw, eventdef, filt, body = tree.children
        text = str(eventdef).rstrip()
        filter_text = str(filt)[1:-1] if filt is not None else None
        filter_span = None
        if filt is not None:
            # Point just inside the opening slash: that is where the filter text starts.
            filter_span = Span(self.path, filt.line, filt.column + 1, filt.line, filt.column + 1)
        return ast.Trace(
            text, self.span(eventdef), filter_text, filter_span,
            self.probe_body(body, self.span(kw), f"trace {text}"), self.span(kw),
        )

    def stmt_trace_end_stmt(self, tree: Node) -> ast.Stmt:
        kw, body = tree.children
        return ast.TraceEnd(self.probe_body(body, self.span(kw), "trace_end"), self.span(kw))

    def stmt_timer_stmt(self, tree: Node) -> ast.Stmt:
        tok, body = tree.children
        text = str(tok)
        kind, _, period = text.partition("-")
        digits = period.rstrip("secmu")
        unit = period[len(digits):]
        period_ns = int(digits) * _TIMER_UNIT_NS[unit]
        if not 0 < period_ns <= INT64_MAX:
            _fail(self.span(tok), f"timer period out of range: '{text}'")
        return ast.Timer(kind, period_ns, text, self.probe_body(body, self.span(tok), text), self.span(tok))

    # ----- expressions

    def expr_list(self, tree: Node) -> list[ast.Expr]:
        return [self.expr(c) for c in tree.children]

    def expr(self, node) -> ast.Expr:
        if isinstance(node, Tok):  # only reachable through inlined single-token rules
            raise AssertionError(f"unexpected token {node!r}")
        return getattr(self, "expr_" + node.data)(node)

    def expr_int_lit(self, tree: Node) -> ast.Expr:
        tok = tree.children[0]
        return ast.IntLit(self.int_value(tok), self.span(tok))

    def int_value(self, tok: Tok) -> int:
        value = parse_int_literal(str(tok))
        if value is None:
            _fail(self.span(tok), f"integer literal '{tok}' out of range")
        return value

    def expr_str_lit(self, tree: Node) -> ast.Expr:
        tok = tree.children[0]
        return ast.StrLit(self.string_value(tok), self.span(tok))

    def string_value(self, tok: Tok) -> bytes:
        body = str(tok)[1:-1]
        if "\\" not in body:  # most literals: no escapes, the text is the bytes
            return body.encode("latin-1")
        out = bytearray()
        i = 0
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out += ch.encode("latin-1")
                i += 1
                continue
            esc = body[i + 1] if i + 1 < len(body) else ""
            if esc in _ESCAPES:
                out += _ESCAPES[esc]
                i += 2
            elif esc == "x" and _is_hex2(body[i + 2:i + 4]):
                out.append(int(body[i + 2:i + 4], 16))
                i += 4
            else:
                seq = "\\" + esc if esc != "x" else "\\x"
                _fail(self.span(tok), f"invalid escape sequence '{seq}' in string")
        return bytes(out)

    def expr_nil_lit(self, tree: Node) -> ast.Expr:
        return ast.NilLit(self.span(tree.children[0]))

    def expr_true_lit(self, tree: Node) -> ast.Expr:
        return ast.BoolLit(True, self.span(tree.children[0]))

    def expr_false_lit(self, tree: Node) -> ast.Expr:
        return ast.BoolLit(False, self.span(tree.children[0]))

    def expr_name(self, tree: Node) -> ast.Expr:
        tok = tree.children[0]
        return self.name(tok)

    def expr_event_value(self, tree: Node) -> ast.Expr:
        tok = tree.children[0]
        return ast.EventValue(str(tok), self.span(tok))

    def expr_args_field(self, tree: Node) -> ast.Expr:
        args_tok, _dot, name = tree.children
        return ast.ArgsField(str(name), self.span(args_tok))

    def expr_paren(self, tree: Node) -> ast.Expr:
        return self.expr(tree.children[1])

    def expr_index(self, tree: Node) -> ast.Expr:
        obj, lbracket, key = tree.children
        return ast.Index(self.expr(obj), self.expr(key), self.span(lbracket))

    def expr_field(self, tree: Node) -> ast.Expr:
        obj, dot, name = tree.children
        key = ast.StrLit(str(name).encode("latin-1"), self.span(name))
        return ast.Index(self.expr(obj), key, self.span(dot))

    def expr_call(self, tree: Node) -> ast.Expr:
        callee, lparen, args = tree.children
        arg_nodes = self.expr_list(args) if args is not None else []
        return ast.Call(self.expr(callee), arg_nodes, self.span(lparen))

    def expr_binary(self, tree: Node) -> ast.Expr:
        left, op, right = tree.children
        return ast.Binary(str(op), self.expr(left), self.expr(right), self.span(op))

    def expr_logical(self, tree: Node) -> ast.Expr:
        left, op, right = tree.children
        return ast.Logical(str(op), self.expr(left), self.expr(right), self.span(op))

    def expr_unary(self, tree: Node) -> ast.Expr:
        op, operand = tree.children
        return ast.Unary(str(op), self.expr(operand), self.span(op))

    def expr_table_cons(self, tree: Node) -> ast.Expr:
        lbrace = tree.children[0]
        items = [self.table_item(c) for c in tree.children[1:] if isinstance(c, Node)]
        return ast.TableCons(items, self.span(lbrace))

    def table_item(self, tree: Node) -> ast.TableItem:
        if tree.data == "positional_item":
            (value,) = tree.children
            return ast.TableItem(None, self.expr(value), self.meta_span(tree))
        if tree.data == "named_item":
            name, eq, value = tree.children
            key = ast.StrLit(str(name).encode("latin-1"), self.span(name))
            return ast.TableItem(key, self.expr(value), self.span(eq))
        lbracket, key, eq, value = tree.children
        return ast.TableItem(self.expr(key), self.expr(value), self.span(lbracket))

    def expr_func_expr(self, tree: Node) -> ast.Expr:
        kw, params, body = tree.children
        return ast.FuncExpr(self.params(params), self.block(body), self.span(kw))


def _is_hex2(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)
