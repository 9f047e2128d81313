"""The gateway beside grpc-gateway, the peer a team would otherwise deploy.

``compare`` starts the peer (grpc-gateway v1.6.4 from Debian's packages,
generated from our protos; built by the shared ``build.sh`` of
``$FP_PEERS/grpc-gateway``) in front of the same backends as the running
gateway, makes its fixtures through the gateway, and loads both with the
same wrk script per workload, the two alternated (order swapped every
round). A row: requests/s of each, their ratio, and CPU ms per request of
each side's processes (the gateway's workers included). Without wrk, the
peer's binary or what building it needs, it returns a note saying what is
missing instead: it never installs or downloads anything.

``python -m bench.gateway_peer URL PID`` compares against a gateway already
running on URL with process PID (backends from ``FLOWPILOT_*_ADDRESS``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("FP_PEERS", ROOT.parent / "shared" / "peers"))
PEER_DIR = Path(os.environ.get("PEER_DIR", Path(tempfile.gettempdir()) / "fp-gwpeer"))
WORKLOADS = ("get_session", "get_setting", "list_facts", "create_fact")

Request = tuple[str, str, str | None]  # method, path, JSON body


@dataclass(frozen=True)
class Row:
    workload: str
    c: int
    ours_rps: float
    peer_rps: float
    ratio: float  # ours ÷ peer
    ours_cpu_ms: float  # CPU ms per request, all of the side's processes
    peer_cpu_ms: float


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    skipped: str | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        if self.skipped:
            return f"grpc-gateway comparison skipped: {self.skipped}\n"
        lines = [
            "| workload | c | ours req/s | grpc-gateway req/s | ratio | CPU ms/req ours / peer (×) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.workload} | {r.c} | {r.ours_rps:.0f} | {r.peer_rps:.0f} | {r.ratio:.2f} | "
                f"{r.ours_cpu_ms:.3f} / {r.peer_cpu_ms:.3f} ({r.ours_cpu_ms / max(r.peer_cpu_ms, 1e-9):.1f}×) |"
            )
        rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in self.peak_rss_mib.items())
        return "\n".join(lines) + f"\n\nPeak RSS of one process: {rss}.\n"


def peer_binary() -> Path | str:
    """The peer's binary (built now if the tools are here), or why there is none."""
    binary = PEER_DIR / "bin" / "fp-gwpeer"
    if binary.is_file():
        return binary
    script = PEERS / "grpc-gateway" / "build.sh"
    if not script.is_file():
        return f"no {binary} and no {script} to build it"
    missing = [
        tool
        for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-grpc-gateway")
        if not shutil.which(tool)
    ]
    if missing:
        return f"building the peer needs {', '.join(missing)} (INSTALL=1 {script} installs Debian's packages)"
    import google.api

    googleapis = Path(next(iter(google.api.__path__))).parent.parent  # holds google/api/annotations.proto
    env = {
        **os.environ,
        "FP_PROTOS": str(ROOT / "protos"),
        "FP_GOOGLEAPIS": str(googleapis),
        "PEER_DIR": str(PEER_DIR),
        "INSTALL": "0",
        "GOPROXY": "off",
    }
    built = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    if built.returncode != 0 or not binary.is_file():
        return f"building the peer failed: {built.stderr.strip()[-300:]}"
    return binary


def compare(
    *,
    gateway: str,
    gateway_pid: int,
    backends: dict[str, str],
    token: str,
    concurrency: tuple[int, ...] = (1, 16),
    duration: float = 5.0,
    rounds: int = 2,
) -> Comparison:
    """Both gateways under the same wrk load; ``backends``: service name
    (sessions, library, settings, walks) → address."""
    if not shutil.which("wrk"):
        return Comparison(skipped="wrk is not installed (Debian: apt-get install wrk)")
    binary = peer_binary()
    if isinstance(binary, str):
        return Comparison(skipped=binary)
    port = _free_port()
    env = {
        **os.environ,
        "PEER_LISTEN": f"127.0.0.1:{port}",
        **{f"FP_{name.upper()}_ADDRESS": address for name, address in backends.items()},
    }
    peer = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_open(port)
        return _measure(
            {"ours": (gateway, gateway_pid), "peer": (f"http://127.0.0.1:{port}", peer.pid)},
            _fixtures(gateway, token),
            token,
            concurrency,
            duration,
            rounds,
        )
    finally:
        peer.terminate()
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            peer.kill()


