#!/usr/bin/env bash
# Compares chinwag with three other servers under the same verifying load:
# the async-std tutorial's chat server a-chat, redis-server pub/sub and
# nats-server. chinwag-bench speaks each one's protocol (--dialect, see
# benches/load/src/dialect.rs for how each scenario maps onto it) and checks
# every delivery of every run; this script starts the four servers on
# loopback, runs one scenario against each, ROUNDS times with the order
# rotated every round, and prints per server the medians of deliveries per
# server CPU-second, deliveries per second and p99 latency, and chinwag's
# ratio to each other server.
#
# Run it from anywhere in the repository, with the scenario and its options
# as arguments (anything chinwag-bench takes after the server options):
#
#   benches/compare/run.sh dm -c 100 -m 10000 -k 3
#   ROUNDS=5 benches/compare/run.sh fanout -m 2000
#   benches/compare/run.sh dm -c 100 -m 600 --rate 60000      # open loop
#
# Only dm and fanout work with the other servers. What it needs and does:
#   - installs redis-server and nats-server with apt-get if missing (with
#     sudo unless root);
#   - builds chinwag and chinwag-bench in release (cargo, honouring
#     CARGO_TARGET_DIR), and a-chat from the registry copy of async-std
#     1.13's examples/a-chat (fetched by cargo if absent) into $ACHAT_DIR,
#     its hard-coded port 8080 replaced by $ACHAT_PORT;
#   - starts the four servers on 127.0.0.1 (redis with --save '' and
#     --appendonly no), keeps them up across rounds, and stops them at exit;
#   - writes every run's JSON line, tagged with server and round, to
#     $RESULTS (one JSON object a line), and each run's full output beside it.
# It exits non-zero if any run failed to verify.
#
# Environment (all optional):
#   ROUNDS=3              rounds; each runs the scenario once per server
#   CHINWAG_BIN=PATH      the chinwag binary (default: the release build)
#   CHINWAG_ARGS="..."    extra `chinwag serve` flags, e.g. "--threads 1"
#   SERVERS="chinwag tutorial redis nats"   which servers, chinwag first
#   CHINWAG_PORT=17000 ACHAT_PORT=18080 REDIS_PORT=16379 NATS_PORT=14222
#   ACHAT_DIR=/tmp/cmp-achat   where a-chat is built (kept between runs)
#   OUT_DIR=/tmp/cmp-results   where results and logs go
#   RUN_TIMEOUT=900       seconds one bench run may take before it is killed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-chinwag tutorial redis nats}
CHINWAG_PORT=${CHINWAG_PORT:-17000}
ACHAT_PORT=${ACHAT_PORT:-18080}
REDIS_PORT=${REDIS_PORT:-16379}
NATS_PORT=${NATS_PORT:-14222}
ACHAT_DIR=${ACHAT_DIR:-/tmp/cmp-achat}
OUT_DIR=${OUT_DIR:-/tmp/cmp-results}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
CHINWAG_ARGS=${CHINWAG_ARGS:-}

if [[ $# -eq 0 ]]; then
    echo "usage: $0 SCENARIO [OPTIONS...]   e.g. $0 dm -c 100 -m 10000 -k 3" >&2
    exit 2
fi
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || ((ROUNDS > 100)); then
    echo "ROUNDS must be 1..100" >&2
    exit 2
fi

log() { printf '== %s\n' "$*" >&2; }

# --- what the servers need --------------------------------------------------

SUDO=
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || missing+=(nats-server)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

log "building chinwag and chinwag-bench (release)"
if [[ -n ${CHINWAG_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p chinwag-bench)
else
    (cd "$ROOT" && cargo build --release --quiet -p chinwag -p chinwag-bench)
    CHINWAG_BIN=$TARGET_DIR/release/chinwag
fi
BENCH=$TARGET_DIR/release/chinwag-bench

build_achat() {
    mkdir -p "$ACHAT_DIR/src"
    cat >"$ACHAT_DIR/Cargo.toml" <<'EOF'
# async-std 1.13's examples/a-chat, built by benches/compare/run.sh.
[package]
name = "a-chat"
version = "0.1.0"
edition = "2018"
publish = false

[dependencies]
async-std = "1.13"
futures = "0.3"

[profile.release]
debug = "line-tables-only"

[workspace]
EOF
    # The example's source comes with the async-std crate in cargo's registry.
    local cargo_home=${CARGO_HOME:-$HOME/.cargo} example
    example=$(ls -d "$cargo_home"/registry/src/*/async-std-1.13.*/examples/a-chat 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $example ]]; then
        printf 'fn main() {}\n' >"$ACHAT_DIR/src/main.rs"
        (cd "$ACHAT_DIR" && cargo fetch --quiet)
        example=$(ls -d "$cargo_home"/registry/src/*/async-std-1.13.*/examples/a-chat | sort -V | tail -n 1)
    fi
    cp "$example"/main.rs "$example"/server.rs "$example"/client.rs "$ACHAT_DIR/src/"
    sed -i "s/127\.0\.0\.1:8080/127.0.0.1:$ACHAT_PORT/" "$ACHAT_DIR/src/server.rs" "$ACHAT_DIR/src/client.rs"
    grep -q "127.0.0.1:$ACHAT_PORT" "$ACHAT_DIR/src/server.rs" || {
        echo "could not set a-chat's port in $ACHAT_DIR/src/server.rs" >&2
        exit 1
    }
    log "building a-chat from $example"
    (cd "$ACHAT_DIR" && CARGO_TARGET_DIR=$ACHAT_DIR/target cargo build --release --quiet)
}
if [[ " $SERVERS " == *" tutorial "* ]]; then build_achat; fi
ACHAT_BIN=$ACHAT_DIR/target/release/a-chat

# --- the servers --------------------------------------------------------------

declare -A PORT=([chinwag]=$CHINWAG_PORT [tutorial]=$ACHAT_PORT [redis]=$REDIS_PORT [nats]=$NATS_PORT)
declare -A PID=()
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=${RESULTS:-$OUT_DIR/$STAMP-$1.jsonl}
LOGS=$OUT_DIR/$STAMP-$1-logs
mkdir -p "$LOGS"

stop_servers() {
    local server pid
    for server in "${!PID[@]}"; do
        pid=${PID[$server]}
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

# Whether something listens on 127.0.0.1:$1 (ss when there is one, else a
# connection, which every server here shrugs off).
listening() {
    if command -v ss >/dev/null; then
        ss -Hltn "sport = :$1" | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

start() {
    local server=$1 port=${PORT[$1]}
    if listening "$port"; then
        echo "port $port (for $server) is already in use: choose another with the environment" >&2
        exit 1
    fi
    case $server in
    chinwag)
        # shellcheck disable=SC2086 # CHINWAG_ARGS is a list of flags.
        "$CHINWAG_BIN" serve --listen "127.0.0.1:$port" $CHINWAG_ARGS >"$LOGS/chinwag.log" 2>&1 &
        ;;
    tutorial) "$ACHAT_BIN" server >/dev/null 2>"$LOGS/a-chat.log" & ;;
    redis)
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --daemonize no --logfile '' >"$LOGS/redis.log" 2>&1 &
        ;;
    nats) "$NATS_SERVER" -a 127.0.0.1 -p "$port" >"$LOGS/nats.log" 2>&1 & ;;
    *)
        echo "unknown server $server (SERVERS may hold chinwag tutorial redis nats)" >&2
        exit 2
        ;;
    esac
    PID[$server]=$!
    for _ in $(seq 100); do
        listening "$port" && return
        kill -0 "${PID[$server]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$server did not listen on 127.0.0.1:$port (logs in $LOGS)" >&2
    exit 1
}

