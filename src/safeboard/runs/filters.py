r"""The run-search filter language: its syntax tree and parser.

Grammar (keywords and field roots are case-insensitive; keys and values are not)::

    expression := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" expression ")" | comparison
    comparison := field op value
                | field "in" "(" value ("," value)* ")"
                | field "is" ["not"] "null"
                | field "~" text                      -- substring, case-insensitive
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    field      := "status" | "name" | "created" | "ended" | "id"
                | ("tags" | "params" | "metrics" | "system") ("." key)+
    key        := word | string | word ("/" part)+   -- metrics.train/acc, with no spaces
    part       := [A-Za-z0-9_-]+
    value      := number | text | "true" | "false"
    text       := string | word
    number     := ["+"|"-"] digit+ ["." digit*] [("e"|"E") ["+"|"-"] digit+]
    string     := '"' char* '"' | "'" char* "'"   -- escapes \\ \" \' \b \f \n \r \t \uXXXX
    word       := [A-Za-z_] [A-Za-z0-9_-]*        -- not a keyword, where a value is expected

ASCII whitespace separates tokens; ``\uD83D\uDE00`` pairs make one character, as in JSON.
Keywords are ``and or not in is null true false nan inf infinity``. Refused: nan and the
infinities, numbers beyond 64-bit integers or finite floats, NUL and lone surrogates in
strings. After a dot any word is a key, and so are words joined by ``/`` (``metrics.train/acc``,
as TensorBoard names metrics); other keys are quoted: ``metrics."val loss"``.
``tags.<key>`` and ``metrics.<key>`` name one key, dotted parts joined (``metrics.a.b`` is
``a.b``); ``params.<a>.<b>`` and ``system.<a>.<b>`` are paths into nested JSON objects,
with keys free of quotes, backslashes and control characters (SQLite cannot address them).
What values fit which field, and what comparisons mean: :mod:`safeboard.runs.filter_sql`.
Limits: 2000 characters, 50 comparisons, 20 nested levels (each "(" and "not" is one).
Errors are :class:`~safeboard.errors.BadRequest`: ``filter: at column 17: expected a value
after '>', found 'and'`` (columns count characters from 1).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import NoReturn, TypeAlias

from safeboard.errors import BadRequest

__all__ = [
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "And",
    "Comparison",
    "Field",
    "Node",
    "Not",
    "Or",
    "Value",
    "filter_error",
    "parse_filter",
]

MAX_LENGTH = 2000
MAX_COMPARISONS = 50
MAX_DEPTH = 20
PLAIN_ROOTS = ("status", "name", "created", "ended", "id")
KEYED_ROOTS = ("tags", "metrics")
JSON_ROOTS = ("params", "system")
_VALUE_WORDS, _NON_FINITE = {"true": True, "false": False}, ("nan", "inf", "infinity")
KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", *_VALUE_WORDS, *_NON_FINITE})

Value: TypeAlias = bool | int | float | str


@dataclass(frozen=True)
class Field:
    root: str  # lower case, one of PLAIN_ROOTS, KEYED_ROOTS or JSON_ROOTS
    path: tuple[str, ...] = ()  # empty for plain roots, one key for keyed roots


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str  # an op of the grammar, "~", "in", "is null" or "is not null"
    value: Value | tuple[Value, ...] | None  # a tuple for "in", None for the "is" forms
    column: int = dataclasses.field(default=0, compare=False, repr=False)  # for messages


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node: TypeAlias = Comparison | Not | And | Or


def filter_error(column: int, message: str) -> BadRequest:
    return BadRequest(f"filter: at column {column}: {message}")


_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_-]*)"
    r"|(?P<op>!=|<=|>=|=|<|>|~)"
    r"|(?P<punct>[().,])"
    r"|(?P<string>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')",
    re.ASCII | re.DOTALL,
)
# After a ".", a key may join words with "/" (no spaces); elsewhere "/" is no token.
_KEY = re.compile(r"(?P<word>[A-Za-z_][A-Za-z0-9_-]*(?:/[A-Za-z0-9_-]+)+)", re.ASCII)
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|([\\\"'bfnrt]))|\\.?", re.DOTALL)
_ESCAPED = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number, word, op, punct, string or end
    text: str  # as written
    value: Value
    column: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        after_dot = bool(tokens) and tokens[-1].kind == "punct" and tokens[-1].text == "."
        match = (after_dot and _KEY.match(text, pos)) or _TOKEN.match(text, pos)
        if match is None:
            unterminated = text[pos] in "\"'"
            problem = "unterminated string" if unterminated else f"unexpected {text[pos]!r}"
            raise filter_error(pos + 1, problem)
        kind, raw = match.lastgroup or "", match.group()
        value: Value = _number(raw, pos + 1) if kind == "number" else raw
        value = _unescape(raw, pos + 1) if kind == "string" else value
        if kind != "space":
            tokens.append(_Token(kind, raw, value, pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", "", len(text) + 1))
    return tokens


def _number(raw: str, column: int) -> int | float:
    if re.fullmatch(r"[+-]?[0-9]+", raw):
        if -(2**63) <= int(raw) < 2**63:
            return int(raw)
    elif math.isfinite(float(raw)):
        return float(raw)
    raise filter_error(column, f"number out of range: {raw[:30]}")


def _unescape(raw: str, column: int) -> str:
    def one(match: re.Match[str]) -> str:
        code, char = match.groups()
        if code is None and char is None:
            raise filter_error(column + 1 + match.start(), f"unknown escape {match.group()!r}")
        return chr(int(code, 16)) if code else _ESCAPED.get(char, char)

    value = _ESCAPE.sub(one, raw[1:-1])
    try:  # joins escaped pairs such as \ud83d\ude00 into one character, as JSON does
        value = value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        value = "\0"
    if "\0" in value:
        raise filter_error(column, "a string cannot hold NUL or a lone surrogate")
    return value


def parse_filter(text: str) -> Node:
    """Parse a filter into its syntax tree, or raise BadRequest naming the column."""
    if len(text) > MAX_LENGTH:
        raise filter_error(MAX_LENGTH + 1, f"a filter is at most {MAX_LENGTH} characters")
    parser = _Parser(_tokens(text))
    node = parser.or_expr()
    parser.expect("end", "", "'and', 'or' or the end")
    return node


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.index, self.depth, self.comparisons = tokens, 0, 0, 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def expected(self, what: str) -> NoReturn:
        text = self.token.text
        found = repr(text if len(text) <= 20 else text[:20] + "...") if text else "the end"
        raise filter_error(self.token.column, f"expected {what}, found {found}")

    def refuse(self, message: str, token: _Token | None = None) -> NoReturn:
        raise filter_error((token or self.token).column, message)

    def advance(self) -> _Token:
        self.index += 1
        return self.tokens[self.index - 1]

    def at(self, kind: str, *texts: str) -> bool:
        return self.token.kind == kind and self.token.text.lower() in texts

    def accept(self, kind: str, text: str) -> bool:
        """Step over the next token if it is this one."""
        found = self.at(kind, text)
        self.index += int(found)
        return found

    def expect(self, kind: str, text: str, what: str) -> None:
        if not self.accept(kind, text):
            self.expected(what)

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.accept("word", "or"):
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        while self.accept("word", "and"):
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self) -> Node:
        if not (self.at("word", "not") or self.at("punct", "(")):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.refuse(f"nested deeper than {MAX_DEPTH} levels")
        if self.advance().kind == "word":
            node: Node = Not(self.not_expr())
        else:
            node = self.or_expr()
            self.expect("punct", ")", "')'")
        self.depth -= 1
        return node

    def comparison(self) -> Comparison:
        start = self.token
        target = self.field()
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            self.refuse(f"more than {MAX_COMPARISONS} comparisons", start)
        if self.token.kind == "op":
            op = self.advance().text
            return Comparison(target, op, self.value(op), start.column)
        if self.accept("word", "in"):
            self.expect("punct", "(", "'(' after 'in'")
            values = [self.value("(")]
            while self.accept("punct", ","):
                values.append(self.value(","))
            self.expect("punct", ")", "',' or ')'")
            return Comparison(target, "in", tuple(values), start.column)
        if self.accept("word", "is"):
            negated = self.accept("word", "not")
            self.expect("word", "null", "'null'" if negated else "'null' or 'not null'")
            return Comparison(target, "is not null" if negated else "is null", None, start.column)
        return self.expected("an operator, 'in', 'is' or '~' after the field")

    def field(self) -> Field:
        root = self.token.text.lower()
        if self.token.kind != "word" or root in KEYWORDS:
            self.expected("a field such as status, params.lr or metrics.loss")
        if root not in PLAIN_ROOTS + KEYED_ROOTS + JSON_ROOTS:
            self.refuse(f"unknown field {self.token.text[:20]!r}; the fields are {_ROOTS}")
        self.advance()
        path: list[str] = []
        while self.accept("punct", "."):
            if root in PLAIN_ROOTS:
                self.refuse(f"{root} has no sub-fields", self.tokens[self.index - 1])
            if self.token.kind not in ("word", "string") or not self.token.value:
                self.expected("a key after '.'")
            if root in JSON_ROOTS and re.search(r'["\\\x00-\x1f\x7f]', str(self.token.value)):
                self.refuse(f"a {root} key cannot hold quotes, backslashes or control characters")
            path.append(str(self.advance().value))
        if root not in PLAIN_ROOTS and not path:
            self.expected(f"'.' and a key after {root!r}")
        return Field(root, (".".join(path),) if root in KEYED_ROOTS else tuple(path))

    def value(self, after: str) -> Value:
        word = self.token.text.lower() if self.token.kind == "word" else ""
        if word in _NON_FINITE:  # refused by name, not as "expected a value"
            self.refuse("nan and infinities cannot be compared; use a finite number")
        if word == "null":
            self.refuse("use 'is null' or 'is not null' to test for a missing value")
        if word in KEYWORDS - _VALUE_WORDS.keys() or self.token.kind in ("op", "punct", "end"):
            self.expected(f"a value after {after!r}")
        value = self.advance().value
        return _VALUE_WORDS.get(word, value)


_ROOTS = ", ".join(PLAIN_ROOTS) + ", tags.KEY, params.PATH, metrics.KEY, system.PATH"
