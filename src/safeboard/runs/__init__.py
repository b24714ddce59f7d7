"""Runs: one execution of a training script, with its config, tags, status and notes."""
