"""``python -m services.walks``: run the walks service (configured by env)."""

from services.core.server import run_service
from services.walks.service import WalksConfig, build

if __name__ == "__main__":
    run_service(WalksConfig, build)
