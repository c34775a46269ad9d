"""Settings of the async bridge, read from ``LLM_ASYNC_*`` environment variables.

========================  =======  ===========================================
Variable                  Default  Meaning
========================  =======  ===========================================
``LLM_ASYNC_WORKERS``     5        worker threads of the client's pool (>= 1)
``LLM_ASYNC_QUEUE_SIZE``  100      calls that may wait for a worker (>= 0)
``LLM_ASYNC_TIMEOUT``     30.0     seconds one ``*_async`` call may take (> 0)
``LLM_ASYNC_ENABLED``     true     false runs ``*_async`` calls inline
========================  =======  ===========================================

Every getter reads the environment when it is called (never at import time, so
tests and ``create_app`` can change it), or the ``env`` mapping it is given.
An empty or blank value counts as unset. A bad value raises
:class:`AsyncConfigError` naming the variable and the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

__all__ = [
    "DEFAULT_ASYNC_ENABLED",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKER_COUNT",
    "AsyncConfig",
    "AsyncConfigError",
]

DEFAULT_WORKER_COUNT = 5
DEFAULT_QUEUE_SIZE = 100
DEFAULT_TIMEOUT = 30.0
DEFAULT_ASYNC_ENABLED = True

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class AsyncConfigError(ValueError):
    """An ``LLM_ASYNC_*`` variable holds a value that cannot be used.

    :param name: the variable, e.g. ``"LLM_ASYNC_WORKERS"``.
    :param value: the raw value found.
    :param expected: what the value must be, e.g. ``"an integer >= 1"``.
    """

    def __init__(self, name: str, value: str, expected: str) -> None:
        #: the environment variable at fault
        self.name = name
        #: its raw value
        self.value = value
        super().__init__(f"{name} must be {expected}, got {value!r}")


class AsyncConfig:
    """Reads the async bridge's settings; every method is a classmethod.

    Each getter takes an optional ``env`` mapping (default :data:`os.environ`)
    so config objects and tests can pass their own values.
    """

    #: worker threads of the pool
    WORKERS_VAR = "LLM_ASYNC_WORKERS"
    #: calls allowed to wait beyond the workers
    QUEUE_SIZE_VAR = "LLM_ASYNC_QUEUE_SIZE"
    #: seconds per ``*_async`` call
    TIMEOUT_VAR = "LLM_ASYNC_TIMEOUT"
    #: whether ``*_async`` calls go through the pool
    ENABLED_VAR = "LLM_ASYNC_ENABLED"
    #: every variable this class reads
    VARIABLES = (WORKERS_VAR, QUEUE_SIZE_VAR, TIMEOUT_VAR, ENABLED_VAR)

    @classmethod
    def get_worker_count(cls, env: Mapping[str, str] | None = None) -> int:
        """Return ``LLM_ASYNC_WORKERS`` (default 5).

        :param env: variables to read instead of :data:`os.environ`.
        :raises AsyncConfigError: unless the value is an integer >= 1.
        """
        return cls._int(cls.WORKERS_VAR, DEFAULT_WORKER_COUNT, 1, env)

    @classmethod
    def get_queue_size(cls, env: Mapping[str, str] | None = None) -> int:
        """Return ``LLM_ASYNC_QUEUE_SIZE`` (default 100).

        :param env: variables to read instead of :data:`os.environ`.
        :raises AsyncConfigError: unless the value is an integer >= 0.
        """
        return cls._int(cls.QUEUE_SIZE_VAR, DEFAULT_QUEUE_SIZE, 0, env)

    @classmethod
    def get_timeout(cls, env: Mapping[str, str] | None = None) -> float:
        """Return ``LLM_ASYNC_TIMEOUT`` in seconds (default 30.0).

        :param env: variables to read instead of :data:`os.environ`.
        :raises AsyncConfigError: unless the value is a finite number > 0.
        """
        raw = cls._raw(cls.TIMEOUT_VAR, env)
        if raw is None:
            return DEFAULT_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise AsyncConfigError(cls.TIMEOUT_VAR, raw, "a number of seconds > 0")
        return value

    @classmethod
    def is_async_enabled(cls, env: Mapping[str, str] | None = None) -> bool:
        """Return ``LLM_ASYNC_ENABLED`` (default true).

        Accepts ``true/false``, ``1/0``, ``yes/no`` and ``on/off`` in any case.

        :param env: variables to read instead of :data:`os.environ`.
        :raises AsyncConfigError: for any other value.
        """
        raw = cls._raw(cls.ENABLED_VAR, env)
        if raw is None:
            return DEFAULT_ASYNC_ENABLED
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise AsyncConfigError(cls.ENABLED_VAR, raw, "one of true/false, 1/0, yes/no, on/off")

    @classmethod
    def is_explicit(cls, name: str, env: Mapping[str, str] | None = None) -> bool:
        """Return whether the variable ``name`` is set to a non-blank value.

        The web app uses this to size the pool itself only when the operator
        has not chosen a size.

        :param name: one of :attr:`VARIABLES`, e.g. ``"LLM_ASYNC_WORKERS"``.
        :param env: variables to read instead of :data:`os.environ`.
        :raises ValueError: if ``name`` is not one of :attr:`VARIABLES` (a typo
            would otherwise always answer False).
        """
        if name not in cls.VARIABLES:
            raise ValueError(f"unknown variable {name!r}; expected one of {', '.join(cls.VARIABLES)}")
        return cls._raw(name, env) is not None

    # -- parsing ---------------------------------------------------------------

    @staticmethod
    def _raw(name: str, env: Mapping[str, str] | None) -> str | None:
        value = (os.environ if env is None else env).get(name)
        if value is None or not str(value).strip():
            return None
        return str(value)

    @classmethod
    def _int(cls, name: str, default: int, minimum: int, env: Mapping[str, str] | None) -> int:
        raw = cls._raw(name, env)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise AsyncConfigError(name, raw, f"an integer >= {minimum}") from None
        if value < minimum:
            raise AsyncConfigError(name, raw, f"an integer >= {minimum}")
        return value
