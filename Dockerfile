# Concord container: Python 3.11 slim with FFmpeg and libopus for voice.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libopus0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install --no-cache-dir '.[postgres]'

RUN useradd --create-home concord && mkdir -p /app/data && chown concord /app/data
USER concord
VOLUME ["/app/data"]

# The send-data endpoint and /healthz are off unless HTTP_PORT is set; in a container they must
# listen on every interface to be reachable through a published port.
ENV HTTP_HOST=0.0.0.0
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD python -c "import os, sys, urllib.request; \
port = os.environ.get('HTTP_PORT'); \
sys.exit(0 if not port else urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"

CMD ["python", "-m", "bot", "run"]
