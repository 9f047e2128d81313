"""``python -m gateway``: serve the HTTP/JSON gateway (configured by env).

With several workers (``FLOWPILOT_WORKERS``, by default one per available
core) each worker records its metrics in files of a directory of its own
(prometheus_client's multiprocess mode, chosen by ``PROMETHEUS_MULTIPROC_DIR``
before the workers start), and this process, which supervises them, serves
their sum on ``FLOWPILOT_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import uvicorn

from gateway.config import GatewayConfig
from gateway.http import PROTOCOL
from services.core import logs

log = logging.getLogger("flowpilot.gateway")


def serve_workers_metrics(config: GatewayConfig) -> str:
    """Serves the workers' metrics from this process; returns the directory
    they record in (set for them in the environment they inherit)."""
    directory = tempfile.mkdtemp(prefix="flowpilot-gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    try:
        start_http_server(config.metrics_port, addr=config.host, registry=registry)
    except OSError as error:
        log.error("metrics not served", extra={"fields": {"port": config.metrics_port, "error": str(error)}})
    else:
        log.info(
            "metrics served",
            extra={"fields": {"address": f"{config.host}:{config.metrics_port}", "workers": config.workers}},
        )
    return directory


def main() -> None:
    config = GatewayConfig()
    # uvicorn's own lines (the supervisor's too) in the same JSON as the app's.
    logs.configure(config.log_level, service="gateway")
    metrics_dir = serve_workers_metrics(config) if config.workers > 1 and config.metrics_port else None
    try:
        uvicorn.run(
            "gateway.app:factory",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            log_level=config.log_level.lower(),
            log_config=None,
            http=PROTOCOL,  # llhttp, with h11 for what it refuses (gateway.http)
            access_log=False,  # gateway.observe writes the access line
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
