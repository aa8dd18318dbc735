# syntax=docker/dockerfile:1
# The project image. Every service of docker-compose.yml runs it with its own command:
# `imagegen api | worker | beat | db upgrade | simulator` and `celery ... flower`.

ARG PYTHON_VERSION=3.11

# --- build: a virtual environment with the dependencies, then the project -------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first, exactly as locked (versions and hashes, flower's included; `make lock`
# writes the file from pyproject.toml): a code change does not reinstall them, and two builds
# of one commit get the same packages
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml ./
COPY README.md ./
COPY models ./models
COPY migrations ./migrations
COPY worker ./worker
COPY api ./api
COPY simulator ./simulator
RUN pip install --no-deps . && python -m compileall -q /opt/venv

# --- runtime: the environment only, run as an unprivileged user ----------------------------
FROM python:${PYTHON_VERSION}-slim
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/imagegen imagegen
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMAGEGEN_DATA_DIR=/home/imagegen/data \
    IMAGEGEN_LOG_FORMAT=json
WORKDIR /home/imagegen
USER 10001:10001
# api, worker metrics, flower, simulator
EXPOSE 8000 9108 5555 8090
CMD ["imagegen", "--help"]
