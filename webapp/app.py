"""``create_app()``: the only way to build the flowbridge web app (exported by :mod:`webapp`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response

from async_utils import AsyncConfig
from llm_client import LLMSettings
from ops import configure_services

from .guards import auth, deadlines, headers, observability, origin
from .guards.jsonbody import JSONBodyRequest
from .config import load_config, load_secret_key
from .errors import register_error_handlers
from .extensions import describe_upstream, get_llm_client, pool_size

__all__ = ["create_app"]

_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``config``.

    Bad settings fail here, at start-up, naming the variable. Nothing that
    opens connections or starts threads happens here: the LLM client is
    created on first use in each (forked) process.
    """
    settings_from_env = load_config(config)
    instance_dir = str(settings_from_env.get("FLOWBRIDGE_INSTANCE_DIR") or "").strip()
    app = Flask(
        "webapp",  # the package: Flask finds static/ and the instance folder from it
        template_folder=str(_ROOT / "templates"),
        static_folder="static",
        instance_relative_config=True,
        instance_path=str(Path(instance_dir).expanduser().resolve()) if instance_dir else None,
    )
    app.request_class = JSONBodyRequest  # every JSON body: deep, broken or surrogate JSON is a 400
    app.config.update(settings_from_env)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    llm_env = app.config["LLM_ENV"]
    settings = LLMSettings.load(llm_env)  # raises LLMConfigError naming the variable
    for check in (AsyncConfig.get_queue_size, AsyncConfig.get_timeout, AsyncConfig.is_async_enabled):
        check(llm_env)
    app.extensions["flowbridge"] = {"settings": settings}
    app.secret_key = app.config["FLOWBRIDGE_SECRET_KEY"] or load_secret_key(Path(app.instance_path))
    pool_size(app)
    configure_services(
        llm_env,
        llm_provider=lambda: get_llm_client(app),
        language=app.config["FLOWBRIDGE_LANGUAGE"],
        cache=app.config["FLOWBRIDGE_OP_CACHE"],
        flows=app.config["FLOWBRIDGE_FLOWS"],
    )  # raises FlowConfigError naming the flows file and flow

    from .pages import bp as pages_bp
    from .routes import api_bp, functions_bp, health_bp, ops_bp, tasks_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(functions_bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(pages_bp)
    from .routes import mcp

    mcp.init_app(app)  # /mcp: the tool ops over MCP's streamable HTTP (behind the API keys, as /api)
    from .routes.openai import bp as openai_bp

    app.register_blueprint(openai_bp)  # /v1: the OpenAI API (behind the API keys, as /api; its own error shape)
    register_error_handlers(app)
    observability.init_app(app)
    origin.init_app(app)  # Host and cross-site checks, before authentication
    headers.init_app(app)
    auth.init_app(app)
    deadlines.init_app(app)

    # Browsers ask for /favicon.ico whatever the page links; the pages link the SVG too (base.html).
    favicon = (_ROOT / "webapp" / "static" / "favicon.ico").read_bytes()
    app.add_url_rule("/favicon.ico", "favicon", lambda: Response(
        favicon, mimetype="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}))

    @app.context_processor
    def _upstream() -> dict[str, Any]:
        return {"upstream": describe_upstream(app)}

    return app
