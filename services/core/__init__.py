"""The runtime every FlowPilot service stands on.

``config`` (typed configuration), ``db`` (engine and the per-RPC tenant
transaction), ``auth`` (JWT verification, principals, roles), ``errors`` (the
one exception tree and its mapping to rich gRPC status), ``rpc`` (the server
interceptor that applies auth, access and input rules to every RPC),
``server`` (bootstrap: health, reflection, graceful shutdown), ``telemetry``
and ``logs``. Services import from here; nothing here imports a service.
"""
