"""A small LALR(1) parser run from lalr_tables.py, without lark.

It reproduces what lark (parser="lalr", lexer="contextual",
maybe_placeholders=True) does with grammar.lark, from tables lark itself
produced (lalr_gen.py): the same tokens, the same parse, the same tree shape,
and every node's position (the start of its first token, as lark's
propagate_positions gives). It only parses valid input: on any lexing or
parsing error it raises SyntaxFallback and parse.py asks lark for the exact
diagnostic, so error messages have one source.

Why: importing lark and loading its cached parser cost ~60 ms of every
start-up, and lark's parse with positions ~25 us of CPU per token on the
benchmark VM (60 ms for syscount.kp's table of system calls); this module
imports in ~1 ms and parses about 4x faster (docs/performance-notes.md).
"""

from __future__ import annotations

import re

from ktapjit.frontend import lalr_tables as _t


class SyntaxFallback(Exception):
    """The input is not valid (or the tables are stale): ask lark."""


class Tok:
    """A token, as the AST builder reads lark's: str(tok), type, positions."""

    __slots__ = ("type", "value", "line", "column", "end_line", "end_column")

    def __init__(self, type_: str, value: str, line: int, column: int, end_line: int, end_column: int):
        self.type = type_
        self.value = value
        self.line = line
        self.column = column
        self.end_line = end_line
        self.end_column = end_column

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Tok({self.type}, {self.value!r}, {self.line}:{self.column})"


class Node:
    """A rule's node, as lark's Tree: `data`, `children` (Tok, Node or None
    for an absent optional part) and the position of its first token
    (None for a node without tokens)."""

    __slots__ = ("data", "children", "line", "column")

    def __init__(self, data: str, children: list, line, column):
        self.data = data
        self.children = children
        self.line = line
        self.column = column

    def __repr__(self) -> str:
        return f"Node({self.data}, {self.children!r})"


def tables_match(grammar_text: str) -> bool:
    """Whether lalr_tables.py was generated from this grammar text."""
    return grammar_text == _t.GRAMMAR


class _Lexer:
    """lark's contextual lexer: in each parser state, only the terminals that
    state accepts are tried, in lark's order, as one alternation."""

    # lexer index -> (regex, keywords by terminal); compiled on first use (~1 ms each)
    _compiled: dict[int, tuple] = {}

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0

    @classmethod
    def _scanner(cls, index: int) -> tuple:
        scanner = cls._compiled.get(index)
        if scanner is None:
            pattern, unless = _t.LEXERS[index]
            scanner = cls._compiled[index] = (re.compile(pattern).match, unless)
        return scanner

    def next(self, state: int):
        """The next token in `state`, or None at the end of the text."""
        match, unless = self._scanner(_t.STATE_LEXER[state])
        text, pos = self.text, self.pos
        while pos < len(text):
            found = match(text, pos)
            if found is None:
                raise SyntaxFallback
            value, kind = found.group(), found.lastgroup
            start, line, column = pos, self.line, pos - self.line_start + 1
            pos = self.pos = found.end()
            if kind in _NEWLINE_TYPES and "\n" in value:
                self.line += value.count("\n")
                self.line_start = start + value.rindex("\n") + 1
            if kind in _IGNORE:
                continue
            words = unless.get(kind)
            if words is not None:  # a NAME that spells a keyword this state accepts
                kind = words.get(value, kind)
            return Tok(kind, value, line, column, self.line, pos - self.line_start + 1)
        return None


_IGNORE = frozenset(_t.IGNORE)
_NEWLINE_TYPES = frozenset(_t.NEWLINE_TYPES)


def _reduce(rule: tuple, children: list):
    """lark's tree builder for one rule: keep, splice (`_rule`s) and pad with
    None as its child filter says; a `?rule` with one child is that child."""
    _origin, _size, name, expand1, include, append_none = rule
    kept: list = []
    for index, splice, nones in include:
        if nones:
            kept += [None] * nones
        if splice:
            if kept:
                kept += children[index].children
            else:  # as lark does: reuse the list, so left-recursive lists grow in place
                kept = children[index].children
        else:
            kept.append(children[index])
    if append_none:
        kept += [None] * append_none
    if expand1 and len(kept) == 1:
        return kept[0]
    for child in children:  # the position of the first token, tokens lark filtered out included
        if child.line is not None:
            return Node(name, kept, child.line, child.column)
    return Node(name, kept, None, None)


def _passes_through(rule: tuple) -> bool:
    """`?a: b`: the reduction returns its only child unchanged."""
    _origin, size, _name, expand1, include, append_none = rule
    return expand1 and size == 1 and include == ((0, False, 0),) and not append_none


_RULES = _t.RULES
_PASS = [_passes_through(rule) for rule in _RULES]


def _unit_chain(below: int, top: int, kind: str) -> int:
    """The state reached from `top` (above `below`) by the pass-through
    reductions lookahead `kind` triggers in a row: the `?expr` precedence
    levels, a dozen per operand. Each pops one state and pushes one, so
    `below` stays put and the values do not change."""
    actions = _t.ACTIONS
    while True:
        action = actions[top].get(kind)
        if action is None or action >= 0 or not _PASS[~action]:
            return top
        top = actions[below][_RULES[~action][0]]


def parse(text: str) -> Node:
    """Parse a whole script into the tree lark would build; SyntaxFallback on any error."""
    actions, rules, passes, chains = _t.ACTIONS, _RULES, _PASS, _CHAINS
    end_state = _t.END_STATE
    states = [_t.START_STATE]
    values: list = []
    lexer = _Lexer(text)
    while True:
        tok = lexer.next(states[-1])
        kind = tok.type if tok is not None else "$END"
        while True:  # reduce until `tok` shifts (or, at the end, the start rule is done)
            action = actions[states[-1]].get(kind)
            if action is None:
                raise SyntaxFallback
            if action >= 0:
                if tok is None:
                    raise SyntaxFallback  # lark asserts $END never shifts
                states.append(action)
                values.append(tok)
                break
            if passes[~action]:
                key = (states[-2], states[-1], kind)
                top = chains.get(key)
                if top is None:
                    top = chains[key] = _unit_chain(*key)
                states[-1] = top
                continue
            rule = rules[~action]
            size = rule[1]
            children = values[-size:] if size else []
            if size:
                del states[-size:]
                del values[-size:]
            value = _reduce(rule, children)
            values.append(value)
            states.append(actions[states[-1]][rule[0]])
            if tok is None and states[-1] == end_state:
                return value


# (state below, state on top, lookahead) -> state after its pass-through reductions
_CHAINS: dict[tuple[int, int, str], int] = {}
