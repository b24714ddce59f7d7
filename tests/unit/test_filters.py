"""The run-search filter language: parser, errors with columns, compiler, property tests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from safeboard.errors import BadRequest
from safeboard.runs.filter_sql import (
    JsonKind,
    JsonRoot,
    PlainField,
    compile_filter,
    json_path_expr,
)
from safeboard.runs.filters import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Comparison,
    Field,
    Node,
    Not,
    Or,
    Value,
    parse_filter,
)

METADATA = sa.MetaData()
RUNS = sa.Table(
    "runs",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("status", sa.Enum("running", "finished", "failed", "killed", native_enum=False)),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("params", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.Column("system", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)
TAGS = sa.Table(
    "run_tags",
    METADATA,
    sa.Column("run_id", sa.Integer),
    sa.Column("key", sa.String),
    sa.Column("value", sa.String),
)
SUMMARY = sa.Table(
    "metric_summary",
    METADATA,
    sa.Column("run_id", sa.Integer),
    sa.Column("key", sa.String),
    sa.Column("last_value", sa.Float),
)
DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
}


class Resolver:
    """Fields of the throwaway tables above, for compiling without a database."""

    def __init__(self, dialect_name: str) -> None:
        self.dialect_name = dialect_name

    def column(self, name: PlainField) -> ColumnElement[Any]:
        columns = {"created": "created_at", "ended": "ended_at"}
        return RUNS.c[columns.get(name, name)]

    def json_value(self, root: JsonRoot, path: Sequence[str], kind: JsonKind) -> ColumnElement[Any]:
        return json_path_expr(RUNS.c[root], path, self.dialect_name, kind)

    def metric_last(self, key: str) -> ColumnElement[float]:
        found = sa.select(SUMMARY.c.last_value).where(
            SUMMARY.c.run_id == RUNS.c.id, SUMMARY.c.key == key
        )
        return found.scalar_subquery()

    def tag(self, key: str) -> ColumnElement[str]:
        found = sa.select(TAGS.c.value).where(TAGS.c.run_id == RUNS.c.id, TAGS.c.key == key)
        return found.scalar_subquery()


def sql(text: str, dialect_name: str = "sqlite") -> tuple[str, dict[str, Any]]:
    """The compiled SQL of a filter (bound parameters left as placeholders) and its params."""
    condition = compile_filter(parse_filter(text), Resolver(dialect_name))
    compiled = sa.select(RUNS.c.id).where(condition).compile(dialect=DIALECTS[dialect_name])
    return str(compiled), compiled.params


def cmp(root: str, op: str, value: Any, *path: str) -> Comparison:
    return Comparison(Field(root, path), op, value)


# ---- a printer, the inverse of the parser ------------------------------------------------


def to_text(node: Node) -> str:
    """Filter text for a tree: strings always quoted, floats by repr, groups parenthesized."""
    if isinstance(node, Or):
        return " or ".join(grouped(child, (Or,)) for child in node.operands)
    if isinstance(node, And):
        return " and ".join(grouped(child, (Or, And)) for child in node.operands)
    if isinstance(node, Not):
        return "not " + grouped(node.operand, (Or, And))
    target = node.field.root + "".join("." + key_text(key) for key in node.field.path)
    if isinstance(node.value, tuple):
        return f"{target} in ({', '.join(value_text(value) for value in node.value)})"
    if node.value is None:
        return f"{target} {node.op}"
    return f"{target} {node.op} {value_text(node.value)}"


def grouped(node: Node, kinds: tuple[type[Or | And], ...]) -> str:
    return f"({to_text(node)})" if isinstance(node, kinds) else to_text(node)


def key_text(key: str) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*", key, re.ASCII)
    return key if plain else value_text(key)


def value_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def levels(node: Node) -> int:
    """How deeply to_text nests: each "not" and each parenthesized group is a level."""
    if isinstance(node, Comparison):
        return 0
    if isinstance(node, Not):
        return 1 + levels(node.operand) + isinstance(node.operand, And | Or)
    kinds = (Or,) if isinstance(node, Or) else (Or, And)
    return max(levels(child) + isinstance(child, kinds) for child in node.operands)


# ---- parsing -----------------------------------------------------------------------------


def test_the_issue_example() -> None:
    text = 'params.lr > 0.01 and tags.model = "resnet" and metrics.loss < 0.2 and status = finished'
    assert parse_filter(text) == And(
        (
            cmp("params", ">", 0.01, "lr"),
            cmp("tags", "=", "resnet", "model"),
            cmp("metrics", "<", 0.2, "loss"),
            cmp("status", "=", "finished"),
        )
    )


A, B, C = cmp("name", "=", "a"), cmp("name", "=", "b"), cmp("name", "=", "c")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("name = a or name = b and name = c", Or((A, And((B, C))))),
        ("name = a and name = b or name = c", Or((And((A, B)), C))),
        ("(name = a or name = b) and name = c", And((Or((A, B)), C))),
        ("not name = a and name = b", And((Not(A), B))),
        ("not (name = a and name = b)", Not(And((A, B)))),
        ("not not name = a", Not(Not(A))),
        ("name = a and name = b and name = c", And((A, B, C))),
        ("name = a or name = b or name = c", Or((A, B, C))),
        ("(name = a and name = b) and name = c", And((And((A, B)), C))),
        ("((name = a))", A),
        ("NOT name = a OR name = b AnD name = c", Or((Not(A), And((B, C))))),
    ],
)
def test_precedence_and_grouping(text: str, tree: Node) -> None:
    assert parse_filter(text) == tree


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("metrics.loss = 1", cmp("metrics", "=", 1, "loss")),
        ("metrics.loss != -1", cmp("metrics", "!=", -1, "loss")),
        ("metrics.loss < 1.5", cmp("metrics", "<", 1.5, "loss")),
        ("metrics.loss <= 2e-3", cmp("metrics", "<=", 0.002, "loss")),
        ("metrics.loss > +3E2", cmp("metrics", ">", 300.0, "loss")),
        ("metrics.loss >= 4.", cmp("metrics", ">=", 4.0, "loss")),
        ("metrics.loss>=4", cmp("metrics", ">=", 4, "loss")),
        ('name ~ "res"', cmp("name", "~", "res")),
        ("name ~ res", cmp("name", "~", "res")),
        ("status in (running, 'failed')", cmp("status", "in", ("running", "failed"))),
        ("params.x in (1, true, 'a')", cmp("params", "in", (1, True, "a"), "x")),
        ("ended is null", cmp("ended", "is null", None)),
        ("ended IS NOT NULL", cmp("ended", "is not null", None)),
        ("params.flag = TRUE", cmp("params", "=", True, "flag")),
        ("params.flag != false", cmp("params", "!=", False, "flag")),
        ("status = Finished", cmp("status", "=", "Finished")),
        ("name = my-run_2", cmp("name", "=", "my-run_2")),
        ("id = 9223372036854775807", cmp("id", "=", 2**63 - 1)),
        ("id = -9223372036854775808", cmp("id", "=", -(2**63))),
    ],
)
def test_every_operator_and_value(text: str, tree: Node) -> None:
    assert parse_filter(text) == tree
    assert repr(parse_filter(text)) == repr(tree)  # True is not 1, 4.0 is not 4


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ('metrics."val/loss" < 1', Field("metrics", ("val/loss",))),
        ("metrics.train/acc > 0.9", Field("metrics", ("train/acc",))),  # unquoted, issue 11
        ("metrics. layer/0/acc-top_1 > 0.9", Field("metrics", ("layer/0/acc-top_1",))),
        ("metrics.eval.train/acc > 0.9", Field("metrics", ("eval.train/acc",))),
        ("tags.and/or = x", Field("tags", ("and/or",))),
        ("params.opt/lr.base < 1", Field("params", ("opt/lr", "base"))),
        ("metrics.train.loss < 1", Field("metrics", ("train.loss",))),
        ('metrics."train".loss < 1', Field("metrics", ("train.loss",))),
        ("tags.model = x", Field("tags", ("model",))),
        ("tags.'a b' = x", Field("tags", ("a b",))),
        ("params.optimizer.lr < 1", Field("params", ("optimizer", "lr"))),
        ('params."optimizer.lr" < 1', Field("params", ("optimizer.lr",))),
        ('params."0".in < 1', Field("params", ("0", "in"))),
        ("PARAMS.Lr < 1", Field("params", ("Lr",))),
        ("system.host = x", Field("system", ("host",))),
        ("Created > '2024-01-01'", Field("created")),
    ],
)
def test_fields_and_quoted_keys(text: str, target: Field) -> None:
    node = parse_filter(text)
    assert isinstance(node, Comparison)
    assert node.field == target


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r"'it\'s'", "it's"),
        (r'''"it's"''', "it's"),
        (r"""'say "hi"'""", 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\n\t\r\b\f"', "\n\t\r\b\f"),
        (r'"\u00e9t\u00C9"', "étÉ"),
        (r'"\ud83d\ude00"', "\U0001f600"),  # a surrogate pair, as JSON writes it
        ('"ünïcødé ✓"', "ünïcødé ✓"),
        ('""', ""),
        (r'"%_\/"', None),  # \/ is not an escape
    ],
)
def test_string_escapes(literal: str, value: str | None) -> None:
    if value is None:
        with pytest.raises(BadRequest, match=r"unknown escape"):
            parse_filter(f"name = {literal}")
        return
    assert parse_filter(f"name = {literal}") == cmp("name", "=", value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params.lr > and", "at column 13: expected a value after '>', found 'and'"),
        ("params.lr >", "at column 12: expected a value after '>', found the end"),
        ("", "at column 1: expected a field such as status, params.lr or metrics.loss, found the"),
        ("   ", "at column 4: expected a field"),
        ("x = 1", "at column 1: unknown field 'x'; the fields are status, name,"),
        ("status.x = 1", "at column 7: status has no sub-fields"),
        ("params = 1", "at column 8: expected '.' and a key after 'params', found '='"),
        ("params. = 1", "at column 9: expected a key after '.', found '='"),
        ('metrics."" = 1', "at column 9: expected a key after '.', found '\"\"'"),
        ('params."a\\"b" = 1', "at column 8: a params key cannot hold quotes, backslashes"),
        ('name = "abc', "at column 8: unterminated string"),
        ("name = 'abc\\'", "at column 8: unterminated string"),
        ('name = "a\\qb"', "at column 10: unknown escape '\\\\q'"),
        ('name = "\\u12"', "at column 9: unknown escape '\\\\u'"),
        ('name = "\\u0000"', "at column 8: a string cannot hold NUL or a lone surrogate"),
        ('name = "\\ud800"', "at column 8: a string cannot hold NUL or a lone surrogate"),
        ("name = @", "at column 8: unexpected '@'"),
        ("name = a/b", "at column 9: unexpected '/'"),  # "/" joins words of a key only
        ("metrics.a/ > 1", "at column 10: unexpected '/'"),
        ("metrics.a//b > 1", "at column 10: unexpected '/'"),
        ("metrics.a / b > 1", "at column 11: unexpected '/'"),
        ("metrics./a > 1", "at column 9: unexpected '/'"),
        ("name = a\u00a0", "at column 9: unexpected '\\xa0'"),
        ("params.x = nan", "at column 12: nan and infinities cannot be compared"),
        ("params.x > -INF", "at column 12: unexpected '-'"),
        ("params.x < Infinity", "at column 12: nan and infinities cannot be compared"),
        ("params.x = null", "at column 12: use 'is null' or 'is not null'"),
        ("params.x = 1e999", "at column 12: number out of range: 1e999"),
        ("id = 9223372036854775808", "at column 6: number out of range"),
        ("id in 1", "at column 7: expected '(' after 'in', found '1'"),
        ("id in ()", "at column 8: expected a value after '(', found ')'"),
        ("id in (1, 2", "at column 12: expected ',' or ')', found the end"),
        ("id in (1,)", "at column 10: expected a value after ',', found ')'"),
        ("status is nul", "at column 11: expected 'null' or 'not null', found 'nul'"),
        ("status is not nul", "at column 15: expected 'null', found 'nul'"),
        ("status finished", "at column 8: expected an operator, 'in', 'is' or '~' after the field"),
        ("status == a", "at column 9: expected a value after '=', found '='"),
        ("status = a)", "at column 11: expected 'and', 'or' or the end, found ')'"),
        ("(status = a", "at column 12: expected ')', found the end"),
        ("status = a and", "at column 15: expected a field such as status"),
        ("status = a or or", "at column 15: expected a field such as status, params.lr or"),
        ("not", "at column 4: expected a field"),
        ("and = 1", "at column 1: expected a field such as status, params.lr or metrics.loss"),
        ("status = and", "at column 10: expected a value after '=', found 'and'"),
        ("name = 'a' name = 'b'", "at column 12: expected 'and', 'or' or the end, found 'name'"),
        ("name = 'x' and name = '" + "a" * 30, "at column 23: unterminated string"),
        (
            "name = a and " + "b" * 30,
            "at column 14: unknown field 'bbbbbbbbbbbbbbbbbbbb'; the fields are",
        ),
        (
            "name = a " + "b" * 30,
            "at column 10: expected 'and', 'or' or the end, found 'bbbbbbbbbbbbbbbbbbbb...'",
        ),
    ],
)
def test_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_filter(text)
    assert caught.value.message.startswith(f"filter: {message}")
    assert caught.value.code == "bad_request"


def test_limits() -> None:
    one = "name = a"
    assert parse_filter(" or ".join([one] * MAX_COMPARISONS))
    with pytest.raises(BadRequest, match=r"at column 601: more than 50 comparisons"):
        parse_filter(" or ".join([one] * (MAX_COMPARISONS + 1)))
    assert parse_filter("(" * MAX_DEPTH + one + ")" * MAX_DEPTH) == A
    with pytest.raises(BadRequest, match=r"at column 21: nested deeper than 20 levels"):
        parse_filter("(" * (MAX_DEPTH + 1) + one + ")" * (MAX_DEPTH + 1))
    with pytest.raises(BadRequest, match=r"at column 81: nested deeper than 20 levels"):
        parse_filter("not " * (MAX_DEPTH + 1) + one)
    with pytest.raises(BadRequest, match=r"at column 51: nested deeper"):
        parse_filter("not (" * 11 + one + ")" * 11)
    padded = one + " " * (MAX_LENGTH - len(one))
    assert parse_filter(padded) == A
    with pytest.raises(BadRequest, match=r"at column 2001: a filter is at most 2000 characters"):
        parse_filter(padded + " ")


# ---- compiling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('metrics.loss = "low"', "at column 1: metrics take numbers"),
        ("metrics.loss in (1, x)", "at column 1: metrics take numbers"),
        ("metrics.loss ~ low", "at column 1: metrics is not text"),
        ("created ~ '2024'", "at column 1: created is not text"),
        ("name ~ 5", "at column 1: '~' takes text: quote the number"),
        ("params.x ~ true", "at column 1: '~' takes text"),
        ("status = 1", "at column 1: status holds text: quote the number"),
        ("tags.epochs = 5", "at column 1: tags holds text: quote the number"),
        ("status = true", "at column 1: true and false compare only with params or system"),
        ("params.flag > false", "at column 1: true and false compare only with params"),
        ("created > yesterday", 'at column 1: created takes an ISO 8601 time such as "2024-'),
        ("ended < 20", "at column 1: ended takes an ISO 8601 time"),
        ("ended < '9999-12-31T23:00-05:00'", "at column 1: ended takes an ISO 8601 time"),
        ("id = 1.5", "at column 1: an id is text or an integer"),
        ("id = abc", "at column 1: not a valid id: 'abc'"),
        ("id ~ '1'", "at column 1: '~' matches text, and id is not text"),
        ("status = done", "at column 1: status is one of running, finished, failed, killed"),
        ("status in (finished, done)", "at column 1: status is one of running, finished,"),
        ("name = a and not (metrics.x = 'y')", "at column 19: metrics take numbers"),
    ],
)
def test_values_that_do_not_fit_their_field(text: str, message: str) -> None:
    node = parse_filter(text)
    with pytest.raises(BadRequest, match=re.escape(f"filter: {message}")):
        compile_filter(node, Resolver("sqlite"))


def test_plain_fields_compare_in_their_column_type() -> None:
    _, params = sql("id = '42' and created >= '2024-05-01' and ended < '2024-05-02T10:00:00+02:00'")
    assert 42 in params.values()
    moments = sorted(str(value) for value in params.values() if hasattr(value, "tzinfo"))
    assert moments == ["2024-05-01 00:00:00+00:00", "2024-05-02 08:00:00+00:00"]


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_json_numbers_are_bound_exactly(dialect_name: str) -> None:
    _, params = sql("params.lr = 0.1 or params.steps = 12345678901234567", dialect_name)
    assert Decimal("0.1") in params.values()
    assert 12345678901234567 in params.values()


def test_not_counts_a_missing_value_as_false() -> None:
    text, _ = sql("not params.lr = 0.1", "postgresql")
    assert "NOT coalesce(" in text
    assert ", false)" in text
    text, _ = sql("not params.lr = 0.1", "sqlite")
    assert "coalesce(" in text


def test_substring_match_escapes_like_wildcards() -> None:
    text, params = sql('name ~ "50%_off/"', "postgresql")
    assert "ILIKE" in text
    assert "ESCAPE '/'" in text
    assert "50/%/_off//" in params.values()
    text, _ = sql('params.note ~ "A"', "sqlite")
    assert "lower(" in text


def test_json_paths_are_one_bound_parameter() -> None:
    text, params = sql("params.a.b = 1 or system.host is null", "sqlite")
    assert "json_extract(runs.params, ?)" in text
    assert '$."a"."b"' in params.values()
    text, params = sql("params.a.b = 1", "postgresql")
    assert "#>" in text
    assert "AS NUMERIC" in text
    assert ["a", "b"] in params.values()


def test_json_path_expr_refuses_other_dialects() -> None:
    with pytest.raises(ValueError, match=r"not 'mysql'"):
        json_path_expr(RUNS.c.params, ["a"], "mysql", "number")


# ---- properties --------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
SLASHED = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)+", fullmatch=True)
KEY = TEXT.filter(bool) | SLASHED  # metrics.train/acc prints unquoted
JSON_KEY = (
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters='"\\'),
        min_size=1,
        max_size=12,
    )
    | SLASHED
)
NUMBER = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
VALUE = st.one_of(st.booleans(), NUMBER, TEXT)
FIELD = st.one_of(
    st.sampled_from(["status", "name", "created", "ended", "id"]).map(Field),
    st.builds(lambda root, key: Field(root, (key,)), st.sampled_from(["tags", "metrics"]), KEY),
    st.builds(
        lambda root, path: Field(root, tuple(path)),
        st.sampled_from(["params", "system"]),
        st.lists(JSON_KEY, min_size=1, max_size=3),
    ),
)
COMPARISON = st.one_of(
    st.builds(Comparison, FIELD, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), VALUE),
    st.builds(Comparison, FIELD, st.just("~"), TEXT),
    st.builds(Comparison, FIELD, st.just("in"), st.lists(VALUE, min_size=1, max_size=4).map(tuple)),
    st.builds(Comparison, FIELD, st.sampled_from(["is null", "is not null"]), st.none()),
)
TREE = st.recursive(
    COMPARISON,
    lambda children: st.one_of(
        children.map(Not),
        st.lists(children, min_size=2, max_size=4).map(lambda nodes: And(tuple(nodes))),
        st.lists(children, min_size=2, max_size=4).map(lambda nodes: Or(tuple(nodes))),
    ),
    max_leaves=12,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(TREE)
def test_printed_trees_parse_back_to_themselves(tree: Node) -> None:
    text = to_text(tree)
    assume(len(text) <= MAX_LENGTH and levels(tree) <= MAX_DEPTH)
    parsed = parse_filter(text)
    assert parsed == tree
    assert repr(parsed) == repr(tree)
    for dialect_name in DIALECTS:  # random values in random fields: compiled or refused
        refusal_or(compile_filter, parsed, Resolver(dialect_name))


WORDS = [
    "status", "name", "created", "ended", "id", "params.lr", "params.a.b", "tags.t",
    "metrics.loss", 'metrics."v/l"', "metrics.v/l", "/", "system.host", "and", "or", "not",
    "in", "is", "null",
    "true", "false", "nan", "inf", "(", ")", ",", ".", "=", "!=", "<", "<=", ">", ">=", "~",
    "1", "-2.5e3", "1e999", '"s"', "'q'", '"unterminated', "finished", "2024-01-01",
    '"2024-01-01"', '"\\u0000"', "\\", "@",
]  # fmt: skip


def spliced(tree: Node, at: int, cut: int, insert: str) -> str:
    """A printed tree with a few characters cut and others put in: text that is nearly valid."""
    text = to_text(tree)
    at %= len(text) + 1
    return text[:at] + insert + text[at + cut :]


NEARLY_VALID = st.builds(
    spliced, TREE, st.integers(0, 2000), st.integers(0, 3), st.sampled_from(WORDS) | TEXT
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=200)
    | st.lists(st.sampled_from(WORDS), max_size=25).map(" ".join)
    | NEARLY_VALID
)
def test_any_text_is_parsed_or_refused_with_bad_request(text: str) -> None:
    tree = refusal_or(parse_filter, text)
    if isinstance(tree, BadRequest):
        assert re.match(r"filter: at column \d+: ", tree.message)
        return
    assert parse_filter(to_text(tree)) == tree
    for dialect_name, dialect in DIALECTS.items():
        condition = refusal_or(compile_filter, tree, Resolver(dialect_name))
        if isinstance(condition, BadRequest):
            assert re.match(r"filter: at column \d+: ", condition.message)
        else:
            sa.select(RUNS.c.id).where(condition).compile(dialect=dialect)


def refusal_or(action: Callable[..., Any], *args: Any) -> Any:
    """What the action returns, or the BadRequest it raises; anything else propagates."""
    try:
        return action(*args)
    except BadRequest as refusal:
        return refusal


PAYLOADS = [
    "'; DROP TABLE runs; --",
    '" OR 1=1 --',
    "') OR ('1'='1",
    "1; SELECT pg_sleep(10)",
    '$."a"\') --',
    "x' UNION SELECT password FROM users --",
    "%' OR name LIKE '%",
    "}'::jsonb #> '{a}",
]
MARKED = st.one_of(st.sampled_from(PAYLOADS), TEXT).map(lambda text: f"Zq9{text}9qZ")


@settings(max_examples=300)
@given(
    payload=MARKED,
    template=st.sampled_from(
        [
            "name = {v}",
            "name ~ {v}",
            "name in ('a', {v})",
            "tags.{k} = {v}",
            "tags.model ~ {v}",
            "params.{j} = {v}",
            "params.a.{j} in (1, {v}, true)",
            "system.{j} ~ {v}",
            "metrics.{k} > 1",
            "tags.{k} is null",
            "not params.{j} = {v}",
        ]
    ),
    dialect_name=st.sampled_from(sorted(DIALECTS)),
)
def test_payloads_end_up_only_in_bound_parameters(
    payload: str, template: str, dialect_name: str
) -> None:
    json_key = re.sub(r'["\\\x00-\x1f\x7f]', "", payload)
    text = template.format(v=json.dumps(payload), k=json.dumps(payload), j=json.dumps(json_key))
    compiled, params = sql(text, dialect_name)
    assert payload not in compiled
    assert json_key not in compiled
    flat = repr(list(params.values()))
    assert "Zq9" in flat  # the payload is there, as a parameter
