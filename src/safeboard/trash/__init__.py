"""Deleting runs: the trash, restoring from it, purging, and the retention sweep."""
