"""``python -m gateway``: serve the HTTP/JSON gateway (configured by env)."""

from __future__ import annotations

import uvicorn

from gateway.config import GatewayConfig
from services.core import logs


def main() -> None:
    config = GatewayConfig()
    # uvicorn's own lines (the supervisor's too) in the same JSON as the app's.
    logs.configure(config.log_level, service="gateway")
    uvicorn.run(
        "gateway.app:factory",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level=config.log_level.lower(),
        log_config=None,
        access_log=False,  # gateway.observe writes the access line
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
