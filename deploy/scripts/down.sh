#!/usr/bin/env bash
# `make down`: stops what `make up` started (kernel containers included); keeps .bai/ data.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
for name in webserver gateway agent manager envoy appproxy storage; do
  pidfile="$STATE/run/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    say "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
if docker info >/dev/null 2>&1; then
  ids=$(docker ps -aq --filter label=ai.bai.managed=1 --filter "label=ai.bai.agent-id=i-$(hostname -s)")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null && say "removed kernel containers"
fi
exit 0
