"""The compose file's monitor runs ``eta monitor`` the way the code expects it to."""

from __future__ import annotations

import pytest
import typer.main
import yaml

from predictor.cli import app
from tests.unit.project.test_compose import BASE, environment, load, settings_from


def test_the_monitor_service_runs_eta_monitor_exposes_its_metrics_and_keeps_its_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monitor = load(BASE)["monitor"]
    settings = settings_from(environment(monitor), monkeypatch)

    assert monitor["command"] == ["monitor"]
    assert "monitor" in typer.main.get_command(app).commands  # type: ignore[attr-defined]  # get_command types a click Command; the app's is a Group, which has commands
    assert [int(p) for p in monitor["expose"]] == [settings.monitor_metrics_port]
    assert settings.monitor_metrics_port != 9108  # not the worker's port
    assert settings.monitor_group != settings.consumer_group  # its own consumer group
    mounts = dict(volume.rsplit(":", 1)[::-1] for volume in monitor["volumes"])
    assert "/data" in mounts and settings.data_dir.is_relative_to("/data")
    volume = mounts["/data"]
    assert volume in yaml.safe_load(BASE.read_text())["volumes"], "a named volume, kept"
    assert "container_name" not in monitor
