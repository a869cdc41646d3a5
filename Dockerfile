# syntax=docker/dockerfile:1
# One image for every process of the saga system; the command picks the process:
#   api (default), auth --host 0.0.0.0 --port 7002, orchestrator, service stock|payment|order.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# README.m[d]: the glob lets the build go on while README.md is absent (setuptools only warns).
COPY pyproject.toml README.m[d] ./
COPY contracts/ contracts/
COPY saga/ saga/
COPY services/ services/
# A regular (not editable) install: the runtime stage needs the venv only, not /src.
RUN /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid saga --create-home --home-dir /home/saga --shell /usr/sbin/nologin saga
COPY --from=builder /opt/venv /opt/venv
WORKDIR /home/saga
USER saga:saga
EXPOSE 7001 7002
# Fits the default command (the api); compose sets its own check, or none, for the others.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7001/health', timeout=2)"]
ENTRYPOINT ["saga"]
CMD ["api", "--host", "0.0.0.0", "--port", "7001"]
