"""The two errors a user can fix, shared by every stage: each message names the key or file and the fix.

`vit.cli.main_guard` turns either into one line on stderr and exit status 2, instead of a traceback.
"""


class ConfigError(ValueError):
    """A bad setting (command line or config); the message names the key and how to fix it."""


class DataError(RuntimeError):
    """Missing, corrupted or inconsistent prepared data; the message names the file and the fix."""
