"""Init container of every service pod: wait until the migration Job has completed.

Kubernetes has no ordering between the objects of one ``kubectl apply``, so
each service pod starts with this gate: it asks the API server for the Job
(``FLOWPILOT_MIGRATION_JOB``, default ``flowpilot-migrate``) in its own
namespace and exits 0 once the Job is Complete. Until then (Job not created
yet, still running, failed and waiting to be recreated) it keeps asking, and
after ``FLOWPILOT_GATE_TIMEOUT_SECONDS`` exits 1 so the kubelet restarts it
with back-off, which shows as ``Init:Error`` rather than a silent wait.

The only credential is a short-lived service-account token projected into
this container alone (the service container gets none), allowed to ``get``
that one Job (base/serviceaccounts.yaml). Standard library only: it runs in
the FlowPilot image with nothing installed. ``FLOWPILOT_GATE_API_URL`` and
``FLOWPILOT_GATE_TOKEN_FILE`` point it elsewhere (tests).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CREDENTIALS = Path("/var/run/flowpilot/kube-api")


def log(message: str, **fields: object) -> None:
    record = {"level": "INFO", "service": "migration-gate", "message": message, **fields}
    print(json.dumps(record), file=sys.stderr, flush=True)


def api_url() -> str:
    explicit = os.environ.get("FLOWPILOT_GATE_API_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def job_state(url: str, token_file: Path, context: ssl.SSLContext | None) -> str:
    """``complete``, ``failed``, ``running`` or ``missing``."""
    token = token_file.read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (our URL)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 (our URL)
            job = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "missing"
        raise
    conditions = {c.get("type"): c.get("status") for c in job.get("status", {}).get("conditions") or []}
    if conditions.get("Complete") == "True":
        return "complete"
    if conditions.get("Failed") == "True":
        return "failed"
    return "running"


def main() -> int:
    namespace = os.environ.get("POD_NAMESPACE") or (CREDENTIALS / "namespace").read_text().strip()
    job = os.environ.get("FLOWPILOT_MIGRATION_JOB", "flowpilot-migrate")
    token_file = Path(os.environ.get("FLOWPILOT_GATE_TOKEN_FILE", CREDENTIALS / "token"))
    timeout = float(os.environ.get("FLOWPILOT_GATE_TIMEOUT_SECONDS", "900"))
    interval = float(os.environ.get("FLOWPILOT_GATE_INTERVAL_SECONDS", "2"))
    base = api_url()
    context = (
        ssl.create_default_context(cafile=str(CREDENTIALS / "ca.crt")) if base.startswith("https:") else None
    )
    url = f"{base}/apis/batch/v1/namespaces/{namespace}/jobs/{job}"
    deadline = time.monotonic() + timeout
    last_state, last_logged = "", 0.0
    while True:
        try:
            state = job_state(url, token_file, context)
        except (OSError, ValueError) as exc:  # API server unreachable, refused, garbled
            state = f"error: {exc}"
        if state == "complete":
            log("migrations complete; starting", job=job)
            return 0
        now = time.monotonic()
        if state != last_state or now - last_logged >= 30:
            log("waiting for the migration job", job=job, namespace=namespace, state=state)
            last_state, last_logged = state, now
        if now >= deadline:
            log("gave up waiting; the kubelet will retry", job=job, state=state)
            return 1
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
