"""Helpers shared by test tiers (integration and end-to-end)."""
