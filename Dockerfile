# One image for every FlowPilot process; the command picks the service.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app:/app/gen
COPY pyproject.toml ./
COPY services ./services
COPY gateway ./gateway
COPY migrations ./migrations
COPY tools ./tools
COPY protos ./protos
COPY alembic.ini ./
RUN pip install --no-cache-dir . && python -m tools.genproto
RUN useradd --system --uid 10001 flowpilot
USER flowpilot
CMD ["python", "-m", "services.settings"]
