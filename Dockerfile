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

CMD ["python", "-m", "bot", "run"]
