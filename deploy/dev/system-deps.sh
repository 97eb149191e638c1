#!/usr/bin/env bash
# Make sure the system programs Kopilka's local stack needs are present: Java 17+ and Maven (to
# fetch and run the Kafka broker), the PostgreSQL server, Redis (rate limits shared by ingress
# processes), kcat (the tests read the public event topic with a non-Python Kafka client),
# promtool (Debian's `prometheus` package: the alert rules and their unit tests are checked by
# it), docker-compose (validates deploy/compose/docker-compose.yml; needs no Docker daemon) and
# chromium with chromium-driver (tests/e2e/test_dashboard.py drives the dashboard in it).
# As root, missing ones are installed from Debian's packages; otherwise we say what to install.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
# Only some tests need these (deploy/, the dashboard's browser test): without root, their
# absence is said, not fatal.
checkers=()
command -v promtool >/dev/null 2>&1 || checkers+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || checkers+=(docker-compose)
command -v chromium >/dev/null 2>&1 || checkers+=(chromium)
command -v chromedriver >/dev/null 2>&1 || checkers+=(chromium-driver)
if [ -z "${REDIS_URL:-}" ]; then
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
fi
if [ -z "${DATABASE_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
    && ! command -v postgres >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ "$(id -u)" -ne 0 ] && [ ${#checkers[@]} -gt 0 ]; then
  echo "some tests need these Debian packages (they skip without): ${checkers[*]}" >&2
  checkers=()
fi
missing+=("${checkers[@]}")
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "kopilka needs these Debian packages: ${missing[*]}" >&2
  echo "install them (sudo apt-get install ${missing[*]}) or set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL" >&2
  exit 1
fi
echo "installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's package starts its own cluster on 5432; Kopilka runs its own server, so stop that one.
if printf '%s\n' "${missing[@]}" | grep -qx postgresql; then
  (service postgresql stop || true) >/dev/null 2>&1
fi
# Likewise Redis: Kopilka starts its own redis-server on a port of its choosing.
if printf '%s\n' "${missing[@]}" | grep -qx redis-server; then
  (service redis-server stop || true) >/dev/null 2>&1
fi
# And the prometheus package's server: only promtool is wanted here (tests start their own).
if printf '%s\n' "${missing[@]}" | grep -qx prometheus; then
  (service prometheus stop || true) >/dev/null 2>&1
fi
