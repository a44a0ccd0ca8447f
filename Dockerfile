# The zdl service image: one image for the API, the coordinator and the block workers (docker-compose.yml
# picks the command). Data sets are mounted at /data (ZDL_DATA_DIR), never baked in.
#
# The base is a build argument so that a machine without Docker Hub can build on its own Python 3.11 image
# (scripts/docker-base-images makes one from Debian packages); it needs `python`, `pip` and `useradd`.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# /cache (ZDL_CACHE_DIR, a named volume in docker-compose.yml) holds the parsed data sets and Numba's
# compiled kernels: the installed package is read-only to the service's user, so Numba cannot cache beside it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZDL_DATA_DIR=/data \
    ZDL_CACHE_DIR=/cache \
    NUMBA_CACHE_DIR=/cache/numba \
    ZDL_MNIST_MIRRORS=""

WORKDIR /app
# Dependencies first, from pyproject.toml alone (README.md is a stub here), so that edits of the code or the
# README reuse this layer instead of reinstalling them.
COPY pyproject.toml ./
RUN mkdir -p zdl api worker && touch README.md zdl/__init__.py api/__init__.py worker/__init__.py \
    && pip install . && pip uninstall -y zdl && rm -rf build *.egg-info
COPY README.md ./
COPY zdl ./zdl
COPY api ./api
COPY worker ./worker
RUN pip install --no-deps . && rm -rf build *.egg-info \
    && useradd --create-home --uid 10001 zdl \
    && mkdir -p /data /cache/numba && chown -R zdl /cache

USER zdl
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
