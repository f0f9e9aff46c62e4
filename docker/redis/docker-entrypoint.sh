#!/bin/sh
# Entrypoint of pwt-ci/redis, as the official redis image's: options or a *.conf alone mean
# redis-server; as root, own /data and re-run as redis; then exec the command.
set -eu

case "${1:-}" in -* | *.conf) set -- redis-server "$@" ;; esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Official builds default to protected-mode no; Debian's to yes, which refuses clients from
# outside the container. Turn it off unless a config file (which then decides) comes first.
if [ "${1:-}" = redis-server ]; then
  case "${2:--}" in -*) shift; set -- redis-server --protected-mode no "$@" ;; esac
fi

exec "$@"
