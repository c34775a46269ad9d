"""The app's Prometheus metrics, and ``/metrics`` output correct across gunicorn workers.

Multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn's
master sets it in ``on_starting``, see :mod:`webapp.guards.observability`): every
worker writes its values to files in that directory, and whichever worker
answers a scrape sums them all. Without it (the Flask test client,
``flowbridge serve --dev``) the values live in this process only.

Import this module only after the variable is set: ``prometheus_client``
chooses its value class when first imported. :mod:`webapp.guards.observability`
imports it lazily, from ``init_app`` in the worker; the master never needs it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as _values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["MULTIPROC_ENV", "Metrics", "add_scrape_hook", "get_metrics", "multiprocess_dir", "render",
           "start_pool_sampler", "tasks_family"]

logger = logging.getLogger(__name__)

#: The variable that turns on multiprocess mode (read by prometheus_client itself).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets in seconds: fast JSON routes up to slow LLM completions and streams.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True)
class Metrics:
    """This process's metric objects (one set per process, shared by every app in it)."""

    #: where the metrics are registered; what ``/metrics`` shows in single-process mode
    registry: CollectorRegistry
    multiprocess: bool
    http_requests: Counter
    http_duration: Histogram
    upstream_requests: Counter
    upstream_duration: Histogram
    pool_running: Gauge
    pool_queued: Gauge
    streams_open: Gauge
    start_gate_waiting: Gauge
    #: Tasks waiting in the broker's queue (``FLOWBRIDGE_BROKER_URL``), by queue; a value for the whole
    #: cluster, so the last one set by any process is shown (set it from a scrape hook, see add_scrape_hook).
    queue_depth: Gauge
    #: Workflow worker processes (``flowbridge worker``) by state (``online``, ``busy``), cluster-wide as above.
    workers: Gauge


_lock = threading.Lock()
_metrics: Metrics | None = None


def get_metrics() -> Metrics:
    """The metrics of this process, created on first use."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _build()
    return _metrics


def _build() -> Metrics:
    path = multiprocess_dir()
    if path is not None:
        os.makedirs(path, exist_ok=True)
        if not getattr(_values.ValueClass, "_multiprocess", False):
            # prometheus_client was imported before the variable was set (it decides at import):
            # decide again, or this process would count alone.
            _values.ValueClass = _values.get_value_class()
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        multiprocess=path is not None,
        http_requests=Counter(
            "flowbridge_http_requests", "HTTP requests answered, by route (the URL rule) and status",
            ["method", "route", "status"], registry=registry),
        http_duration=Histogram(
            "flowbridge_http_request_duration_seconds",
            "Seconds until the response started (a stream's headers), by route",
            ["method", "route"], buckets=BUCKETS, registry=registry),
        upstream_requests=Counter(
            "flowbridge_upstream_requests",
            "HTTP calls to the LLM server (each retry counts), by path and outcome"
            " (ok, http_<status>, timeout, connection_error)",
            ["path", "outcome"], registry=registry),
        upstream_duration=Histogram(
            "flowbridge_upstream_request_duration_seconds",
            "Seconds until the LLM server's response headers arrived, by path",
            ["path"], buckets=BUCKETS, registry=registry),
        pool_running=Gauge(
            "flowbridge_llm_pool_running", "LLM calls running on the pool threads, all live workers",
            registry=registry, multiprocess_mode="livesum"),
        pool_queued=Gauge(
            "flowbridge_llm_pool_queued", "LLM calls waiting for a pool thread, all live workers",
            registry=registry, multiprocess_mode="livesum"),
        streams_open=Gauge(
            "flowbridge_llm_streams_open",
            "Streamed LLM answers being read now, each on its request's thread (no pool thread), all live workers",
            registry=registry, multiprocess_mode="livesum"),
        start_gate_waiting=Gauge(
            "flowbridge_start_gate_waiting",
            "Requests waiting for their turn to start (the start gate, webapp.guards.gate), all live workers",
            registry=registry, multiprocess_mode="livesum"),
        queue_depth=Gauge(
            "flowbridge_queue_depth", "Workflow tasks waiting in the broker's queue, by queue (whole cluster)",
            ["queue"], registry=registry, multiprocess_mode="mostrecent"),
        workers=Gauge(
            "flowbridge_workers", "Workflow worker processes, by state: online, busy (whole cluster)",
            ["state"], registry=registry, multiprocess_mode="mostrecent"),
    )


#: Seconds between two copies of a worker's LLM pool counts to its gauge file (multiprocess mode).
POOL_SAMPLE_INTERVAL = 0.25

_sampler_pid: int | None = None


def start_pool_sampler(sample: Callable[[], None]) -> None:
    """Call ``sample()`` every :data:`POOL_SAMPLE_INTERVAL` seconds in this process, from a daemon thread.

    In multiprocess mode a scrape reads every live worker's gauge file, but only the scraping worker
    can sample its own pool at that moment; the others' files would hold whatever they wrote when
    they last finished a request, while LLM calls of workflow tasks or streams start and end without
    one. So every worker keeps its file current itself. A no-op in single-process mode (the scrape
    samples) and when this process already runs one (it is started again after a fork).
    """
    global _sampler_pid
    if _sampler_pid == os.getpid() or multiprocess_dir() is None:
        return
    with _lock:
        if _sampler_pid == os.getpid():
            return
        _sampler_pid = os.getpid()

    def run() -> None:
        while True:
            try:
                sample()
            except Exception:  # a failed sample must not end the sampling; the next one retries
                pass
            time.sleep(POOL_SAMPLE_INTERVAL)

    threading.Thread(target=run, name="pool-gauges", daemon=True).start()


class _Collect:
    """A collector made of a function (computed at scrape time)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


