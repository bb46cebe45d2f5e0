#!/usr/bin/env bash
# Runs the built bridge under a mixed load for a long time (10 minutes by
# default) and fails when its memory, goroutines or open files trend up
# (see BENCHMARKS.md, "Soak"). Not part of go test nor of .ci/run.
#
#   bench/soak.sh                       # 10 minutes
#   SOAK_DURATION=30m bench/soak.sh
#   OUT=bench/reference/soak-$(git rev-parse --short HEAD) bench/soak.sh   # a run to keep
#
# The load (bridge-load soak): 20 streams published to round robin at 250
# events/s of 512 bytes (their histories are full within the warm-up) and a
# hot stream at 50/s of 2 KiB; 200 subscribers
# reading 1 to 3 streams for the whole run, 100 that come, read for 0.5 to
# 10 s, go and come back (half of them resuming with Last-Event-ID), and 10
# slow clients on the hot stream that stop reading until the bridge evicts
# them, then resume. Every SOAK_INTERVAL it prints a line with the bridge's
# RSS and open files (/proc/PID), goroutines and heap (its /metrics), and
# writes it to soak.csv. After the run, for each of them, the least-squares
# slope of the samples after SOAK_WARMUP gives its growth over the run; a
# growth over SOAK_MAX_GROWTH percent of its median (and over a floor: 8 MiB
# of RSS, 4 MiB of heap, 25 goroutines or files) fails the run, exit
# status 1.
#
# Environment: SOAK_DURATION (default 10m), SOAK_INTERVAL (1m), SOAK_WARMUP
# (2m), SOAK_MAX_GROWTH (10), SOAK_FLAGS (extra bridge-load soak flags:
# --rate, --readers, ...), BRIDGE_FLAGS (extra bridge flags), OUT (results
# directory, default bench/results/soak-<UTC time>).
set -euo pipefail

cd "$(dirname "$0")/.."
SOAK_DURATION=${SOAK_DURATION:-10m}
SOAK_INTERVAL=${SOAK_INTERVAL:-1m}
SOAK_WARMUP=${SOAK_WARMUP:-2m}
SOAK_MAX_GROWTH=${SOAK_MAX_GROWTH:-10}
SOAK_FLAGS=${SOAK_FLAGS:-}
BRIDGE_FLAGS=${BRIDGE_FLAGS:-}
OUT=${OUT:-bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ)}
BIN=bench/bin
BRIDGE_HTTP=127.0.0.1:18180
BRIDGE_GRPC=127.0.0.1:18151

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT" "$BIN"
echo "building into $BIN" >&2
go build -o "$BIN/" ./cmd/bridge ./cmd/bridge-load

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown) ($(git status --porcelain 2>/dev/null | wc -l) files changed or new)}"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "kernel: $(uname -sr)"
	echo "go: $(go version)"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "soak: $SOAK_DURATION, a sample every $SOAK_INTERVAL, warm-up $SOAK_WARMUP, max growth $SOAK_MAX_GROWTH %"
	echo "soak flags: ${SOAK_FLAGS:-none}"
	echo "bridge flags: ${BRIDGE_FLAGS:-none}"
} | tee "$OUT/machine.txt" >&2

for addr in "$BRIDGE_HTTP" "$BRIDGE_GRPC"; do
	if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
		echo "something listens on $addr already: stop it first" >&2
		exit 1
	fi
done

server_pid=""
stop_server() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 150); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# The bridge with its defaults (a real deployment's), logging warnings.
# shellcheck disable=SC2086 # BRIDGE_FLAGS are words
"$BIN/bridge" --http-addr "$BRIDGE_HTTP" --grpc-addr "$BRIDGE_GRPC" --log-level warn $BRIDGE_FLAGS \
	>"$OUT/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/${BRIDGE_HTTP%:*}/${BRIDGE_HTTP##*:}") 2>/dev/null && break
	sleep 0.1
done

status=0
# shellcheck disable=SC2086 # SOAK_FLAGS are words
"$BIN/bridge-load" soak --url "http://$BRIDGE_HTTP" --grpc-addr "$BRIDGE_GRPC" --pid "$server_pid" \
	--duration "$SOAK_DURATION" --interval "$SOAK_INTERVAL" --warmup "$SOAK_WARMUP" \
	--max-growth "$SOAK_MAX_GROWTH" --csv "$OUT/soak.csv" $SOAK_FLAGS | tee "$OUT/soak.txt" || status=$?
stop_server

go run ./bench/chart -soak "$OUT/soak.csv" -warmup "$SOAK_WARMUP" -max-growth "$SOAK_MAX_GROWTH" -o "$OUT/soak.svg" || true
echo "results in $OUT" >&2
exit "$status"
