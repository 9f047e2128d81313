"""``python -m services.library``: run the library service (configured by env)."""

from services.core.server import run_service
from services.library.service import LibraryConfig, build

if __name__ == "__main__":
    run_service(LibraryConfig, build)
