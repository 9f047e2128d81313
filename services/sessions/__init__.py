"""The sessions service: FlowPilot sessions, facts, fixes, notes (``flowpilot.sessions.v1``)."""
