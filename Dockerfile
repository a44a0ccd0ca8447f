# The zdl service image: one image for the API, the coordinator and the block workers (docker-compose.yml
# picks the command). Data sets are mounted at /data (ZDL_DATA_DIR), never baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZDL_DATA_DIR=/data \
    ZDL_CACHE_DIR=/cache \
    ZDL_MNIST_MIRRORS=""

WORKDIR /app
# Dependencies first, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p zdl api worker && touch zdl/__init__.py api/__init__.py worker/__init__.py \
    && pip install . && pip uninstall -y zdl
COPY zdl ./zdl
COPY api ./api
COPY worker ./worker
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 zdl \
    && mkdir -p /data /cache && chown zdl /cache

USER zdl
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
