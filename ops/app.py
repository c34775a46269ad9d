"""``OpApp``: load configuration and services for scripts and tests (flowllm's ``FlowLLMApp``).

```python
async with OpApp():
    result = await QAOp().async_call(question="Hi?")
```

Configuration comes from the environment, then keyword arguments:
``FLOWBRIDGE_LANGUAGE`` (prompt language), ``FLOWBRIDGE_OP_CACHE`` (``memory``
or ``sqlite:/path.db``), ``FLOWBRIDGE_FLOWS`` (flows YAML, default
``examples/flows.yaml``) and the ``LLM_*`` variables of the LLM client.

flowllm's ``FlowLLMApp`` arguments work too (``OpApp("config=my.yaml",
"llm.default.model_name=gpt-4o-mini", llm_api_key=...)``): see
:mod:`ops.app_config` for what they map onto, and which are refused.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from async_utils import AsyncHelper
from llm_client import LLMClient

from .app_config import AppConfigError, parse_app_args, read_app_config
from .context import FlowResponse
from .flows import Flow, load_flows, parse_flows
from .services import C, ServiceContext

#: The flows file used when FLOWBRIDGE_FLOWS is not set.
DEFAULT_FLOWS = Path(__file__).resolve().parent.parent / "examples" / "flows.yaml"


def configure_services(
    env: Mapping[str, str] | None = None,
    *,
    llm_provider: Callable[[], LLMClient] | None = None,
    load_gallery: bool = True,
    **overrides: Any,
) -> dict[str, Flow]:
    """Configure ``C`` from ``env`` and ``overrides``; load the gallery and the flows file.

    ``overrides``: ``language``, ``cache``, ``flows`` (the flows file),
    ``thread_pool_max_workers``, ``flow`` (flows declared inline, as in a flowllm
    config: name → ``{flow_content, description, stream, input_schema}``), and
    ``enabled_flows`` / ``disabled_flows`` (lists of flow names).
    Returns the flows, also installed as ``C.flows``.

    :raises FlowConfigError: naming the flows file and the flow that is wrong.
    :raises AppConfigError: naming an override that is not one of these.
    """
    unknown = sorted(set(overrides) - _OVERRIDES)
    if unknown:
        raise AppConfigError(f"{unknown[0]}: not a setting of configure_services (known: {', '.join(sorted(_OVERRIDES))})")
    env = os.environ if env is None else env
    C.configure(
        language=overrides.get("language", env.get("FLOWBRIDGE_LANGUAGE", "")),
        llm_env={k: v for k, v in env.items() if k.startswith(("LLM_", "OPENAI_"))},
        llm_provider=llm_provider,
        cache=overrides.get("cache", env.get("FLOWBRIDGE_OP_CACHE") or "memory"),
        thread_pool_max_workers=overrides.get("thread_pool_max_workers", 16),
    )
    if load_gallery:
        importlib.import_module("ops.gallery")
    flows_path = overrides.get("flows", env.get("FLOWBRIDGE_FLOWS") or "")
    if flows_path:
        flows = load_flows(flows_path)
    elif load_gallery and DEFAULT_FLOWS.exists():
        flows = load_flows(DEFAULT_FLOWS)
    else:
        flows = {}
    if overrides.get("flow"):
        flows.update(parse_flows({"flows": overrides["flow"]}, C.ops, source="config 'flow'"))
    C.flows = _select_flows(flows, overrides.get("enabled_flows"), overrides.get("disabled_flows"))
    return C.flows


_OVERRIDES = frozenset({"language", "cache", "flows", "thread_pool_max_workers", "flow", "enabled_flows",
                        "disabled_flows"})


def _select_flows(flows: dict[str, Flow], enabled: Any, disabled: Any) -> dict[str, Flow]:
    """flowllm's filter: only ``enabled`` when given, else all but ``disabled``; unknown names are errors."""
    for label, names in (("enabled_flows", enabled), ("disabled_flows", disabled)):
        if names is None:
            continue
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise AppConfigError(f"{label}: expected a list of flow names, got {names!r}")
        missing = [name for name in names if name not in flows]
        if missing:
            raise AppConfigError(f"{label}: no flow named {missing[0]!r} (flows: {', '.join(sorted(flows))})")
    if enabled:
        return {name: flow for name, flow in flows.items() if name in enabled}
    return {name: flow for name, flow in flows.items() if name not in (disabled or ())}


