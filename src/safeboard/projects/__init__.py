"""Projects and per-project grants (owner, editor, viewer)."""
