"""How the command line reports a user's mistake: one ``error: ...`` line on standard error and exit code 2."""

from __future__ import annotations

import sys
from typing import NoReturn

# Configuration and data problems: a bad value or key is a ValueError (DataError and LoadError are ones), a missing
# file or an unreachable hub an OSError. Anything else is a bug and keeps its traceback.
CONFIG_ERRORS = (ValueError, OSError)
DEBUG = False  # `llmhead --debug`: raise instead, with the traceback


def one_line(message: str) -> str:
    """``invalid configuration:\n  - a\n  - b`` -> ``invalid configuration: a; b``."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    rest = [line.removeprefix("- ") for line in lines[1:]]
    return lines[0] + (" " + "; ".join(rest) if rest else "")


def fail(exc: BaseException) -> NoReturn:
    """One ``error: ...`` line on stderr and exit code 2 (argparse's code for a usage error), no traceback."""
    if DEBUG:
        raise exc
    print(f"error: {one_line(str(exc))}", file=sys.stderr)
    sys.exit(2)
