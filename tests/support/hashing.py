"""Password hashing as the test tiers run it: OWASP's minimum argon2id cost.

The default (64 MiB, 3 passes, 4 lanes) costs about 0.17 s of CPU per hash, and every
app or server process makes one at start (the dummy hash that keeps a sign-in for an
unknown user as slow as one for a known user). At OWASP's minimum, which the settings
still accept (S5), a hash costs about 0.03 s. Tests that are about the cost itself set
their own parameters.
"""

from __future__ import annotations

__all__ = ["FAST_ARGON2", "FAST_ARGON2_ENV"]

# The `auth` settings section, as overrides for load_settings().
FAST_ARGON2 = {"argon2_memory_kib": 19456, "argon2_time_cost": 2, "argon2_parallelism": 1}
# The same for a server or CLI process, as environment variables.
FAST_ARGON2_ENV = {
    f"SAFEBOARD__AUTH__{name.upper()}": str(value) for name, value in FAST_ARGON2.items()
}
