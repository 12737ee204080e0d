# One image for every Greenlight process (server, worker, runner, migrate); the command picks.
FROM python:3.12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY runner ./runner
COPY migrations ./migrations
RUN pip install --no-cache-dir .
# Server and worker run unprivileged; the runner service overrides the user because it talks
# to the Docker socket (see docker-compose.yml).
RUN useradd --system --create-home greenlight && mkdir -p /var/lib/greenlight && chown greenlight /var/lib/greenlight
USER greenlight
ENV GREENLIGHT_DATA_DIR=/var/lib/greenlight
EXPOSE 8080
CMD ["greenlight", "server", "--host", "0.0.0.0", "--port", "8080"]
