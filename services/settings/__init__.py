"""The settings service: per-account typed preferences (``flowpilot.settings.v1``)."""
