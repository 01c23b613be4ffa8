#!/bin/sh
# `IMAGE /config.yaml` runs the router; `IMAGE namerd /namerd.yaml` runs namerd;
# `IMAGE namerouter …` / `IMAGE namerd dtab …` run those commands as they are.
case "$1" in
  namerd|namerouter) exec "$@" ;;
  *) exec namerouter "$@" ;;
esac
