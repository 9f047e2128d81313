"""The gateway's default worker count follows the cores it may use."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import GatewayConfig, available_cores


def test_workers_default_to_the_available_cores_within_a_cgroup_quota(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    assert available_cores(tmp_path / "missing") == cores
    limit.write_text("max 100000\n")
    assert available_cores(limit) == cores
    limit.write_text("50000 100000\n")  # half a core: still one worker
    assert available_cores(limit) == 1
    limit.write_text(f"{100000 * (cores + 3)} 100000\n")  # a quota above the affinity
    assert available_cores(limit) == cores
    assert GatewayConfig().workers == available_cores()
