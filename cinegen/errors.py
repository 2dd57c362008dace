"""The one exception type for bad user input.

The CLI and the server turn a `UserError` into a one-line message (exit code 2 / HTTP 4xx);
anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from a user: the message names the bad value and what is allowed."""
