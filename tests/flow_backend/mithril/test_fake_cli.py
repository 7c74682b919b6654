"""``python -m flow_backend.testing`` starts a usable fake and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx


def test_cli_prints_url_and_key_and_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "flow_backend.testing", "--provisioning-delay", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        env = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines[1:4])
        assert lines[0].startswith("Fake Mithril API at http://127.0.0.1:")
        response = httpx.get(
            env["MITHRIL_API_URL"] + "/v2/projects",
            headers={"Authorization": f"Bearer {env['MITHRIL_API_KEY']}"},
        )
        assert response.status_code == 200
        assert response.json()[0]["name"] == env["MITHRIL_PROJECT"]
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0 and "stopped" in out
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_cli_rejects_a_bad_port_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flow_backend.testing", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--port must be in 0..65535, got 70000" in result.stderr
    assert "Traceback" not in result.stderr


def test_flow_fake_mithril_subcommand_serves_too() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "flow_backend.cli", "fake-mithril", "--provisioning-delay", "0"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Fake Mithril API at http://127.0.0.1:")
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=20)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
