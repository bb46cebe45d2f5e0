#!/usr/bin/env bash
# Runs the benchmark workloads (see BENCHMARKS.md) against the bridge and
# against the baseline r3labs server, one after the other with the same
# parameters, on loopback. Each run starts a fresh server, passes its pid to
# bridge-load (RSS and CPU from /proc) and stops it afterwards; the raw
# JSON results go to a results directory, and a comparison table is printed.
#
#   bench/run.sh                        # every workload, both targets, 3 times
#   WORKLOADS="W1 W3" REPEAT=1 bench/run.sh
#   LOAD_FLAGS="--duration 20s" bench/run.sh
#   BRIDGE_FLAGS="--queue-size 1024" bench/run.sh
#
# Environment: WORKLOADS (default: the presets W1 W1b W2 W3 W4 W5, then
# four supplementary runs: W1-r50 is W1 at 50 events/s, a load this machine
# sustains, for latency; W4-stall6s is W4 with a stall of 6 s, short enough
# for history to fill the gap; W4-nostall is W4 without the stalled client,
# the rate W4's healthy subscribers should keep; W5-nostall is W5 without
# the 2,000 that never read, its idle publish latency. W5 and W5-nostall run
# against the bridge only: the baseline has no eviction, and would freeze
# for good), REPEAT (rounds, default 3; the table shows
# medians), OUT (results directory, default bench/results/<UTC time>),
# LOAD_FLAGS (extra bridge-load flags), BRIDGE_FLAGS (extra bridge flags),
# RUN_TIMEOUT (seconds per run, default 120), BRIDGE_BIN (a bridge binary to
# measure instead of building cmd/bridge: a build of another commit; set
# COMMIT to name it), MAX_LOAD (before each run, wait up to five minutes
# for the 1-minute load average to drop below it; each run's load average
# is written to its .loadavg file either way).
set -euo pipefail

cd "$(dirname "$0")/.."
WORKLOADS=${WORKLOADS:-"W1 W1b W2 W3 W4 W5 W1-r50 W4-stall6s W4-nostall W5-nostall"}
REPEAT=${REPEAT:-3}
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
BIN=bench/bin
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
BRIDGE_BIN=${BRIDGE_BIN:-}
MAX_LOAD=${MAX_LOAD:-}
LOAD_FLAGS=${LOAD_FLAGS:-}
BRIDGE_FLAGS=${BRIDGE_FLAGS:-}
BRIDGE_HTTP=127.0.0.1:18080
BRIDGE_GRPC=127.0.0.1:18051
BASELINE_HTTP=127.0.0.1:18090

# Sockets are files: 10,000 subscribers need more than the usual 1,024.
ulimit -n "$(ulimit -Hn)"

mkdir -p "$OUT" "$BIN"
echo "building into $BIN" >&2
go build -o "$BIN/" ./cmd/bridge ./cmd/baseline ./cmd/bridge-load
bridge_bin=${BRIDGE_BIN:-$BIN/bridge}

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown) ($(git status --porcelain 2>/dev/null | wc -l) files changed or new)}"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "kernel: $(uname -sr)"
	echo "go: $(go version)"
	echo "open files: $(ulimit -n)"
	echo "load flags: ${LOAD_FLAGS:-none}"
	echo "bridge flags: ${BRIDGE_FLAGS:-none}"
	echo "bridge binary: ${BRIDGE_BIN:-built from the tree}"
} | tee "$OUT/machine.txt" >&2

# A server left over on one of the ports would be measured instead.
for addr in "$BRIDGE_HTTP" "$BRIDGE_GRPC" "$BASELINE_HTTP"; do
	if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
		echo "something listens on $addr already: stop it first" >&2
		exit 1
	fi
done

# workload_flags prints bridge-load's flags for a name of WORKLOADS.
workload_flags() {
	case $1 in
	W1-r50) echo "--workload W1 --rate 50 --label W1-r50" ;;
	W4-stall6s) echo "--workload W4 --stall-for 6s --label W4-stall6s" ;;
	W4-nostall) echo "--workload W4 --stalled 0 --label W4-nostall" ;;
	W5-nostall) echo "--workload W5 --stalled 0 --label W5-nostall" ;;
	*) echo "--workload $1" ;;
	esac
}

# targets prints the servers a name of WORKLOADS runs against.
targets() {
	case $1 in
	W5 | W5-*) echo bridge ;;
	*) echo bridge baseline ;;
	esac
}

# wait_quiet waits, at most two minutes, until the machine was less than 10 %
# busy for a second: bridge-load shares two cores with the server, and anything
# else running skews both (each result's other_cpu_window_s shows how much).
wait_quiet() {
	local u n s i w q sq b1 t1 b2 t2
	for _ in $(seq 120); do
		read -r _ u n s i w q sq _ </proc/stat
		b1=$((u + n + s + q + sq)) t1=$((u + n + s + i + w + q + sq))
		sleep 1
		read -r _ u n s i w q sq _ </proc/stat
		b2=$((u + n + s + q + sq)) t2=$((u + n + s + i + w + q + sq))
		if (((b2 - b1) * 100 < 10 * (t2 - t1))); then
			return 0
		fi
	done
	echo "   the machine stays busy with something else: measuring anyway" >&2
}

# wait_load waits, at most five minutes, until the 1-minute load average is
# below MAX_LOAD (when set).
wait_load() {
	[[ -n $MAX_LOAD ]] || return 0
	local load
	for _ in $(seq 300); do
		read -r load _ </proc/loadavg
		if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then
			return 0
		fi
		sleep 1
	done
	echo "   the load average stays at $load, over $MAX_LOAD: measuring anyway" >&2
}

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

for round in $(seq "$REPEAT"); do
	for w in $WORKLOADS; do
		for target in $(targets "$w"); do
			log="$OUT/$w-$target-$round"
			wait_load
			wait_quiet
			cut -d' ' -f1-3 /proc/loadavg >"$log.loadavg"
			if [[ $target == bridge ]]; then
				# The admission limits are off: the workloads connect 10,000
				# subscribers in about a second, which --connect-rate would
				# shed, and the baseline has no such limits. BRIDGE_FLAGS
				# come after, so a run can turn them back on.
				# shellcheck disable=SC2086 # BRIDGE_FLAGS are words
				"$bridge_bin" --http-addr "$BRIDGE_HTTP" --grpc-addr "$BRIDGE_GRPC" --log-level warn \
					--max-connections -1 --connect-rate -1 $BRIDGE_FLAGS \
					>"$log.server.log" 2>&1 &
				url="http://$BRIDGE_HTTP"
			else
				"$BIN/baseline" --addr "$BASELINE_HTTP" >"$log.server.log" 2>&1 &
				url="http://$BASELINE_HTTP"
			fi
			server_pid=$!
			echo "== round $round/$REPEAT: $w against $target (pid $server_pid)" >&2
			# shellcheck disable=SC2046,SC2086 # the flags are words
			if ! timeout --kill-after=10 "$RUN_TIMEOUT" "$BIN/bridge-load" $(workload_flags "$w") --target "$target" \
				--url "$url" --grpc-addr "$BRIDGE_GRPC" --pid "$server_pid" --json $LOAD_FLAGS \
				>"$log.json" 2>"$log.log"; then
				echo "   run failed, see $log.log" >&2
				tail -n 5 "$log.log" >&2 || true
				[[ -s $log.json ]] || rm -f "$log.json"
			fi
			stop_server
		done
	done
done

echo >&2
"$BIN/bridge-load" report "$OUT"/*.json | tee "$OUT/table.md"
echo >&2
echo "results in $OUT" >&2
