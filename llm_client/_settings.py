"""Settings of :class:`~llm_client.LLMClient`, validated with pydantic.

Each setting comes from the constructor's keyword argument when given, else
from the environment, else from the default below. A bad value is an
:class:`~llm_client.LLMConfigError` that names the variable it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ._cache import parse_cache_spec
from ._cache_redis import redact_url
from .exceptions import LLMConfigError

#: Where the embedded local model server listens (see ``llm_client.local_server``).
DEFAULT_BASE_URL = "http://127.0.0.1:8081/v1"
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
#: The longest one call may take from start to end (connect, retries and their waits, reading the
#: whole answer; for a stream: until its first event). Per-read timeouts alone let an upstream that
#: trickles a byte now and then hold a thread forever.
DEFAULT_TOTAL_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 2
#: First backoff delay; doubles per attempt up to MAX_RETRY_DELAY, with jitter.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
#: A Retry-After longer than this is cut down to it.
MAX_RETRY_AFTER = 60.0
#: Response cache (``LLM_CACHE``): seconds an answer is kept, and answers kept in memory.
DEFAULT_CACHE_TTL = 3600.0
DEFAULT_CACHE_SIZE = 1024

# field name -> environment variables, first one set wins
_ENV_NAMES: dict[str, tuple[str, ...]] = {
    "base_url": ("LLM_BASE_URL", "OPENAI_BASE_URL"),
    "api_key": ("LLM_API_KEY", "OPENAI_API_KEY"),
    "model": ("LLM_MODEL",),
    "embedding_model": ("LLM_EMBEDDING_MODEL",),
    "timeout": ("LLM_TIMEOUT",),
    "connect_timeout": ("LLM_CONNECT_TIMEOUT",),
    "total_timeout": ("LLM_TOTAL_TIMEOUT",),
    "max_retries": ("LLM_MAX_RETRIES",),
    "retry_initial_delay": ("LLM_RETRY_INITIAL_DELAY",),
    "retry_after_cap": ("LLM_RETRY_AFTER_CAP",),
    "cache": ("LLM_CACHE",),
    "cache_path": ("LLM_CACHE_PATH",),
    "cache_ttl": ("LLM_CACHE_TTL",),
    "cache_size": ("LLM_CACHE_SIZE",),
}


class LLMSettings(BaseModel):
    """Validated connection settings of one client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = DEFAULT_BASE_URL
    api_key: SecretStr | None = None
    model: str = Field(DEFAULT_MODEL, min_length=1)
    embedding_model: str | None = None
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    connect_timeout: float = Field(DEFAULT_CONNECT_TIMEOUT, gt=0)
    #: ``LLM_TOTAL_TIMEOUT``: the whole call, retries included (see DEFAULT_TOTAL_TIMEOUT).
    total_timeout: float = Field(DEFAULT_TOTAL_TIMEOUT, gt=0, allow_inf_nan=False)
    max_retries: int = Field(DEFAULT_MAX_RETRIES, ge=0, le=20)
    retry_initial_delay: float = Field(INITIAL_RETRY_DELAY, ge=0)
    retry_after_cap: float = Field(MAX_RETRY_AFTER, ge=0)
    #: "" (off), "memory", "sqlite" (the file ``cache_path``), "sqlite:/path/cache.db" or "redis://host:port/db".
    cache: str = ""
    cache_path: str | None = None
    cache_ttl: float = Field(DEFAULT_CACHE_TTL, gt=0)
    cache_size: int = Field(DEFAULT_CACHE_SIZE, ge=1)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("cache")
    @classmethod
    def _check_cache(cls, value: str) -> str:
        parse_cache_spec(value)  # raises ValueError with the accepted forms
        return value.strip()

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def call_budget(self) -> float:
        """The longest one call may take with all its retries: the lease of a response-cache claim."""
        attempts = self.max_retries + 1
        per_attempts = attempts * (self.connect_timeout + self.timeout) + self.max_retries * max(
            MAX_RETRY_DELAY, self.retry_after_cap
        )
        return min(per_attempts, self.total_timeout)

    @property
    def embeddings_model(self) -> str:
        """The model used by ``embed``: ``LLM_EMBEDDING_MODEL``, else the chat model."""
        return self.embedding_model or self.model

    @classmethod
    def load(cls, env: Mapping[str, str], **overrides: Any) -> LLMSettings:
        """Build settings from keyword ``overrides`` (None = not given), then ``env``.

        :raises LLMConfigError: naming the argument or variable whose value is bad.
        """
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for field, names in _ENV_NAMES.items():
            if overrides.get(field) is not None:
                values[field] = overrides[field]
                origin[field] = f"argument {field!r}"
                continue
            for name in names:
                if env.get(name, "") != "":
                    values[field] = env[name]
                    origin[field] = name
                    break
        unknown = set(overrides) - set(_ENV_NAMES)
        if unknown:
            raise LLMConfigError(f"unknown LLM settings: {', '.join(sorted(unknown))}")
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                where = origin.get(field, field)
                shown = "***" if field == "api_key" else repr(values.get(field))
                if field == "cache" and isinstance(values.get(field), str):  # a Redis URL's password
                    shown = repr(redact_url(values[field]))
                problems.append(f"{where}: {err['msg']} (got {shown})")
            raise LLMConfigError("invalid LLM settings: " + "; ".join(problems)) from None
