#!/bin/bash
# Install and start everything the test suite needs on a Debian machine without systemd:
# PostgreSQL (role/database greenlight, password auth on 127.0.0.1:5432), Redis on 127.0.0.1:6379,
# a Docker engine, and the local test image. Idempotent: skips whatever is already installed or running.
# Usage: scripts/services.sh        (as root)
set -euo pipefail

cd "$(dirname "$0")/.."
LOG_DIR=/var/log/greenlight
mkdir -p "$LOG_DIR"

say() { echo "services: $*"; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts daemons)"

# Only one copy at a time (two concurrent runs would race on apt, dockerd and debootstrap).
# Anything that may leave a daemon behind (apt postinst, pg_ctlcluster, redis-server, dockerd) runs
# with `9>&-`, or the daemon would inherit the lock and hold it forever.
exec 9>/var/lock/greenlight-services.lock
flock 9

# --- packages -------------------------------------------------------------------------------
# chromium: the browser tests (tests/browser) drive Debian's /usr/bin/chromium through Playwright.
PACKAGES=(postgresql redis-server docker.io debootstrap git iproute2 python3 python3-venv chromium openssh-server)
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$LOG_DIR/apt.log" 2>&1 || { tail -20 "$LOG_DIR/apt.log"; die "apt-get update failed"; }
    apt-get install -y -q "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 9>&- \
        || { tail -20 "$LOG_DIR/apt.log"; die "apt-get install failed (log: $LOG_DIR/apt.log)"; }
else
    say "packages present"
fi

# --- PostgreSQL -----------------------------------------------------------------------------
PG_VERSION="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" {print $1}' | sort -V | tail -1)"
if [ -z "$PG_VERSION" ]; then
    PG_VERSION="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)"
    [ -n "$PG_VERSION" ] || die "no PostgreSQL server version found in /usr/lib/postgresql"
    say "creating PostgreSQL $PG_VERSION cluster main"
    pg_createcluster --port 5432 "$PG_VERSION" main >/dev/null
fi
PG_CONF_DIR="/etc/postgresql/$PG_VERSION/main"
pg_status() { pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $4}'; }

pg_restart_needed=0
pg_reload_needed=0
if [ "$(pg_conftool -s "$PG_VERSION" main show port 2>/dev/null || echo 5432)" != 5432 ]; then
    pg_conftool "$PG_VERSION" main set port 5432
    pg_restart_needed=1
fi
listen="$(pg_conftool -s "$PG_VERSION" main show listen_addresses 2>/dev/null || echo localhost)"
case ",${listen// /}," in
    *,localhost,* | *,127.0.0.1,* | *,\*,* | *,0.0.0.0,*) ;;
    *) pg_conftool "$PG_VERSION" main set listen_addresses "localhost,$listen"; pg_restart_needed=1 ;;
esac
# pg_hba.conf is first-match: put a password rule for the greenlight role on top.
HBA="$PG_CONF_DIR/pg_hba.conf"
if ! grep -qE '^host[[:space:]]+all[[:space:]]+greenlight[[:space:]]+127\.0\.0\.1/32[[:space:]]+(md5|scram-sha-256)' "$HBA"; then
    sed -i '1i # greenlight test suite (scripts/services.sh)\nhost    all    greenlight    127.0.0.1/32    scram-sha-256' "$HBA"
    pg_reload_needed=1
fi

case "$(pg_status)" in
    online*)
        if [ "$pg_restart_needed" -eq 1 ]; then
            say "restarting PostgreSQL $PG_VERSION"; pg_ctlcluster "$PG_VERSION" main restart 9>&-
        elif [ "$pg_reload_needed" -eq 1 ]; then
            pg_ctlcluster "$PG_VERSION" main reload 9>&-
        fi
        say "PostgreSQL $PG_VERSION running" ;;
    *)
        say "starting PostgreSQL $PG_VERSION"
        pg_ctlcluster "$PG_VERSION" main start 9>&- \
            || { tail -20 "/var/log/postgresql/postgresql-$PG_VERSION-main.log" 2>/dev/null; die "PostgreSQL failed to start"; } ;;
esac
for _ in $(seq 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL not accepting connections on 127.0.0.1:5432"

as_postgres_psql() { (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -At "$@"); }
as_postgres_psql -c "
SET password_encryption = 'scram-sha-256';
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'greenlight') THEN
        CREATE ROLE greenlight LOGIN SUPERUSER PASSWORD 'greenlight';
    END IF;
END \$\$;
ALTER ROLE greenlight WITH LOGIN SUPERUSER PASSWORD 'greenlight';"
if [ "$(as_postgres_psql -c "SELECT 1 FROM pg_database WHERE datname = 'greenlight'")" != 1 ]; then
    say "creating database greenlight"
    as_postgres_psql -c 'CREATE DATABASE greenlight OWNER greenlight'
fi
PGPASSWORD=greenlight psql -X -q -At -h 127.0.0.1 -p 5432 -U greenlight -d greenlight -c 'SELECT 1' >/dev/null \
    || die "cannot log in as greenlight@127.0.0.1:5432 with a password (check $HBA)"
say "PostgreSQL ready: greenlight:greenlight@127.0.0.1:5432/greenlight"

# --- Redis ----------------------------------------------------------------------------------
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
if redis_up; then
    say "Redis running"
else
    say "starting Redis"
    mkdir -p /var/lib/greenlight/redis
    # No persistence: a failing background save must never block writes in tests.
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --dir /var/lib/greenlight/redis --logfile "$LOG_DIR/redis.log" --pidfile /var/lib/greenlight/redis/redis.pid 9>&-
    for _ in $(seq 40); do redis_up && break; sleep 0.25; done
    redis_up || { tail -20 "$LOG_DIR/redis.log"; die "Redis did not answer on 127.0.0.1:6379"; }
fi

# --- Docker ---------------------------------------------------------------------------------
docker_up() { docker info >/dev/null 2>&1; }
start_dockerd() {
    # setsid + nohup: the daemon must outlive this script and the CI job's process group.
    setsid nohup dockerd "$@" >"$LOG_DIR/dockerd.log" 2>&1 </dev/null 9>&- &
    local pid=$!
    for _ in $(seq 120); do
        docker_up && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}
if docker_up; then
    say "Docker running"
elif pgrep -x dockerd >/dev/null; then
    say "dockerd is running but not answering yet; waiting"
    for _ in $(seq 120); do docker_up && break; sleep 0.5; done
    docker_up || die "dockerd is running but 'docker info' fails (see $LOG_DIR/dockerd.log)"
    say "Docker ready"
else
    # Without systemd nothing mounts the cgroup hierarchy on some machines.
    if ! mountpoint -q /sys/fs/cgroup && command -v cgroupfs-mount >/dev/null; then
        cgroupfs-mount || true
    fi
    rm -f /var/run/docker.pid  # stale after an unclean stop; dockerd refuses to start otherwise
    say "starting dockerd (log $LOG_DIR/dockerd.log)"
    if ! start_dockerd; then
        tail -5 "$LOG_DIR/dockerd.log"
        grep -qi iptables "$LOG_DIR/dockerd.log" || die "dockerd did not start within 60 s"
        say "dockerd failed on iptables; retrying with --iptables=false (containers get no NAT to outside)"
        rm -f /var/run/docker.pid
        start_dockerd --iptables=false || { tail -20 "$LOG_DIR/dockerd.log"; die "dockerd did not start"; }
    fi
    say "Docker ready"
fi

# --- test image -----------------------------------------------------------------------------
sh tests/images/build-test-image.sh
say "all services up"
