"""A domain uses another only through its services and published queries, never its
tables: no module of ``safeboard.<domain>`` imports another domain's ``models`` (the
import-linter contracts in pyproject.toml order the domains; this checks the rooms)."""

from __future__ import annotations

import grimp
import pytest

DOMAINS = ("accounts", "artifacts", "audit", "auth", "jobs", "metrics", "projects", "runs", "trash")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("safeboard")


def foreign_tables(graph: grimp.ImportGraph, domain: str) -> list[str]:
    found = []
    for module in sorted(graph.find_descendants(f"safeboard.{domain}")):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            parts = imported.split(".")
            if len(parts) == 3 and parts[1] != domain and parts[2] == "models":
                found.append(f"{module} -> {imported}")
    return found


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_domain_reads_another_domains_tables(graph: grimp.ImportGraph, domain: str) -> None:
    assert foreign_tables(graph, domain) == []


def test_the_check_sees_a_foreign_table() -> None:
    """The walk is real: an import of the runs table from metrics would be named."""
    changed = grimp.build_graph("safeboard")
    changed.add_import(importer="safeboard.metrics.service", imported="safeboard.runs.models")
    assert foreign_tables(changed, "metrics") == [
        "safeboard.metrics.service -> safeboard.runs.models"
    ]
    assert foreign_tables(changed, "runs") == []  # its own tables
