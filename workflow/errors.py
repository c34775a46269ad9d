"""The workflow package's one exception root.

Every error the package raises on purpose is a :class:`WorkflowError`, so a caller can catch them
all in one place; each also keeps the builtin base it had (``ValueError`` for bad input, ...).
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Base of every error the workflow package raises on purpose."""
