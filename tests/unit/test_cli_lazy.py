"""safeboard.cli.lazy: a command's module is imported only when that command runs (P7: the
start of ``safeboard import tensorboard``), while ``--help`` still lists every command
with its short help and an unknown command still gets its suggestion."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from safeboard.cli import COMMANDS, cli

LOADED = """
import sys
from safeboard.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.startswith("safeboard.cli.") and m.endswith("_cmd")))
"""


def loaded_after(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return done.stdout.splitlines()[-1]


def test_a_command_imports_its_own_module_only() -> None:
    assert loaded_after("import", "--help") == "['safeboard.cli.import_cmd']"
    assert loaded_after("--version") == "[]"


def test_help_lists_every_command_with_its_short_help() -> None:
    shown = CliRunner().invoke(cli, ["--help"]).output
    listed = shown.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(COMMANDS)
    assert all(len(line.split()) > 1 for line in listed)  # each with its short help
    assert "Runs and their metrics." in shown


def test_the_trash_commands_stay_under_runs_and_projects() -> None:
    runs = CliRunner().invoke(cli, ["runs", "--help"]).output
    projects = CliRunner().invoke(cli, ["projects", "--help"]).output
    assert all(f"  {name} " in runs for name in ("delete", "restore", "purge", "trash"))
    assert all(f"  {name} " in projects for name in ("retention", "rename", "delete", "purge"))


def test_an_unknown_command_is_named_with_the_closest_one() -> None:
    done = CliRunner().invoke(cli, ["runz"])
    assert done.exit_code == 2
    assert "No such command 'runz'. Did you mean 'runs'?" in done.output
