"""``python -m services.sessions``: run the sessions service (configured by env)."""

from services.core.server import run_service
from services.sessions.service import SessionsConfig, build

if __name__ == "__main__":
    run_service(SessionsConfig, build)
