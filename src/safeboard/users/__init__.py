"""User accounts: who exists, their role, whether they may sign in."""
