#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, no password) and Redis
# (127.0.0.1:6379) are running for the test suite.  Installs them with apt only when
# their binaries are missing; starts them directly (no systemd needed).  Idempotent.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_SECONDS=30

say() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()   # may still work if the services are already up; privileged steps will fail
fi

# Never prompt for a password; never hang on a connection.
export PGCONNECT_TIMEOUT=5
unset PGPASSWORD PGSERVICE PGSSLMODE 2>/dev/null || true

pg_ready()  { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }
pg_query()  { psql -X -w -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"; }
pg_works()  { pg_query -tAc 'select 1' >/dev/null 2>&1; }
redis_ok()  { [ "$(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

# -- install when missing ---------------------------------------------------------------
pg_versions() {
    # installed server major versions, newest last
    local d
    for d in /usr/lib/postgresql/*/bin/postgres; do
        if [ -x "$d" ]; then basename "$(dirname "$(dirname "$d")")"; fi
    done | sort -n
}

need=()
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1 \
        || ! command -v psql >/dev/null 2>&1 || [ -z "$(pg_versions)" ]; then
    need+=(postgresql)
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    need+=(redis-server)
fi
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and apt-get is not available"
    say "installing ${need[*]} with apt-get"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 \
        install "${need[@]}"
fi

# -- PostgreSQL -------------------------------------------------------------------------
PG_VER=""
PG_CLUSTER=""

find_cluster() {
    # Sets PG_VER/PG_CLUSTER to the cluster configured on $PG_PORT, if any.
    local line
    line="$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2, $4; exit}')"
    if [ -n "$line" ]; then
        read -r PG_VER PG_CLUSTER PG_STATUS <<<"$line"
        return 0
    fi
    return 1
}

if pg_ready; then
    say "PostgreSQL answers on $PG_HOST:$PG_PORT"
    find_cluster || true
else
    if ! find_cluster; then
        PG_VER="$(pg_versions | tail -n 1)"
        PG_CLUSTER=main
        [ -n "$PG_VER" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
        if pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VER" '$1 == v && $2 == "main" {f=1} END {exit !f}'; then
            die "PostgreSQL cluster $PG_VER/main exists but not on port $PG_PORT (see pg_lsclusters)"
        fi
        say "creating PostgreSQL cluster $PG_VER/main on port $PG_PORT"
        "${SUDO[@]}" pg_createcluster -p "$PG_PORT" "$PG_VER" main >/dev/null
        PG_STATUS=down
    fi
    # The socket directory lives on /run, which may be empty on a machine without systemd.
    "${SUDO[@]}" install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    if [ "${PG_STATUS:-down}" != "online" ]; then
        say "starting PostgreSQL cluster $PG_VER/$PG_CLUSTER"
        "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" start \
            || say "pg_ctlcluster start failed (see /var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log)"
    else
        say "PostgreSQL cluster $PG_VER/$PG_CLUSTER is online but not ready yet"
    fi
fi

# -- Redis ------------------------------------------------------------------------------
if redis_ok; then
    say "Redis answers on $REDIS_HOST:$REDIS_PORT"
else
    say "starting redis-server on $REDIS_HOST:$REDIS_PORT"
    # --dir: a writable place (nothing is saved there with --save "" and no AOF).
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "${TMPDIR:-/tmp}" \
        || say "redis-server failed to start"
fi

# -- wait (bounded) ---------------------------------------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
until pg_ready && redis_ok; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        missing=()
        pg_ready || missing+=("PostgreSQL on $PG_HOST:$PG_PORT")
        redis_ok || missing+=("Redis on $REDIS_HOST:$REDIS_PORT")
        die "not reachable after ${WAIT_SECONDS}s: ${missing[*]}"
    fi
    sleep 1
done

# -- PostgreSQL: user postgres over TCP without a password ------------------------------
if ! pg_works; then
    [ -n "$PG_VER" ] || die "cannot connect as $PG_USER to $PG_HOST:$PG_PORT and no local cluster on port $PG_PORT to configure"
    hba="$(pg_conftool -s "$PG_VER" "$PG_CLUSTER" show hba_file 2>/dev/null || true)"
    [ -n "$hba" ] || hba="/etc/postgresql/$PG_VER/$PG_CLUSTER/pg_hba.conf"
    "${SUDO[@]}" test -f "$hba" || die "pg_hba.conf not found at $hba"
    marker="# vmflow scripts/services.sh: trust local TCP for the test suite"
    if "${SUDO[@]}" grep -qxF "$marker" "$hba"; then
        say "pg_hba.conf already has the trust lines; reloading"
    else
        say "configuring trust auth for 127.0.0.1/32 and ::1/128 in $hba"
        "${SUDO[@]}" cp -p "$hba" "$hba.vmflow.bak"
        tmp="$(mktemp)"
        # First matching line wins: put the trust lines before every other rule.
        { printf '%s\n' "$marker" \
                 "host    all    all    127.0.0.1/32    trust" \
                 "host    all    all    ::1/128         trust" ""
          "${SUDO[@]}" cat "$hba"; } >"$tmp"
        # shellcheck disable=SC2016  # $1/$2 expand in the inner sh, on purpose
        "${SUDO[@]}" sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"
        rm -f "$tmp"
    fi
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" reload
    for _ in $(seq 1 10); do pg_works && break; sleep 1; done
    pg_works || die "cannot connect to PostgreSQL as $PG_USER on $PG_HOST:$PG_PORT without a password: $(pg_query -tAc 'select 1' 2>&1 | head -n 1)"
fi
can_create="$(pg_query -tAc "select rolsuper or rolcreatedb from pg_roles where rolname = current_user" 2>/dev/null || true)"
[ "$can_create" = "t" ] || die "PostgreSQL role $PG_USER cannot CREATE DATABASE"
say "PostgreSQL: $(pg_query -tAc 'show server_version' 2>/dev/null | head -n 1), role $PG_USER can create databases"
say "Redis: $(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' | awk -F: '$1 == "redis_version" {print $2}')"

echo "VMFLOW_TEST_POSTGRES_URL=postgresql://$PG_USER@$PG_HOST:$PG_PORT/postgres"
echo "VMFLOW_TEST_REDIS_URL=redis://$REDIS_HOST:$REDIS_PORT/0"
