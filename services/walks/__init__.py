"""The walks service: flows, flow proposals and L1 walks (``flowpilot.walks.v1``)."""
