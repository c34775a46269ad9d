"""When to retry a failed call, and how long to wait first.

One retry layer only: the client's. Retried are connection errors, timeouts
and the statuses in :data:`RETRY_STATUSES`; a ``Retry-After`` (or
``retry-after-ms``) header is honoured up to a cap, otherwise the delay grows
exponentially with full jitter.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

from ._settings import MAX_RETRY_DELAY

#: Statuses worth another try: timeout, conflict, rate limit and server errors.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def should_retry_status(status: int) -> bool:
    """True for statuses a later attempt may fix (408, 409, 429, 5xx)."""
    return status in RETRY_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Unparseable or
    negative values are ignored.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
        if parsed is None:
            return None
        value = parsed.timestamp() - time.time()
    return value if value >= 0 else None


def retry_delay(
    attempt: int, *, initial: float, retry_after: float | None = None, retry_after_cap: float
) -> float:
    """Seconds to sleep before retry number ``attempt`` (0 for the first retry).

    :param initial: first backoff delay; doubled per attempt, capped at MAX_RETRY_DELAY.
    :param retry_after: what the server asked for, if anything; capped at ``retry_after_cap``.
    """
    if retry_after is not None:
        return min(retry_after, retry_after_cap)
    ceiling = min(initial * (2**attempt), MAX_RETRY_DELAY)
    # "Full jitter" spreads retries of many clients hit by the same outage.
    return ceiling * (0.5 + random.random() / 2)