class OpApp:
    """Context manager (``with`` or ``async with``) that configures ``C`` and releases its services.

    Also flowllm's ``FlowLLMApp`` (exported under that name too): it takes
    flowllm's arguments — ``"key=value"`` texts such as ``"config=default,search"``
    or ``"llm.default.model_name=..."``, ``config_path=``, ``llm_api_key=``,
    ``llm_api_base=`` … — and maps what has a meaning here onto flowbridge's
    settings (see :mod:`ops.app_config`); anything else is an
    :class:`~ops.app_config.AppConfigError` naming it, raised here. Unlike
    flowllm, the API key and base URL are not written to ``os.environ``: they
    configure this app's LLM client only.

    :param args: flowllm's ``key=value`` texts (a mapping as the first argument is ``env``).
    :param env: the environment to read instead of ``os.environ``.
    :param llm: an LLM client for every op (else one is created lazily from ``LLM_*``).
    :param load_gallery: register the built-in ops and load the flows file.
    :param overrides: ``language``, ``cache``, ``flows``, ``thread_pool_max_workers`` (see
        :func:`configure_services`), or any other flowllm setting (``a__b`` for ``a.b``).
    """

    def __init__(
        self,
        *args: Any,
        env: Mapping[str, str] | None = None,
        llm: LLMClient | None = None,
        load_gallery: bool = True,
        llm_api_key: str | None = None,
        llm_api_base: str | None = None,
        embedding_api_key: str | None = None,
        embedding_api_base: str | None = None,
        config_path: str | None = None,
        **overrides: Any,
    ) -> None:
        if args and isinstance(args[0], Mapping):
            if env is not None:
                raise TypeError("OpApp got env twice: as the first argument and as env=")
            env, args = args[0], args[1:]
        config = read_app_config(parse_app_args(args, overrides, config_path))
        base_env = dict(os.environ if env is None else env)
        llm_env = {**config.llm_env}
        if llm_api_key:
            llm_env["LLM_API_KEY"] = llm_api_key
        if llm_api_base:
            llm_env["LLM_BASE_URL"] = llm_api_base
        _check_embedding_endpoint({**base_env, **llm_env}, embedding_api_key, embedding_api_base)
        self.env: Mapping[str, str] | None = {**base_env, **llm_env} if (llm_env or env is not None) else None
        self.llm = llm
        self.load_gallery = load_gallery
        self.overrides = config.overrides

    @property
    def context(self) -> ServiceContext:
        return C

    def start(self) -> OpApp:
        provider = (lambda: self.llm) if self.llm is not None else None
        configure_services(self.env, llm_provider=provider, load_gallery=self.load_gallery, **self.overrides)
        return self

    def stop(self, wait_thread_pool: bool = True) -> None:
        """Release the services (flowllm's ``stop``; ``wait_thread_pool`` as there)."""
        C.close(wait=wait_thread_pool)

    def __enter__(self) -> OpApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> OpApp:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    async def async_execute_flow(name: str, **inputs: Any) -> FlowResponse:
        """Run the flow ``name`` (flowllm's ``Application.async_execute_flow``); its response.

        :raises KeyError: naming the flow, when there is none of that name.
        :raises ValueError: for a streaming flow (run it through ``/api/flows`` or with a stream queue).
        """
        flow = _flow_named(name)
        if flow.stream:
            raise ValueError(f"flow {name!r} streams; execute_flow runs flows that do not")
        return await flow.run(**inputs)

    @classmethod
    def execute_flow(cls, name: str, **inputs: Any) -> FlowResponse:
        """The sync twin of :meth:`async_execute_flow` (also usable inside a running loop)."""
        return AsyncHelper.run_async_in_sync(cls.async_execute_flow(name, **inputs))


def _flow_named(name: str) -> Flow:
    try:
        return C.flows[name]
    except KeyError:
        raise KeyError(f"no flow named {name!r}; flows: {', '.join(sorted(C.flows)) or 'none'}") from None


def _check_embedding_endpoint(env: Mapping[str, str], api_key: str | None, api_base: str | None) -> None:
    """flowllm's separate embedding endpoint: flowbridge's one client serves both, so it must be the same."""
    base = env.get("LLM_BASE_URL") or env.get("OPENAI_BASE_URL") or ""
    key = env.get("LLM_API_KEY") or env.get("OPENAI_API_KEY") or ""
    if api_base and api_base.rstrip("/") != base.rstrip("/"):
        raise AppConfigError("embedding_api_base: flowbridge uses one endpoint for chat and embeddings; "
                             "it must equal llm_api_base (LLM_BASE_URL)")
    if api_key and api_key != key:
        raise AppConfigError("embedding_api_key: flowbridge uses one endpoint for chat and embeddings; "
                             "it must equal llm_api_key (LLM_API_KEY)")


#: flowllm's name for the app
FlowLLMApp = OpApp
