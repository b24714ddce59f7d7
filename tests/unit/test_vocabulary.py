"""One vocabulary for server and client: the server's schemas, tables and permission
enums spell exactly the words of safeboard.vocabulary."""

from __future__ import annotations

from typing import get_args

from safeboard import vocabulary, wire
from safeboard.artifacts import models as artifact_models
from safeboard.artifacts import schemas as artifact_schemas
from safeboard.auth.permissions import ProjectRole, Scope
from safeboard.errors import STATUS_BY_CODE, ChecksumMismatch, InvalidRequest, error_for_code
from safeboard.jobs import models as job_models
from safeboard.runs import models as run_models
from safeboard.runs import schemas as run_schemas


def test_server_spellings_are_the_vocabulary() -> None:
    assert tuple(s.value for s in vocabulary.RunStatus) == run_models.RUN_STATUSES
    assert tuple(s.value for s in vocabulary.TaskState) == job_models.TASK_STATES
    assert set(vocabulary.FINAL_TASK_STATES) < set(vocabulary.TaskState)
    assert set(get_args(run_schemas.Final)) == set(vocabulary.FINAL_STATUSES)
    assert tuple(k.value for k in vocabulary.ArtifactKind) == artifact_models.KINDS
    assert set(get_args(artifact_schemas.Kind)) == set(vocabulary.ArtifactKind)
    assert tuple(s.value for s in vocabulary.ArtifactState) == artifact_models.STATES
    assert ProjectRole is vocabulary.ProjectRole
    assert Scope is vocabulary.KeyScope
    assert wire.metric_key_problem is vocabulary.metric_key_problem


def test_id_prefixes() -> None:
    assert vocabulary.is_id_prefix("abc")
    assert vocabulary.is_id_prefix("a" * 32)
    assert not vocabulary.is_id_prefix("")
    assert not vocabulary.is_id_prefix("ABC")
    assert not vocabulary.is_id_prefix("a" * 33)
    assert not vocabulary.is_id_prefix("ab%")


def test_metric_key_rules() -> None:
    assert vocabulary.metric_key_problem("a b/c%2Fd?e=f#g") is None
    assert vocabulary.metric_key_problem("a/../b") is not None
    assert vocabulary.metric_key_problem("x\n") is not None
    assert vocabulary.metric_key_problem("") is not None


def test_a_checksum_mismatch_has_its_own_code() -> None:
    made = error_for_code("checksum_mismatch", "sha256: no")
    assert isinstance(made, ChecksumMismatch)
    assert isinstance(made, InvalidRequest)
    assert STATUS_BY_CODE["checksum_mismatch"] == 422


def test_the_sdks_type_hints_spell_the_vocabulary() -> None:
    """safeboard.init's Literal hints (for editors) name exactly the shared words."""
    from typing import get_args

    from safeboard.sdk import run

    assert set(get_args(run.ArtifactKind)) == {kind.value for kind in vocabulary.ArtifactKind}
    assert set(get_args(run.Status)) == {status.value for status in vocabulary.FINAL_STATUSES}
    assert tuple(kind.value for kind in vocabulary.ArtifactKind) == run.KINDS


def test_the_dashboard_asks_for_histories_in_the_servers_groups() -> None:
    """chart.js cannot import Python: its group size is checked against the shared bound."""
    import re
    from pathlib import Path

    chart = Path(vocabulary.__file__).parent / "web" / "static" / "chart.js"
    found = re.search(r"const BATCH = (\d+);", chart.read_text(encoding="utf-8"))
    assert found is not None
    assert int(found.group(1)) == vocabulary.MAX_HISTORY_KEYS
