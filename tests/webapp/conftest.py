"""Fixtures shared by the webapp tests: an app on the fake upstream with an in-memory task store.

A test module that needs other settings defines its own ``app`` fixture, which takes precedence.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.extensions import close_workflow_runtime


@pytest.fixture
def app(upstream: FakeUpstream) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "FLOWBRIDGE_TASK_DB": "memory"})
    yield app
    close_workflow_runtime(app)  # the tasks a test started end with it


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
