"""The compose files' api service runs the app this package builds, and its healthcheck works.

The secured variant sets ETA_API_KEY; the container healthcheck sends no key, so the path it
probes must be one the app leaves open — checked here against the app itself.
"""

from __future__ import annotations

import re

import pytest

from predictor.api import create_app
from predictor.api.wiring import api_config
from tests.api_fakes import Models, call, dead_redis
from tests.unit.project.test_compose import BASE, SECURE, environment, load, settings_from


@pytest.mark.parametrize("files", [(BASE,), (BASE, SECURE)], ids=["base", "secure"])
def test_the_api_healthcheck_probes_an_open_path(
    files: tuple[object, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = load(*files)["api"]  # type: ignore[arg-type]  # the parametrized files are Paths, typed object by pytest's ids
    settings = settings_from(environment(api), monkeypatch)
    probe = " ".join(api["healthcheck"]["test"])
    match = re.search(r"https?://[^/]+(/[\w/]*)", probe)
    assert match, probe
    client, async_client = dead_redis()
    app = create_app(api_config(settings), client, Models(), async_client=async_client)

    response = call(app, "GET", match[1])

    assert api["command"] == ["serve"]
    assert response.status_code == 200, response.text
    if SECURE in files:
        assert settings.api_key is not None
        assert call(app, "GET", "/readyz").status_code == 401
