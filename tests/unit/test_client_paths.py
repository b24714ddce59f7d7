"""client.paths quotes every segment once: any text round-trips through the server's
single decoding of the path, and never adds, removes or escapes a path segment. Metric
keys travel in the query instead (httpx's ``params``)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.client import paths
from safeboard.errors import InvalidRequest
from safeboard.validation import NAME_PATTERN
from safeboard.vocabulary import metric_key_problem

keys = st.text(min_size=1, max_size=250).filter(lambda k: metric_key_problem(k) is None)


@given(keys)
def test_any_metric_key_round_trips_through_the_query(key: str) -> None:
    path = paths.metric_points("a" * 32)
    request = httpx.Request("GET", "https://example.test" + path, params={"metric": key})
    assert request.url.path == f"/api/v1/runs/{'a' * 32}/points"  # the key never in it
    assert parse_qs(request.url.query.decode("ascii"), strict_parsing=True) == {"metric": [key]}


@given(st.text(min_size=1, max_size=100))
def test_a_segment_never_holds_a_slash_or_query(value: str) -> None:
    quoted = paths.segment(value)
    assert not set(quoted) & set("/?#% ") - {"%"}
    assert unquote(quoted) == value


def test_names_with_reserved_characters_stay_one_segment() -> None:
    assert paths.grant("a.b", "c?d") == "/api/v1/projects/a.b/grants/c%3Fd"
    assert paths.metric_history("r/x") == "/api/v1/runs/r%2Fx/history"
    assert paths.artifact("../x") == "/api/v1/artifacts/..%2Fx"


@given(st.text(max_size=120))
def test_a_project_path_is_built_for_a_project_name_and_refused_for_any_other(name: str) -> None:
    """The server decodes ``%2F`` before routing: ``bad/name`` reached no route ("no such
    resource"). A name the server would refuse to make is refused before it is sent."""
    if re.fullmatch(NAME_PATTERN, name):
        assert paths.project_runs(name) == f"/api/v1/projects/{name}/runs"  # nothing to quote
    else:
        with pytest.raises(InvalidRequest, match="must be 1 to 100 letters"):
            paths.project_runs(name)
