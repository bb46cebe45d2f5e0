#!/usr/bin/env bash
# Compares two bridge binaries on one W6 ingest mode, run after run: A, B,
# A, B, ... each against a fresh bridge (memory engine) on loopback, and
# prints each run's row of bridge-load's report (publish rate, the bridge's
# CPU per event, loss), then the medians of A's runs and of B's. The
# machine's speed drifts by a fifth from one minute to the next, which a
# series of A runs followed by B runs would credit to the binaries;
# alternating spreads the drift over both. Not part of go test nor of
# .ci/run.
#
#   go build -o /tmp/bridge-before ./cmd/bridge     # at the commit before
#   go build -o /tmp/bridge-after ./cmd/bridge      # at the commit after
#   bench/ab.sh stream 4 /tmp/bridge-before /tmp/bridge-after
#   bench/ab.sh batch 3 /tmp/bridge-before /tmp/bridge-after --batch-size 100
#
# Arguments: MODE (unary, batch or stream: bridge-load's --mode), ROUNDS,
# BINARY_A, BINARY_B, then extra bridge-load flags. Environment:
# BRIDGE_HTTP, BRIDGE_GRPC (default 127.0.0.1:18080, :18051), OUT (a
# directory to keep each run's JSON result in; default a temporary one).
set -euo pipefail

if (($# < 4)); then
	sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
fi
mode=$1 rounds=$2 a=$3 b=$4
shift 4
cd "$(dirname "$0")/.."
BRIDGE_HTTP=${BRIDGE_HTTP:-127.0.0.1:18080}
BRIDGE_GRPC=${BRIDGE_GRPC:-127.0.0.1:18051}
OUT=${OUT:-}
mkdir -p bench/bin
go build -o bench/bin/ ./cmd/bridge-load
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[[ -z $OUT ]] || mkdir -p "$OUT"

for addr in "$BRIDGE_HTTP" "$BRIDGE_GRPC"; do
	if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
		echo "something listens on $addr already: stop it first" >&2
		exit 1
	fi
done

dir=${OUT:-$tmp}
for round in $(seq "$rounds"); do
	for side in A B; do
		bin=$a
		[[ $side == A ]] || bin=$b
		"$bin" --http-addr "$BRIDGE_HTTP" --grpc-addr "$BRIDGE_GRPC" --log-level warn \
			--max-connections -1 --connect-rate -1 >"$tmp/bridge.log" 2>&1 &
		pid=$!
		for _ in $(seq 100); do
			(exec 3<>"/dev/tcp/${BRIDGE_HTTP%:*}/${BRIDGE_HTTP##*:}") 2>/dev/null && break
			sleep 0.1
		done
		result=$dir/$mode-$side-$round.json
		echo "== round $round/$rounds: $side ($bin)" >&2
		if ! timeout --kill-after=10 120 bench/bin/bridge-load --workload W6 --mode "$mode" \
			--label "W6-$mode-$side" --url "http://$BRIDGE_HTTP" --grpc-addr "$BRIDGE_GRPC" \
			--pid "$pid" --json "$@" >"$result" 2>"$tmp/load.log"; then
			echo "   run failed:" >&2
			tail -n 5 "$tmp/load.log" >&2
			rm -f "$result"
		fi
		kill "$pid"
		wait "$pid" 2>/dev/null || true
		[[ ! -s $result ]] || bench/bin/bridge-load report "$result" | tail -n 1
	done
done
echo
echo "Medians (A: $a, B: $b):"
bench/bin/bridge-load report "$dir"/*.json
