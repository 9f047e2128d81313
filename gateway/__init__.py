"""The HTTP/JSON gateway: the UI's only door, derived from the protos'
``google.api.http`` annotations (no hand-written route per endpoint)."""
