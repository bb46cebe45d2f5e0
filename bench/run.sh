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
#   WORKLOADS="W6 W6-batch W6-stream W6-nats" bench/run.sh   # ingest
#
# Environment: WORKLOADS (default: the presets W1 W1b W2 W3 W4 W5, then
# four supplementary runs: W1-r50 is W1 at 50 events/s, a load this machine
# sustains, for latency; W4-stall6s is W4 with a stall of 6 s, short enough
# for history to fill the gap; W4-nostall is W4 without the stalled client,
# the rate W4's healthy subscribers should keep; W5-nostall is W5 without
# the 2,000 that never read, its idle publish latency. W5 and W5-nostall run
# against the bridge only: the baseline has no eviction, and would freeze
# for good. Then W6, ingest: unary Publish against the baseline's POST
# /publish. Bridge-only variants of W6, not in the default list: W6-batch
# (PublishBatch of 100), W6-stream (PublishStream), and W6-nats,
# W6-nats-batch, W6-nats-stream: two bridges on one nats-server (JetStream,
# file storage), publishing on one and reading on the other; the report
# compares them with the baseline's W6), REPEAT (rounds, default 3; the table shows
# medians), OUT (results directory, default bench/results/<UTC time>),
# LOAD_FLAGS (extra bridge-load flags), BRIDGE_FLAGS (extra bridge flags),
# RUN_TIMEOUT (seconds per run, default 120), BRIDGE_BIN (a bridge binary to
# measure instead of building cmd/bridge: a build of another commit; set
# COMMIT to name it), MAX_LOAD (before each run, wait up to five minutes
# for the 1-minute load average to drop below it; each run's load average
# is written to its .loadavg file either way), NATS_BIN (the nats-server of
# the W6-nats workloads; default: built from the module go.mod requires),
# BRIDGE_HTTP, BRIDGE_GRPC, BASELINE_HTTP, READER_HTTP, READER_GRPC,
# NATS_ADDR (the loopback addresses used; defaults 127.0.0.1:18080, :18051,
# :18090, :18081, :18052, :18222).
set -euo pipefail

cd "$(dirname "$0")/.."
WORKLOADS=${WORKLOADS:-"W1 W1b W2 W3 W4 W5 W1-r50 W4-stall6s W4-nostall W5-nostall W6"}
REPEAT=${REPEAT:-3}
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
BIN=bench/bin
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
BRIDGE_BIN=${BRIDGE_BIN:-}
MAX_LOAD=${MAX_LOAD:-}
LOAD_FLAGS=${LOAD_FLAGS:-}
BRIDGE_FLAGS=${BRIDGE_FLAGS:-}
BRIDGE_HTTP=${BRIDGE_HTTP:-127.0.0.1:18080}
BRIDGE_GRPC=${BRIDGE_GRPC:-127.0.0.1:18051}
BASELINE_HTTP=${BASELINE_HTTP:-127.0.0.1:18090}
# The NATS workloads: the second bridge, which the subscribers read, and the
# nats-server both bridges use.
NATS_BIN=${NATS_BIN:-}
READER_HTTP=${READER_HTTP:-127.0.0.1:18081}
READER_GRPC=${READER_GRPC:-127.0.0.1:18052}
NATS_ADDR=${NATS_ADDR:-127.0.0.1:18222}

# Sockets are files: 10,000 subscribers need more than the usual 1,024.
ulimit -n "$(ulimit -Hn)"

mkdir -p "$OUT" "$BIN"
echo "building into $BIN" >&2
go build -o "$BIN/" ./cmd/bridge ./cmd/baseline ./cmd/bridge-load
bridge_bin=${BRIDGE_BIN:-$BIN/bridge}
nats_bin=$NATS_BIN
if [[ -z $nats_bin && " $WORKLOADS " == *" W6-nats"* ]]; then
	go build -o "$BIN/nats-server" github.com/nats-io/nats-server/v2
	nats_bin=$BIN/nats-server
