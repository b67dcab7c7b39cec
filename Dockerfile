# Two stages: wheels are built in the first (with whatever a build needs), and the runtime
# image gets only the wheels, the code and the collected static files, run by a non-root
# user. Both install with the commands ./run.sh uses (scripts/bootstrap.sh): a venv in .venv,
# then pip install -r requirements.txt (the runtime pins only, no test tools).

FROM python:3.11-slim AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt .
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/app/.venv/bin:$PATH LOG_FORMAT=json PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m venv .venv \
 && .venv/bin/python -m pip install --no-cache-dir --no-index --find-links /wheels \
    -r requirements.txt

COPY . .
RUN SECRET_KEY=build DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost \
    python manage.py collectstatic --noinput -v0 \
 && useradd --create-home --uid 10001 app \
 && install -d -o app -g app /tmp/prometheus
USER app

EXPOSE 8000
# Liveness: the server answers, with a Host that ALLOWED_HOSTS accepts (scripts/healthcheck.py).
HEALTHCHECK --interval=10s --timeout=5s --retries=5 CMD ["python", "scripts/healthcheck.py", "/healthz"]
# The Procfile holds the commands; compose runs its worker and beat lines the same way.
CMD ["bash", "scripts/proc.sh", "web"]
