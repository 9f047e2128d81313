"""``python -m services.settings``: run the settings service (configured by env)."""

from services.core.server import run_service
from services.settings.service import SettingsConfig, build

if __name__ == "__main__":
    run_service(SettingsConfig, build)
