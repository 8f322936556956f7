# etastream's services (worker, API, monitor, batch jobs) in one image: `docker run etastream <cmd>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM's wheel links OpenMP (libgomp), which the slim image leaves out.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream_features ./stream_features
COPY predictor ./predictor
COPY producers ./producers
RUN pip install . && rm -rf /src/build

# A non-root user owns only what services write: the data dir and the model registry.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/eta eta \
    && mkdir -p /data /models \
    && chown eta:eta /data /models
USER eta
WORKDIR /data

ENV ETA_DATA_DIR=/data/.eta \
    ETA_REGISTRY_DIR=/models \
    ETA_HTTP_HOST=0.0.0.0 \
    ETA_HTTP_PORT=8080
EXPOSE 8080 9108
VOLUME ["/models"]

ENTRYPOINT ["eta"]
CMD ["--help"]
