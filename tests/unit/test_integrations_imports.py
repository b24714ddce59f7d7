"""safeboard.integrations imports with no framework installed: each module imports its
framework only when it is imported itself, and says which extra installs it."""

from __future__ import annotations

import subprocess
import sys

# Keras and Optuna made unimportable (None in sys.modules), then our modules imported.
CHILD = """
import sys
sys.modules["keras"] = None
sys.modules["optuna"] = None
import safeboard.integrations
import safeboard.integrations.optuna  # optuna is needed only once a study calls it
try:
    import safeboard.integrations.keras
except ImportError as exc:
    print(exc)
"""


def test_the_package_imports_without_the_frameworks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "safeboard.integrations.keras needs Keras 3: pip install 'safeboard[keras]'"
    )
