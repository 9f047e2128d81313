"""`make bench`'s stress section: the requests it sends are at the message
limit, and the report names what exceeded its ceiling."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import report, targets
from bench.stress import LIMIT, heaviest_requests

MB = 1_000_000


def test_every_heaviest_request_is_at_the_message_limit() -> None:
    for service, requests in heaviest_requests().items():
        for label, _method, raw in requests:
            assert 4 * MB < len(raw) <= LIMIT, (service, label, len(raw))


def _results(peak_mb: float, during_p99: float) -> dict:  # type: ignore[type-arg]
    return {
        "time": "t",
        "machine": "m",
        "paths": {},
        "scale": {
            "list facts 1M, page at 500k": {"p50_ms": 1.0, "p99_ms": 2.0},
            "list facts 10k": {"p50_ms": 1.0, "p99_ms": 2.0},
        },
        "peak_rss": {"walks": 150 * MB},
        "pairs": {},
        "stress": {
            "memory_at_the_limit": {
                "walks: largest valid flow": {
                    "bytes": 4_128_966,
                    "codes": {"OK": 24},
                    "rss_before": 106 * MB,
                    "peak_rss": peak_mb * MB,
                }
            },
            "noisy_neighbour": {
                "alone": {"calls": 100, "p50_ms": 3.0, "p99_ms": 10.0},
                "during": {"calls": 40, "p50_ms": 4.0, "p99_ms": during_p99},
                "escalations": {"OK": 14},
            },
        },
        "grpc_gateway": {"rows": [], "skipped": "wrk is not installed", "peak_rss_mib": {}},
    }


def test_the_report_shows_memory_at_the_limit_and_the_neighbours_p99(tmp_path: Path) -> None:
    for peak, during, met in ((198, 15.0, True), (230, 35.0, False)):
        results = _results(peak, during)
        results["targets"] = targets(
            results["paths"], results["peak_rss"], results["scale"], results["pairs"], results["stress"]
        )
        stress_targets = [
            t for t in results["targets"] if "message limit" in t["target"] or "escalations" in t["target"]
        ]
        assert len(stress_targets) == 2 and all(t["met"] is met for t in stress_targets), stress_targets
        report(results, tmp_path)
        text = (tmp_path / "latest.md").read_text()
        assert f"| walks: largest valid flow | 4,128,966 | OK 24 | 106 | {peak} |" in text
        assert "| during the escalations | 40 | 4.00 |" in text
        assert "grpc-gateway comparison skipped: wrk is not installed" in text


def test_the_grpc_gateway_comparison_says_what_is_missing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Optional: without wrk (or the peer) it is a note, never a download or a failure."""
    from bench import gateway_peer

    monkeypatch.setenv("PATH", str(tmp_path))  # no tool at all
    compared = gateway_peer.compare(gateway="http://127.0.0.1:1", gateway_pid=1, backends={}, token="t")
    assert compared.rows == [] and compared.skipped is not None and "wrk" in compared.skipped
    assert compared.skipped in compared.markdown()
