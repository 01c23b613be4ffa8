# namerouter and namerd in one image.
#
#   docker build -t namerouter .
#   docker run -v $PWD/config.yaml:/config.yaml -p 4140:4140 -p 9990:9990 namerouter /config.yaml
#   docker run -v $PWD/namerd.yaml:/namerd.yaml -p 4180:4180 -p 9991:9991 namerouter namerd /namerd.yaml
#
# BASE is any image with Python >= 3.11 and its venv module: python:3.11-slim by default,
# or a Debian base made locally without a registry (docker/debian-base.sh, see README).
# Inside a container, give servers and admin `ip: 0.0.0.0` (Linkerd's default is loopback).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/namerouter/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY namerouter ./namerouter
COPY namerd ./namerd
# A virtualenv: the same on every base (Debian's own python3 refuses system-wide pip installs).
RUN python3 -m venv /opt/namerouter && pip install . && rm -rf /src
COPY docker/entrypoint.sh /usr/local/bin/namerouter-entrypoint

# Don't run as root; the config is mounted read-only.
RUN useradd --system --no-create-home --uid 10001 namerouter
USER namerouter
WORKDIR /

# Linkerd's defaults: HTTP router 4140, admin 9990; namerd 4180 and admin 9991.
EXPOSE 4140 9990 4180 9991
# SIGTERM (docker stop) drains in-flight requests for at most admin.shutdownGraceMs.
STOPSIGNAL SIGTERM
ENTRYPOINT ["namerouter-entrypoint"]
CMD ["/config.yaml"]
