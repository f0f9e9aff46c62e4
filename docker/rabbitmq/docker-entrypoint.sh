#!/bin/sh
# Entrypoint of pwt-ci/rabbitmq. As root: write the default user from RABBITMQ_DEFAULT_USER /
# RABBITMQ_DEFAULT_PASS into conf.d (used on first boot, as the official image), make the
# Erlang cookie before anything can race for it, own the data directory, re-run as rabbitmq.
# RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS is read by rabbitmq-server itself.
set -eu

case "${1:-}" in -*) set -- rabbitmq-server "$@" ;; esac

if [ "${1:-}" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
  conf=/etc/rabbitmq/conf.d/20-default-user.conf
  rm -f "$conf"
  if [ -n "${RABBITMQ_DEFAULT_USER:-}" ] || [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then
    {
      [ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER"
      [ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS"
      [ -z "${RABBITMQ_DEFAULT_VHOST:-}" ] || echo "default_vhost = $RABBITMQ_DEFAULT_VHOST"
    } >"$conf"
    chown rabbitmq:rabbitmq "$conf" && chmod 600 "$conf"
  fi
  cookie=/var/lib/rabbitmq/.erlang.cookie
  if [ ! -s "$cookie" ]; then
    od -An -N15 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F >"$cookie"
    chmod 400 "$cookie"
  fi
  find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq:rabbitmq '{}' +
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
fi

exec "$@"
