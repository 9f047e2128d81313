"""FlowPilot gRPC services and the runtime they share (``services.core``)."""
