"""The one exception type for mistakes a user can fix (bad params, bad files)."""


class CifarlabError(Exception):
    """A user error: the message names the params key or file and what was expected.

    Stage entry points print it as one line and exit non-zero; programming errors keep their
    tracebacks.
    """


class Interrupted(Exception):
    """A stage stopped by SIGINT or SIGTERM; the message says what was saved and how to continue."""


def one_line(err: object) -> str:
    """An exception's text on one short line, since hostile input chooses what goes in it."""
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."
