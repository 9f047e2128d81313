"""`make run` on a fresh dev directory: embedded PostgreSQL, migrations, every
service up, grpcurl works with a `make token` token, Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.grpcurl import binary
from tests.support import ROOT, free_port
from tools.devstack import PROCESSES


@pytest.mark.slow
def test_make_run_from_scratch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MAKE")}
    env["FLOWPILOT_DEV_DIR"] = str(tmp_path / "dev")
    ports = {p.name: free_port() for p in PROCESSES}
    for process in PROCESSES:
        env[process.port_env] = str(ports[process.name])
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "FlowPilot is running" not in log_path.read_text():
            assert make.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "make run did not come up in time"
            time.sleep(0.5)
        for name in ("sessions", "library", "settings", "walks"):
            reflected = subprocess.run(
                [binary(), "-plaintext", f"127.0.0.1:{ports[name]}", "list"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert f"flowpilot.{name}.v1." in reflected.stdout, (name, reflected.stderr)
        settings = f"127.0.0.1:{ports['settings']}"
        listed = subprocess.run(
            [binary(), "-plaintext", settings, "list"], capture_output=True, text=True, timeout=30
        )
        assert "flowpilot.settings.v1.SettingsService" in listed.stdout, listed.stderr
        token = (
            subprocess.run(
                ["make", "--no-print-directory", "token", "ROLE=viewer"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        called = subprocess.run(
            [
                binary(),
                "-plaintext",
                "-H",
                f"authorization: Bearer {token}",
                "-d",
                '{"name": "settings/ai.model_tier"}',
                settings,
                "flowpilot.settings.v1.SettingsService/GetSetting",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["value"] == "auto"
        # The gateway serves the same through HTTP.
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['gateway']}/v1/settings/ai.model_tier",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (localhost)
            assert json.loads(response.read())["value"] == "auto"
    finally:
        os.killpg(make.pid, signal.SIGINT)
        code = make.wait(60)
    output = log_path.read_text()
    assert "stopped" in output.splitlines()[-1] or "stopped" in output[-200:], output[-2000:]
    assert code in (0, 2, -signal.SIGINT), output[-2000:]
    # Nothing keeps running: no service, no embedded PostgreSQL of this dev dir.
    pgdata = str(tmp_path / "dev" / "pgdata")
    time.sleep(1)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if pgdata in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
