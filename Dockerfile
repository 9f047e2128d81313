# One image for every FlowPilot process; the command picks it:
#   python -m services.sessions | services.library | services.settings |
#   services.walks | gateway | migrations
# Two stages. The builder generates the protobuf package from protos/
# (grpcio-tools lives there only) and makes a wheel of it. The runtime stage
# gets the runtime dependencies (from pyproject.toml, installed before any
# source so that a code change reuses that layer), the generated package and
# the source; no compiler, no codegen tools, no tests, no dev keys (see
# .dockerignore).
#
# No container engine runs in CI: tests/test_image.py replays this file's
# steps in fresh virtualenvs, from a build context that honours .dockerignore,
# and starts a service from the result. Keep RUN paths relative to WORKDIR.

FROM python:3.11-slim AS builder
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml ./
COPY tools/requirements.py ./tools/
RUN python tools/requirements.py runtime > requirements.txt \
    && python tools/requirements.py codegen runtime --only grpcio-tools googleapis-common-protos > codegen.txt \
    && pip install --no-cache-dir -r codegen.txt
COPY tools/__init__.py tools/genproto.py ./tools/
COPY protos ./protos
RUN python -m tools.genproto --no-stubs \
    && pip wheel --no-cache-dir --no-deps --wheel-dir dist ./gen

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH=/app
RUN groupadd --system --gid 10001 flowpilot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin flowpilot
WORKDIR /app
COPY --from=builder /build/requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt && rm requirements.txt
COPY --from=builder /build/dist ./dist
RUN pip install --no-cache-dir --no-deps dist/flowpilot_protos-*.whl && rm -r dist && pip check
COPY alembic.ini ./
COPY migrations ./migrations
COPY services ./services
COPY gateway ./gateway
USER 10001:10001
EXPOSE 50051 50052 50053 50054 8080
CMD ["python", "-m", "services.settings"]
