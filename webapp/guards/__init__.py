"""What every request passes through before and after its view.

- :mod:`.auth`: API keys and the browser login; :mod:`.csrf`: the pages' CSRF tokens;
- :mod:`.origin`: unknown ``Host`` names and cross-site POSTs; :mod:`.headers`: security headers;
- :mod:`.jsonbody`: every JSON body is parsed there (too deep, broken or lone-surrogate JSON: 400);
- :mod:`.deadlines`: request deadlines, capacity and the wait queue in front of it;
- :mod:`.gate`: the start gate (under the gunicorn worker): how many requests compute at once;
- :mod:`.observability` (with :mod:`.metrics` and :mod:`.gunicorn_log`): request IDs, logs, Prometheus.
- :mod:`.outbound`: the MCP servers ops may call, their URLs on the outbound allow-list.

Nothing here imports ``webapp.routes`` or ``webapp.pages``: they import us.
"""
