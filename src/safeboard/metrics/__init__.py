"""Metrics: columnar chunks of (step, time, value), per-key summaries, idempotent batches."""