def _measure(
    sides: dict[str, tuple[str, int]],
    workloads: dict[str, list[Request]],
    token: str,
    concurrency: tuple[int, ...],
    duration: float,
    rounds: int,
) -> Comparison:
    folder = Path(tempfile.mkdtemp(prefix="fp-gateway-peer-"))
    scripts = {}
    for name, requests in workloads.items():
        scripts[name] = folder / f"{name}.lua"
        scripts[name].write_text(_lua(requests, token))
    peak: dict[str, float] = {}
    runs: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for url, _ in sides.values():  # warm connections, caches and workers
        for name in workloads:
            _wrk(url, scripts[name], 8, 1)
    for index in range(rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for c in concurrency:
            for name in workloads:
                for side in order:
                    url, pid = sides[side]
                    processes = _tree(pid)
                    before = _cpu(processes)
                    result = _wrk(url, scripts[name], c, duration)
                    cpu = _cpu(processes) - before
                    answered = max(result["requests"], 1)
                    rps = result["requests"] / (result["duration_us"] / 1e6)
                    runs.setdefault((side, name, c), []).append((rps, 1000 * cpu / answered))
                    peak[side] = max(peak.get(side, 0.0), max(_rss_mib(p) for p in processes))
    rows = []
    for name in workloads:
        for c in concurrency:
            ours = runs[("ours", name, c)]
            theirs = runs[("peer", name, c)]
            ours_rps = statistics.median(r for r, _ in ours)
            peer_rps = statistics.median(r for r, _ in theirs)
            rows.append(
                Row(
                    name,
                    c,
                    round(ours_rps, 1),
                    round(peer_rps, 1),
                    round(ours_rps / peer_rps, 3) if peer_rps else 0.0,
                    round(statistics.median(m for _, m in ours), 3),
                    round(statistics.median(m for _, m in theirs), 3),
                )
            )
    shutil.rmtree(folder, ignore_errors=True)
    return Comparison(rows=rows, peak_rss_mib={k: round(v, 1) for k, v in peak.items()})


def _fixtures(gateway: str, token: str) -> dict[str, list[Request]]:
    """Sessions to read (16, 20 facts each) and to write facts to (16), made through the gateway."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (our own gateway on loopback)
            gateway + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    session = {"ticketKind": "TICKET_KIND_PSA", "title": "bench", "problem": "bench problem"}
    read = []
    for i in range(16):
        name = post("/v1/sessions", {**session, "ticketRef": f"PEER #{i}"})["session"]["name"]
        for j in range(20):
            post(f"/v1/{name}/facts", {"text": f"bench fact {j}", "source": "FACT_SOURCE_USER"})
        read.append(name)
    write = [
        post("/v1/sessions", {**session, "ticketRef": f"PEER W{i}"})["session"]["name"] for i in range(16)
    ]
    fact = json.dumps({"text": "bench fact", "source": "FACT_SOURCE_USER"})
    return {
        "get_session": [("GET", f"/v1/{s}", None) for s in read],
        "get_setting": [("GET", "/v1/settings/notes.format", None)],
        "list_facts": [("GET", f"/v1/{s}/facts?pageSize=50", None) for s in read],
        "create_fact": [("POST", f"/v1/{s}/facts", fact) for s in write],
    }


_LUA = """
local reqs = {%(reqs)s}
local i = 0
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #reqs + 1
  local r = reqs[i]
  return wrk.format(r[1], r[2], nil, r[3])
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def _lua(requests: list[Request], token: str) -> str:
    def text(value: str | None) -> str:
        return "nil" if value is None else json.dumps(value)

    table = ", ".join(f"{{{text(m)}, {text(p)}, {text(b)}}}" for m, p, b in requests)
    return _LUA % {"reqs": table, "token": token}


def _wrk(url: str, script: Path, c: int, duration: float) -> dict[str, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{c}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    ).stdout
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    result: dict[str, int] = json.loads(line.removeprefix("RESULT "))
    return result


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _rss_mib(process: psutil.Process) -> float:
    try:
        return float(process.memory_info().rss) / 2**20
    except psutil.Error:
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_open(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the peer never listened on port {port}")


def main() -> None:
    from services.core.auth import Role
    from tools.token import dev_token

    url, pid = sys.argv[1], int(sys.argv[2])
    backends = {
        name: os.environ.get(f"FLOWPILOT_{name.upper()}_ADDRESS", f"127.0.0.1:{port}")
        for name, port in (("sessions", 50051), ("library", 50052), ("settings", 50053), ("walks", 50054))
    }
    result = compare(
        gateway=url,
        gateway_pid=pid,
        backends=backends,
        token=dev_token(role=Role.TEAM_ADMIN),
        duration=float(os.environ.get("DURATION", "5")),
        rounds=int(os.environ.get("ROUNDS", "2")),
    )
    print(result.markdown())


if __name__ == "__main__":
    main()
