# warnd in a container: slim Python, a non-root user, `warnd run` as the entry point.
# Without WARND_DATABASE_URL it starts the embedded PostgreSQL in /var/lib/warnd (a volume).
FROM python:3.11-slim

# Speech for calls and loudspeakers: espeak-ng (the offline default, voice cmn) and sox.
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng sox \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --home-dir /var/lib/warnd --shell /usr/sbin/nologin warnd
WORKDIR /app
COPY pyproject.toml README.md ./
COPY warnd ./warnd
COPY channels ./channels
COPY rosters ./rosters
COPY config ./config
RUN pip install --no-cache-dir . && chown -R warnd:warnd /var/lib/warnd

USER warnd
ENV WARND_DATA_DIR=/var/lib/warnd \
    WARND_POLICY=/app/config/policy.toml \
    WARND_HTTP_HOST=0.0.0.0 \
    WARND_HTTP_PORT=8379
VOLUME ["/var/lib/warnd"]
EXPOSE 8379
ENTRYPOINT ["warnd"]
CMD ["run"]
