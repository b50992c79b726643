# The BedWatch service: `docker build -t bedwatch .`; docker-compose.yml builds and runs it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# uv from PyPI, at the version that wrote uv.lock.
RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall numpy and scipy.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY bedwatch ./bedwatch
COPY ingest ./ingest
COPY detectors ./detectors
COPY alerts ./alerts
COPY simulators ./simulators
RUN uv sync --frozen --no-dev --no-editable

# The service never needs to write its own code or environment.
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin bedwatch
USER bedwatch

ENV PATH=/app/.venv/bin:$PATH
EXPOSE 8080
# `docker compose run --rm bedwatch registry load ...` runs other subcommands in the same image.
ENTRYPOINT ["bedwatch"]
CMD ["run"]
