#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on loopback, starting the machine's own servers if not.
set -euo pipefail
pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || python3 - <<'PY' 2>/dev/null
import socket; socket.create_connection(("127.0.0.1", 5432), 1).close()
PY
}
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_ok; then
  echo "services: démarrage de PostgreSQL"
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_ok && break; sleep 1; done
fi
if ! redis_ok; then
  echo "services: démarrage de Redis"
  if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis_ok && break; sleep 1; done
fi
pg_ok || { echo "services: PostgreSQL ne répond pas sur 127.0.0.1:5432" >&2; exit 1; }
redis_ok || { echo "services: Redis ne répond pas sur 127.0.0.1:6379" >&2; exit 1; }
echo "services: PostgreSQL et Redis répondent"
