"""Errors a user can cause and fix. The command prints each as one ``error:`` line, with no traceback.

Raise :class:`UsageError` for a bad argument, option or spec (exit code 2) and :class:`UserError` (or one of its
subclasses) for work that failed because of something outside the code: a missing or corrupt file, an impossible
setting for the data at hand, an unwritable folder (exit code 1). The message names the culprit and says what to do.
"""
from __future__ import annotations


class UserError(Exception):
    """Work failed for a reason the user can fix; the message says which option or file, and what to do."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A bad command-line argument, option or spec entry."""

    exit_code = 2


class DataError(UserError, ValueError):
    """A data file is missing, unreadable, corrupt or inconsistent; the message names the file."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the work after saving what can be resumed."""

    exit_code = 130
