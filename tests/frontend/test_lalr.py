"""The lark-free parser (frontend/lalr.py) against lark itself: same trees
for valid scripts, and every invalid script still diagnosed by lark."""

import random
from pathlib import Path

import pytest

from ktapjit.diag import CompileError
from ktapjit.frontend import lalr, lalr_gen, parse

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(p for d in ("examples", "tests", "bench") for p in (ROOT / d).rglob("*.kp"))


def _shape(root) -> list:
    """A tree as a flat pre-order list, positions included (iterative: some
    test scripts nest deeper than the recursion limit)."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node is None or isinstance(node, str):
            out.append(node)
        elif isinstance(node, lalr.Tok):
            out.append((node.type, node.value, node.line, node.column, node.end_line, node.end_column))
        else:
            out.append((node.data, node.line, node.column, len(node.children)))
            stack.extend(reversed(node.children))
    return out


def _outcome(text: str, tree_of):
    try:
        return "ok", _shape(tree_of(text))
    except (lalr.SyntaxFallback, CompileError):  # lark's diagnostic is what parse_program raises
        return "error", None


def _lark(text: str):
    return parse._lark_tree(text, "t.kp")


def test_tables_are_generated_from_the_grammar():
    assert lalr_gen.render(lalr_gen.build_tables(lalr_gen.GRAMMAR.read_text())) == lalr_gen.TABLES.read_text(), \
        "run python -m ktapjit.frontend.lalr_gen"
    assert lalr.tables_match(lalr_gen.GRAMMAR.read_text())


def test_corpus_parses_as_lark_parses():
    assert len(CORPUS) > 100
    for path in CORPUS:
        text = path.read_bytes().decode("latin-1")
        fast, slow = _outcome(text, lalr.parse), _outcome(text, _lark)
        assert fast[0] == slow[0], path
        assert fast[1] == slow[1], path


def _mutate(rnd: random.Random, src: bytes) -> bytes:
    pieces = [b"(", b")", b"{", b"}", b"[", b"]", b",", b";", b"=", b"+=", b"..", b"/x/", b'"', b"'", b"var",
              b"while", b"trace", b"function", b"nil", b"x", b"1", b"0x", b"\n", b" ", b"#", b"-", b"args",
              b".", b"tick-1s", b"pid", b"\\", b"\x01", b"in", b"pairs", b"for", b"trace_end"]
    out = bytearray(src)
    for _ in range(rnd.randint(1, 3)):
        if not out:
            break
        pos = rnd.randrange(len(out))
        roll = rnd.random()
        if roll < 0.4:
            del out[pos:pos + rnd.randint(1, 4)]
        elif roll < 0.8:
            out[pos:pos] = rnd.choice(pieces)
        else:
            other = rnd.randrange(len(out))
            out[pos:pos] = out[other:other + rnd.randint(1, 10)]
    return bytes(out)


@pytest.mark.parametrize("seed", range(3))
def test_mutated_scripts_parse_or_fail_as_lark_does(seed):
    rnd = random.Random(seed)
    sources = [p.read_bytes() for p in CORPUS]
    for _ in range(250):
        text = _mutate(rnd, rnd.choice(sources)).decode("latin-1")
        fast, slow = _outcome(text, lalr.parse), _outcome(text, _lark)
        assert fast[0] == slow[0], text
        assert fast[1] == slow[1], text


def test_deep_nesting_is_parsed_without_recursion():
    text = "x = " + "(" * 3000 + "1" + ")" * 3000
    assert _shape(lalr.parse(text)) == _shape(_lark(text))


def test_stale_tables_fall_back_to_lark(monkeypatch):
    source = b'var t = {1, [2] = "b", c = 3}\nprint(t[2], -t.c .. "x")\n'
    expected = repr(parse.parse_program(source, "t.kp").main)
    monkeypatch.setattr(parse, "_tables_fresh", lambda: False)
    monkeypatch.setattr(lalr, "parse", None)  # must not be called
    assert repr(parse.parse_program(source, "t.kp").main) == expected
