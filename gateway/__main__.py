"""``python -m gateway``: serve the HTTP/JSON gateway (configured by env)."""

from __future__ import annotations

import uvicorn

from gateway.config import GatewayConfig


def main() -> None:
    config = GatewayConfig()
    uvicorn.run(
        "gateway.app:factory",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level=config.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
