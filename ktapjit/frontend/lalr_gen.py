"""Generate lalr_tables.py from grammar.lark: a development tool, not imported
at run time.

    python -m ktapjit.frontend.lalr_gen          # rewrite lalr_tables.py
    python -m ktapjit.frontend.lalr_gen --check  # exit 1 when it is out of date

lark builds the grammar's LALR(1) tables, its contextual lexer and its tree
shaping once, here; the tables module holds exactly what lalr.py needs to
reproduce them without importing lark (see lalr.py for why). Everything is read from lark's own objects (never re-derived), so the
run-time parser tokenizes and shapes trees as lark does.
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path

HERE = Path(__file__).parent
GRAMMAR = HERE / "grammar.lark"
TABLES = HERE / "lalr_tables.py"


def _lark(text: str):
    from lark import Lark

    # The options parse.py's fallback parser uses: they fix the trees' shape.
    return Lark(text, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


def _child_filter(rule) -> tuple[tuple, int]:
    """lark's ChildFilter for `rule` as (to_include, append_none): which raw
    children are kept (index, spliced `_rule`, Nones before it)."""
    from lark.parse_tree_builder import maybe_create_child_filter

    empty = rule.options.empty_indices
    made = maybe_create_child_filter(rule.expansion, rule.options.keep_all_tokens, False, empty)
    if made is None:
        return tuple((i, False, 0) for i in range(len(rule.expansion))), 0
    args = made.args
    if len(args) == 1:  # ChildFilterLALR_NoPlaceholders: [(index, expand)]
        return tuple((i, x, 0) for i, x in args[0]), 0
    include, append_none = args
    return tuple(tuple(item) for item in include), append_none


def _rules(rule_index: dict) -> list[tuple]:
    rules = []
    for rule in sorted(rule_index, key=rule_index.get):
        include, append_none = _child_filter(rule)
        expand1 = bool(rule.options.expand1 and not rule.alias)
        assert not rule.options.keep_all_tokens and not rule.options.template_source
        rules.append((str(rule.origin.name), len(rule.expansion), str(rule.alias or rule.origin.name),
                      expand1, include, append_none))
    return rules


def _scanner(basic) -> tuple[str, dict]:
    """One basic lexer as (regex, {retyped terminal: {text: keyword}})."""
    from lark.lexer import PatternStr

    scanner = basic.scanner  # built on first use; fills basic.callback
    assert len(scanner._mres) == 1, "more than 100 terminals in one lexer state"
    unless = {}
    for name, callback in basic.callback.items():
        words = {}
        for term in callback.scanner.terminals:
            assert isinstance(term.pattern, PatternStr) and not term.pattern.flags
            words[str(term.pattern.value)] = str(term.name)
        unless[str(name)] = words
    return scanner._mres[0].pattern, unless


def _canonical_order(table) -> list:
    """lark numbers states differently under each PYTHONHASHSEED; number them
    breadth-first from the start state so the generated file is reproducible."""
    start = table.start_states["start"]
    order, seen = [start], {start}
    for state in order:  # grows while iterating: a breadth-first walk
        for _symbol, (action, arg) in sorted(table.states[state].items()):
            if action.name == "Shift" and arg not in seen:
                seen.add(arg)
                order.append(arg)
    assert len(order) == len(table.states)
    return order


def build_tables(text: str) -> dict:
    lark = _lark(text)
    assert not lark.lexer_conf.g_regex_flags and not lark.lexer_conf.callbacks
    frontend = lark.parser
    table = frontend.parser._parse_table
    contextual = frontend.lexer
    order = _canonical_order(table)
    number = {state: i for i, state in enumerate(order)}
    rule_index: dict = {}
    actions = []
    for state in order:
        row = {}
        for symbol, (action, arg) in sorted(table.states[state].items()):
            if action.name == "Shift":
                row[str(symbol)] = number[arg]
            else:
                row[str(symbol)] = ~rule_index.setdefault(arg, len(rule_index))
        actions.append(row)
    lexers, lexer_of, state_lexer = [], {}, []
    for state in order:
        basic = contextual.lexers[state]
        if id(basic) not in lexer_of:
            lexer_of[id(basic)] = len(lexers)
            lexers.append(_scanner(basic))
        state_lexer.append(lexer_of[id(basic)])
    root = contextual.root_lexer
    return {
        # The whole grammar, so lalr.py can tell stale tables without hashlib (~5 ms to import).
        "GRAMMAR": text,
        "START_STATE": number[table.start_states["start"]],
        "END_STATE": number[table.end_states["start"]],
        # Sets are written as sorted tuples: their repr is not stable.
        "IGNORE": tuple(sorted(root.ignore_types)),
        "NEWLINE_TYPES": tuple(sorted(root.newline_types)),
        "ACTIONS": actions,
        "RULES": _rules(rule_index),
        "LEXERS": lexers,
        "STATE_LEXER": state_lexer,
    }


def render(tables: dict) -> str:
    out = ['"""LALR tables for grammar.lark. Generated by `python -m ktapjit.frontend.lalr_gen`:',
           'do not edit; rerun it after changing the grammar (lalr.py refuses stale tables)."""',
           "", "# fmt: off"]
    for name, value in tables.items():
        out.append(f"{name} = {pprint.pformat(value, width=120, compact=True)}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    fresh = render(build_tables(GRAMMAR.read_text()))
    if "--check" in argv:
        current = TABLES.read_text() if TABLES.exists() else ""
        if current != fresh:
            print(f"{TABLES} is out of date: run python -m ktapjit.frontend.lalr_gen", file=sys.stderr)
            return 1
        return 0
    TABLES.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
