"""``OpApp``: load configuration and services for scripts and tests (flowllm's ``FlowLLMApp``).

```python
async with OpApp():
    result = await QAOp().async_call(question="Hi?")
```

Configuration comes from the environment, then keyword arguments:
``FLOWBRIDGE_LANGUAGE`` (prompt language), ``FLOWBRIDGE_OP_CACHE`` (``memory``
or ``sqlite:/path.db``), ``FLOWBRIDGE_FLOWS`` (flows YAML, default
``examples/flows.yaml``) and the ``LLM_*`` variables of the LLM client.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llm_client import LLMClient

from .flows import Flow, load_flows
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

    Returns the flows, also installed as ``C.flows``.

    :raises FlowConfigError: naming the flows file and the flow that is wrong.
    """
    env = os.environ if env is None else env
    C.configure(
        language=overrides.get("language", env.get("FLOWBRIDGE_LANGUAGE", "")),
        llm_env={k: v for k, v in env.items() if k.startswith(("LLM_", "OPENAI_"))},
        llm_provider=llm_provider,
        cache=overrides.get("cache", env.get("FLOWBRIDGE_OP_CACHE") or "memory"),
    )
    if load_gallery:
        importlib.import_module("ops.gallery")
    flows_path = overrides.get("flows", env.get("FLOWBRIDGE_FLOWS") or "")
    if flows_path:
        C.flows = load_flows(flows_path)
    elif load_gallery and DEFAULT_FLOWS.exists():
        C.flows = load_flows(DEFAULT_FLOWS)
    else:
        C.flows = {}
    return C.flows


class OpApp:
    """Context manager (``with`` or ``async with``) that configures ``C`` and releases its services.

    :param env: the environment to read instead of ``os.environ``.
    :param llm: an LLM client for every op (else one is created lazily from ``LLM_*``).
    :param load_gallery: register the built-in ops and load the flows file.
    :param overrides: ``language``, ``cache``, ``flows`` (see the module doc).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        llm: LLMClient | None = None,
        load_gallery: bool = True,
        **overrides: Any,
    ) -> None:
        self.env = env
        self.llm = llm
        self.load_gallery = load_gallery
        self.overrides = overrides

    @property
    def context(self) -> ServiceContext:
        return C

    def start(self) -> OpApp:
        provider = (lambda: self.llm) if self.llm is not None else None
        configure_services(self.env, llm_provider=provider, load_gallery=self.load_gallery, **self.overrides)
        return self

    def stop(self) -> None:
        C.close()

    def __enter__(self) -> OpApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> OpApp:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