def tasks_family(counts: dict[str, int]) -> GaugeMetricFamily:
    """``flowbridge_tasks{status}`` from counts read at scrape time."""
    family = GaugeMetricFamily("flowbridge_tasks", "Workflow tasks in the task store, by status",
                               labels=["status"])
    for status, count in counts.items():
        family.add_metric([status], count)
    return family


_scrape_hooks: dict[str, Callable[[Metrics], None]] = {}


def add_scrape_hook(name: str, hook: Callable[[Metrics], None]) -> Callable[[], None]:
    """Call ``hook(metrics)`` in the scraping process just before each ``/metrics`` answer (replacing a
    hook of that ``name``), e.g. to set :attr:`Metrics.queue_depth` and :attr:`Metrics.workers` from the
    broker. A hook that raises is logged and skipped (its gauges keep their last value); it should be quick.
    Hooks are per process (like the metrics). Returns a function that removes the hook.
    """
    with _lock:
        _scrape_hooks[name] = hook

    def remove() -> None:
        with _lock:
            if _scrape_hooks.get(name) is hook:
                del _scrape_hooks[name]

    return remove


def _run_scrape_hooks(metrics: Metrics) -> None:
    with _lock:
        hooks = list(_scrape_hooks.items())
    for name, hook in hooks:
        try:
            hook(metrics)
        except Exception as exc:  # noqa: BLE001 - one broken source must not fail the whole scrape
            logger.warning("/metrics: the %s scrape hook failed: %s", name, exc)


def render(accept: str | None, extra: Callable[[], Iterable[Metric]] | None = None) -> tuple[bytes, str]:
    """The exposition and its content type: every worker's values in multiprocess mode, else this process's.

    :param accept: the scraper's ``Accept`` header (Prometheus text, or OpenMetrics when asked).
    :param extra: metrics computed now by the scraping process (not summed across workers).
    """
    metrics = get_metrics()
    _run_scrape_hooks(metrics)
    registry = CollectorRegistry()
    if metrics.multiprocess:
        MultiProcessCollector(registry)
    else:
        registry.register(_Collect(metrics.registry.collect))
    if extra is not None:
        registry.register(_Collect(extra))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
