"""Artifacts: files that belong to a run, stored under server-made ids (S12)."""
