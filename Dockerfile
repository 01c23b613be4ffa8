# namerouter: `docker build -t namerouter .`
#             `docker run -v $PWD/config.yaml:/config.yaml -p 4140:4140 -p 9990:9990 namerouter /config.yaml`
# Inside a container, give servers and admin `ip: 0.0.0.0` (Linkerd's default is loopback).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY namerouter ./namerouter
COPY namerd ./namerd
RUN pip install . && rm -rf /src

# Don't run as root; the config is mounted read-only.
RUN useradd --system --no-create-home --uid 10001 namerouter
USER namerouter
WORKDIR /

# Linkerd's defaults: HTTP router 4140, admin 9990.
EXPOSE 4140 9990
# SIGTERM (docker stop) drains in-flight requests for at most admin.shutdownGraceMs.
STOPSIGNAL SIGTERM
ENTRYPOINT ["namerouter"]
CMD ["/config.yaml"]
