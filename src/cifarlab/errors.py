"""The one exception type for mistakes a user can fix (bad params, bad files)."""

import re


class CifarlabError(Exception):
    """A user error: the message names the params key or file and what was expected.

    Stage entry points print it as one line and exit non-zero; programming errors keep their
    tracebacks.
    """


class Interrupted(Exception):
    """A stage stopped by SIGINT or SIGTERM; the message says what was saved and how to continue."""


# A terminal's escape sequences (PyTorch's advice is printed in bold), and other control characters.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0e-\x1f\x7f]")


def one_line(err: object) -> str:
    """An exception's text on one short line of plain text, since hostile input chooses what goes in it."""
    text = " ".join(ESCAPES.sub("", str(err)).split())
    return text if len(text) <= 200 else text[:197] + "..."
