"""What every request passes through before and after its view.

- :mod:`.auth`: API keys and the browser login; :mod:`.csrf`: the pages' CSRF tokens;
- :mod:`.deadlines`: request deadlines, capacity and the wait queue in front of it;
- :mod:`.observability` (with :mod:`.metrics` and :mod:`.gunicorn_log`): request IDs, logs, Prometheus.

Nothing here imports ``webapp.routes`` or ``webapp.pages``: they import us.
"""
