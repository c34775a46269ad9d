"""Fixtures shared by the webapp tests: an app on the fake upstream with an in-memory task store.

A test module that needs other settings defines its own ``app`` fixture, which takes precedence.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app


@pytest.fixture
def app(upstream: FakeUpstream) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                       "FLOWBRIDGE_TASK_DB": "memory"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
