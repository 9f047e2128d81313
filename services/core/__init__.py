"""The runtime every FlowPilot service stands on.

``config`` (typed configuration), ``db`` (engine, the tenant transaction and
tenant reads), ``auth`` (JWT verification, principals, roles), ``errors`` (the
one exception tree and its mapping to rich gRPC status), ``rpc`` (the wrapper
around every method: auth, access and input rules, deadlines, shutdown),
``validation`` (field rules, the wire read), ``pagination`` (tokens and the
List helper), ``enums``, ``names`` and ``ids`` (what requests carry),
``clients`` (other services, the settings reader), ``server`` (bootstrap:
health, reflection, graceful shutdown), ``memory``, ``metrics``,
``telemetry`` and ``logs``. Services import from here; nothing here imports
a service.
"""
