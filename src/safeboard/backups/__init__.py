"""Backup and restore of a whole server: database, artifact files, secrets (R3)."""

from safeboard.backups.archive import BackupReport, RestoreReport, backup, restore

__all__ = ["BackupReport", "RestoreReport", "backup", "restore"]
