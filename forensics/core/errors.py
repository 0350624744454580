"""The one error type a user sees.

Anything wrong with what the user handed us (a path, a checkpoint, a data file) is a
:class:`ForensicsInputError` with a one-line message. The command line prints it as
``error: <message>`` and exits with code 2; it never shows a traceback for bad input.
"""


class ForensicsInputError(Exception):
    """Bad user input. ``str(err)`` is a complete one-line explanation."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