read -r -a servers <<<"$SERVERS"
for server in "${servers[@]}"; do start "$server"; done
log "servers up: $(for s in "${servers[@]}"; do printf '%s=127.0.0.1:%s(pid %s) ' "$s" "${PORT[$s]}" "${PID[$s]}"; done)"

# --- the runs ------------------------------------------------------------------

failed=0
n=${#servers[@]}
for round in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
        server=${servers[$(((i + round - 1) % n))]}
        if ! kill -0 "${PID[$server]}" 2>/dev/null; then
            echo "$server (pid ${PID[$server]}) is gone" >&2
            exit 1
        fi
        log "round $round/$ROUNDS: $server: $*"
        out=$LOGS/round$round-$server.out
        rc=0
        timeout "$RUN_TIMEOUT" "$BENCH" --dialect "$server" --addr "127.0.0.1:${PORT[$server]}" \
            --server-pid "${PID[$server]}" "$@" >"$out" 2>"$out.err" || rc=$?
        json=$(tail -n 1 "$out")
        [[ $json == \{* ]] || json=null
        printf '{"server":"%s","round":%d,"exit":%d,"result":%s}\n' \
            "$server" "$round" "$rc" "$json" >>"$RESULTS"
        if ((rc != 0)); then
            failed=$((failed + 1))
            echo "$server, round $round: chinwag-bench exited $rc:" >&2
            tail -n 5 "$out.err" >&2
        fi
    done
done

# --- the summary ------------------------------------------------------------------

# The value of one numeric key in each of `server`'s verified runs, sorted.
values() {
    grep "\"server\":\"$1\"" "$RESULTS" | grep '"exit":0' |
        grep -o "\"$2\":[-0-9.eE+]*" | cut -d: -f2 | sort -g || true
}
median() {
    awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.7g\n", m }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }

KEYS=(deliveries_per_server_cpu_sec deliveries_per_sec latency_p99_ms)
declare -A MED=()
for server in "${servers[@]}"; do
    for key in "${KEYS[@]}"; do MED[$server.$key]=$(values "$server" "$key" | median); done
done
echo
echo "scenario: $*   rounds: $ROUNDS   results: $RESULTS"
printf '%-9s %5s %16s %14s %10s   %s\n' server runs "deliv/server-CPU-s" "deliv/s" "p99 ms" \
    "chinwag ÷ server: CPU-eff, deliv/s, p99"
for server in "${servers[@]}"; do
    runs=$(grep -c "\"server\":\"$server\".*\"exit\":0" "$RESULTS" || true)
    c=chinwag
    printf '%-9s %5s %18s %14s %10s   %s %s %s\n' "$server" "$runs" \
        "${MED[$server.${KEYS[0]}]}" "${MED[$server.${KEYS[1]}]}" "${MED[$server.${KEYS[2]}]}" \
        "$(ratio "${MED[$c.${KEYS[0]}]:--}" "${MED[$server.${KEYS[0]}]}")" \
        "$(ratio "${MED[$c.${KEYS[1]}]:--}" "${MED[$server.${KEYS[1]}]}")" \
        "$(ratio "${MED[$c.${KEYS[2]}]:--}" "${MED[$server.${KEYS[2]}]}")"
done
echo "(medians over verified runs; for p99 a ratio below 1 means chinwag's is lower)"
if ((failed)); then
    echo "$failed run(s) failed; their output is in $LOGS" >&2
    exit 1
fi