fi

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
for addr in "$BRIDGE_HTTP" "$BRIDGE_GRPC" "$BASELINE_HTTP" "$READER_HTTP" "$READER_GRPC" "$NATS_ADDR"; do
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
	W6-batch | W6-nats-batch) echo "--workload W6 --mode batch --batch-size 100 --label $1" ;;
	W6-stream | W6-nats-stream) echo "--workload W6 --mode stream --label $1" ;;
	W6-nats) echo "--workload W6 --label $1" ;;
	*) echo "--workload $1" ;;
	esac
}

# targets prints the servers a name of WORKLOADS runs against.
targets() {
	case $1 in
	W5 | W5-* | W6-*) echo bridge ;;
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

# server_pid is the measured server; helper_pids are the NATS workloads'
# reading bridge and nats-server, stopped after it, in that order.
server_pid=""
helper_pids=()
nats_dir=""
stop_pid() {
	if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
		kill -TERM "$1" 2>/dev/null || true
		for _ in $(seq 150); do
			kill -0 "$1" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$1" 2>/dev/null || true
		wait "$1" 2>/dev/null || true
	fi
}
stop_server() {
	stop_pid "$server_pid"
	server_pid=""
	for pid in "${helper_pids[@]}"; do
		stop_pid "$pid"
	done
	helper_pids=()
	if [[ -n $nats_dir ]]; then
		rm -rf "$nats_dir"
		nats_dir=""
	fi
}

# wait_port waits, at most 20 s, until something accepts connections at $1.
wait_port() {
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "   nothing listens on $1 after 20 s" >&2
	return 1
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# speed prints how fast the machine runs now: the ns/op of three runs of a
# small CPU-bound Go benchmark of the bridge (about 40 when this machine is
# quiet, 60 to 100 while other tenants load the host, which /proc/stat does
# not show). The ratios pair runs of one round; rounds at very different
# speeds shift them (BENCHMARKS.md, "The machine's state moves the ratios").
speed() {
	go test -run '^$' -bench '^BenchmarkMarshalAnswer$' -count 3 ./internal/bridge 2>/dev/null |
		awk '/^BenchmarkMarshalAnswer/ { printf "%s%s", sep, $3; sep = " " }'
}

for round in $(seq "$REPEAT"); do
	echo "round $round speed: $(speed) ns/op (BenchmarkMarshalAnswer)" | tee -a "$OUT/machine.txt" >&2
	for w in $WORKLOADS; do
		for target in $(targets "$w"); do
			log="$OUT/$w-$target-$round"
			wait_load
			wait_quiet
			cut -d' ' -f1-3 /proc/loadavg >"$log.loadavg"
			engine_flags=()
			url=""
			if [[ $w == W6-nats* ]]; then
				# A nats-server and a second bridge, whose /events the
				# subscribers read; the events are published to the first,
				# whose CPU is measured.
				nats_dir=$(mktemp -d)
				"$nats_bin" -a "${NATS_ADDR%:*}" -p "${NATS_ADDR##*:}" -js -sd "$nats_dir" >"$log.nats.log" 2>&1 &
				helper_pids+=($!)
				wait_port "$NATS_ADDR"
				engine_flags=(--engine nats --nats-url "nats://$NATS_ADDR")
				# shellcheck disable=SC2086 # BRIDGE_FLAGS are words
				"$bridge_bin" --http-addr "$READER_HTTP" --grpc-addr "$READER_GRPC" --log-level warn \
					--max-connections -1 --connect-rate -1 "${engine_flags[@]}" $BRIDGE_FLAGS \
					>"$log.reader.log" 2>&1 &
				helper_pids=("$!" "${helper_pids[@]}")
				wait_port "$READER_HTTP"
				url="http://$READER_HTTP"
			fi
			if [[ $target == bridge ]]; then
				# The admission limits are off: the workloads connect 10,000
				# subscribers in about a second, which --connect-rate would
				# shed, and the baseline has no such limits. BRIDGE_FLAGS
				# come after, so a run can turn them back on.
				# shellcheck disable=SC2086 # BRIDGE_FLAGS are words
				"$bridge_bin" --http-addr "$BRIDGE_HTTP" --grpc-addr "$BRIDGE_GRPC" --log-level warn \
					--max-connections -1 --connect-rate -1 "${engine_flags[@]}" $BRIDGE_FLAGS \
					>"$log.server.log" 2>&1 &
				url=${url:-http://$BRIDGE_HTTP}
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
