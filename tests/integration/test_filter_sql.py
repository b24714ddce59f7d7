"""Run filters against real SQLite and PostgreSQL, on a throwaway schema of this test's own.

The runs tables are not final yet; this schema has their shape (JSON params, tags and a
per-key metric summary in tables of their own), and the resolver below is the kind the
runs repository writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from safeboard.runs.filter_sql import (
    JsonKind,
    JsonRoot,
    PlainField,
    compile_filter,
    json_path_expr,
)
from safeboard.runs.filters import parse_filter
from safeboard.storage import UtcDateTime

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
METADATA = sa.MetaData()
RUNS = sa.Table(
    "runs",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime()),
    sa.Column("params", JSON),
    sa.Column("system", JSON),
)
RUN_TAGS = sa.Table(
    "run_tags",
    METADATA,
    sa.Column("run_id", sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.String(5000), nullable=False),
)
METRIC_SUMMARY = sa.Table(
    "metric_summary",
    METADATA,
    sa.Column("run_id", sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("last_value", sa.Float),
)


class Resolver:
    """The fields of RUNS: plain columns, JSON paths and correlated subqueries."""

    def __init__(self, dialect_name: str) -> None:
        self.dialect_name = dialect_name

    def column(self, name: PlainField) -> ColumnElement[Any]:
        columns = {"created": "created_at", "ended": "ended_at"}
        return RUNS.c[columns.get(name, name)]

    def json_value(self, root: JsonRoot, path: Sequence[str], kind: JsonKind) -> ColumnElement[Any]:
        return json_path_expr(RUNS.c[root], path, self.dialect_name, kind)

    def metric_last(self, key: str) -> ColumnElement[float]:
        last = sa.select(METRIC_SUMMARY.c.last_value).where(
            METRIC_SUMMARY.c.run_id == RUNS.c.id, METRIC_SUMMARY.c.key == key
        )
        return last.scalar_subquery()

    def tag(self, key: str) -> ColumnElement[str]:
        value = sa.select(RUN_TAGS.c.value).where(
            RUN_TAGS.c.run_id == RUNS.c.id, RUN_TAGS.c.key == key
        )
        return value.scalar_subquery()


def run(
    run_id: int,
    name: str,
    status: str,
    params: Any,
    *,
    system: Any = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    created = datetime(2024, 1, run_id, tzinfo=UTC)
    ended = None if status == "running" else created.replace(hour=12)
    row = {
        "id": run_id,
        "name": name,
        "status": status,
        "created_at": created,
        "ended_at": ended,
        "params": params,
        "system": system,
    }
    tag_rows = [{"run_id": run_id, "key": k, "value": v} for k, v in (tags or {}).items()]
    metric_rows = [
        {"run_id": run_id, "key": k, "last_value": v} for k, v in (metrics or {}).items()
    ]
    return row, tag_rows, metric_rows


RUN_DATA = [
    run(
        1,
        "resnet-50 baseline",
        "finished",
        {"lr": 0.1, "optimizer": {"name": "adam", "beta": 0.9}, "epochs": 10, "pretrained": True},
        system={"host": "gpu-1", "python": "3.11.9"},
        tags={"model": "resnet", "team": "vision"},
        metrics={"loss": 0.15, "val/loss": 0.2, "train.acc": 0.9},
    ),
    run(
        2,
        "resnet-18 50%_off",
        "finished",
        {"lr": 0.01, "optimizer": {"name": "sgd"}, "epochs": "10"},
        tags={"model": "resnet"},
        metrics={"loss": 0.3, "val/loss": 0.35},
    ),
    run(3, "vit small", "running", {"lr": "0.1"}, tags={"model": "vit"}, metrics={"loss": 0.05}),
    run(4, "VIT large", "failed", {}, tags={"model": "vit", "flag": ""}, metrics={"loss": 1.5}),
    run(5, "50% dropout", "killed", {"lr": 0.001, "optimizer": None}),
    run(
        6,
        "under_score",
        "finished",
        {"lr": 1e-05, "nested": {"deep": {"x": 3}}, "city": "Zürich"},
        system={"host": "gpu-2"},
        metrics={"val/loss": 0.1},
    ),
    run(7, "mlp", "running", None),
    run(
        8,
        'o\'brien "quoted"',
        "finished",
        {"lr": 0.1, "pretrained": False, "note": "Uses 100% of the GPU"},
        tags={"model": "res%net"},
    ),
    run(
        9,
        "big numbers",
        "finished",
        {"lr": 2, "steps": 12345678901234567, "huge": 1e300},
        metrics={"loss": 0.2},
    ),
    run(10, "list params", "failed", {"layers": [64, 32], "lr": 0.1}, tags={"a.b": "dotted"}),
]

CASES: list[tuple[str, set[int]]] = [
    (
        'params.lr > 0.01 and tags.model = "resnet" and metrics.loss < 0.2 and status = finished',
        {1},
    ),
    # JSON numbers against numbers, strings against strings, nested and missing paths
    ("params.lr = 0.1", {1, 8, 10}),
    ('params.lr = "0.1"', {3}),
    ("params.lr != 0.1", {2, 5, 6, 9}),
    ("not params.lr = 0.1", {2, 3, 4, 5, 6, 7, 9}),
    ("params.lr < 0.005", {5, 6}),
    ("params.lr >= 1e-5 and params.lr <= 1E-3", {5, 6}),
    ("params.epochs = 10", {1}),
    ("params.epochs = '10'", {2}),
    ("params.epochs in (10, '10')", {1, 2}),
    ("params.optimizer.name = adam", {1}),
    ("params.optimizer.name in (adam, sgd)", {1, 2}),
    ("params.optimizer.beta > 0.5", {1}),
    ("params.nested.deep.x >= 3", {6}),
    ("params.lr is null", {4, 7}),
    ("params.optimizer is null", {3, 4, 5, 6, 7, 8, 9, 10}),
    ("params.optimizer is not null", {1, 2}),
    ("params.missing.deeper = 1", set()),
    ("params.layers = 64", set()),
    ("params.layers is not null", {10}),
    ("params.pretrained = true", {1}),
    ("params.pretrained = false", {8}),
    ("params.pretrained != true", {8}),
    ("params.pretrained in (true, false)", {1, 8}),
    ("params.steps = 12345678901234567", {9}),
    ("params.steps = 12345678901234568", set()),
    ("params.steps > 12345678901234566", {9}),
    ("params.huge > 1e299", {9}),
    ('params.note ~ "100%"', {8}),
    ('params.city = "Zürich"', {6}),
    ('params.city ~ "zür"', {6}),
    ('params.note ~ "100_"', set()),
    ("system.host = 'gpu-1'", {1}),
    ("system.host ~ GPU", {1, 6}),
    ("system.python ~ '3.11'", {1}),
    # tags and metrics, with '/' and '.' in keys
    ("tags.model = resnet", {1, 2}),
    ("tags.model != resnet", {3, 4, 8}),
    ("tags.flag is not null", {4}),
    ("tags.flag = ''", {4}),
    ('tags."a.b" = dotted', {10}),
    ("tags.a.b = dotted", {10}),
    ('tags.model ~ "s%n"', {8}),
    ('metrics."val/loss" < 0.25', {1, 6}),
    ("metrics.train.acc > 0.5", {1}),
    ("metrics.loss is null", {5, 6, 7, 8, 10}),
    ("not (metrics.loss > 0.1)", {3, 5, 6, 7, 8, 10}),
    ("metrics.loss in (0.05, 1.5)", {3, 4}),
    # plain fields
    ("status = finished", {1, 2, 6, 8, 9}),
    ("status in (running, killed)", {3, 5, 7}),
    ("STATUS != finished", {3, 4, 5, 7, 10}),
    ('name ~ "50%"', {2, 5}),
    ('name ~ "_"', {2, 6}),
    ("name ~ vit", {3, 4}),
    ("name = 'o\\'brien \"quoted\"'", {8}),
    ("ended is null", {3, 7}),
    ("ended is not null and ended < '2024-01-03'", {1, 2}),
    ("created >= '2024-01-09'", {9, 10}),
    ("created < '2024-01-03T01:00:00+02:00'", {1, 2}),
    ("id in (1, 3)", {1, 3}),
    ("id = '2'", {2}),
    # boolean structure
    ("(tags.model = vit or params.lr < 0.005) and not status = failed", {3, 5, 6}),
    ("not (status = finished or status = running)", {4, 5, 10}),
    ("not not tags.model = vit", {3, 4}),
]


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """An empty database (``engine`` is made on it): these tests make tables of their own
    shape."""
    return empty_db_url


@pytest.fixture
def runs_db(engine: Engine) -> Engine:
    METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(RUNS), [row for row, _, _ in RUN_DATA])
        conn.execute(sa.insert(RUN_TAGS), [tag for _, tags, _ in RUN_DATA for tag in tags])
        conn.execute(sa.insert(METRIC_SUMMARY), [m for _, _, metrics in RUN_DATA for m in metrics])
    return engine


def matching(engine: Engine, text: str) -> set[int]:
    condition = compile_filter(parse_filter(text), Resolver(engine.dialect.name))
    with engine.connect() as conn:
        return set(conn.scalars(sa.select(RUNS.c.id).where(condition)))


def test_filters_select_exactly_the_expected_runs(runs_db: Engine) -> None:
    wrong = {
        text: (found, expected)
        for text, expected in CASES
        if (found := matching(runs_db, text)) != expected
    }
    assert wrong == {}, "filter: (found, expected)"


@pytest.mark.parametrize(
    "payload",
    [
        "'; DROP TABLE runs; --",
        "x' OR '1'='1",
        '" OR 1=1 --',
        "') OR 1=1 --",
        "}'::jsonb #>> '{lr}",
    ],
)
def test_injection_payloads_are_only_data(runs_db: Engine, payload: str) -> None:
    quoted = '"' + payload.replace("\\", "\\\\").replace('"', '\\"') + '"'
    for text in (
        f"name = {quoted}",
        f"name ~ {quoted}",
        f"tags.{quoted} is not null",
        f"metrics.{quoted} > 0",
        f"tags.model in (resnet, {quoted})",
    ):
        expected = {1, 2} if text.startswith("tags.model") else set()
        assert matching(runs_db, text) == expected, text
    if '"' not in payload:  # params keys cannot hold quotes
        assert matching(runs_db, f"params.{quoted}.x = 1 or params.{quoted} ~ a") == set()
    with runs_db.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(RUNS)) == len(RUN_DATA)


def test_non_ascii_keys(engine: Engine) -> None:
    METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(RUNS), [run(1, "größe", "finished", {"größe": 3})[0]])
    assert matching(engine, 'params."größe" = 3') == {1}
