# shellcheck shell=bash
# Shared helpers for the interop scripts: find the repository, build or locate the
# genservice binary, start `genservice demo` in the background on free ports, wait until
# it accepts connections, and stop it on exit. Source it; do not run it.
#
# After interop_start_demo succeeds these are set:
#   DEMO_ADDR          host:port of the instance whose backend key the gateway accepts
#   DEMO_REVOKED_ADDR  host:port of the instance whose backend key the gateway rejects
#   DEMO_CERT_DIR      directory with ca.crt, client.crt and client.key
#   DEMO_LOG           the demo's combined stdout and stderr

INTEROP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$INTEROP_DIR/.." && pwd)
INTEROP_WORK=$(mktemp -d "${TMPDIR:-/tmp}/genservice-interop.XXXXXX")
DEMO_PID=""

interop_cleanup() {
	local rc=$?
	interop_stop_demo
	rm -rf "$INTEROP_WORK"
	return "$rc"
}
trap interop_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

interop_log() { printf '%s\n' "$*" >&2; }

# interop_binary [PATH]: print the absolute path of the genservice binary to use. With
# PATH, that file (it must be executable); without, build ./cmd/genservice into the work
# directory.
interop_binary() {
	local bin=${1:-}
	if [ -n "$bin" ]; then
		case $bin in
		/*) ;;
		*) bin="$PWD/$bin" ;;
		esac
		if [ ! -x "$bin" ]; then
			interop_log "interop: $bin is not an executable file"
			return 1
		fi
		printf '%s\n' "$bin"
		return 0
	fi
	interop_log "interop: building ./cmd/genservice"
	(cd "$REPO_ROOT" && go build -o "$INTEROP_WORK/genservice" ./cmd/genservice) || return 1
	printf '%s\n' "$INTEROP_WORK/genservice"
}

# port_accepts PORT: whether something accepts TCP connections on 127.0.0.1:PORT.
port_accepts() {
	# shellcheck disable=SC2016 # $1 expands in the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# free_port [NOT]: print a port on 127.0.0.1 that nothing listens on (and that is not NOT).
# Racy by nature; the demo falls back to a free port if the one given is taken, and
# interop_start_demo reads the addresses the demo actually bound from its output.
free_port() {
	local not=${1:-0} p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if [ "$p" != "$not" ] && ! port_accepts "$p"; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	interop_log "interop: found no free port"
	return 1
}

# interop_start_demo BINARY: start `BINARY demo` in the background and wait (at most
# about 30 s) until both instances accept connections.
interop_start_demo() {
	local bin=$1 p1 p2 deadline good revoked
	p1=$(free_port) || return 1
	p2=$(free_port "$p1") || return 1
	DEMO_CERT_DIR="$INTEROP_WORK/certs"
	DEMO_LOG="$INTEROP_WORK/demo.log"
	: >"$DEMO_LOG" # exists before the background job opens it, for the reads below
	"$bin" demo --cert-dir "$DEMO_CERT_DIR" --listen "127.0.0.1:$p1" --listen-revoked "127.0.0.1:$p2" \
		</dev/null >"$DEMO_LOG" 2>&1 &
	DEMO_PID=$!
	interop_log "interop: started genservice demo (pid $DEMO_PID) on 127.0.0.1:$p1 and 127.0.0.1:$p2"

	deadline=$((SECONDS + 30))
	while :; do
		if ! kill -0 "$DEMO_PID" 2>/dev/null; then
			local st=0
			wait "$DEMO_PID" 2>/dev/null || st=$?
			interop_log "interop: genservice demo exited early (status $st); its output:"
			sed 's/^/    /' "$DEMO_LOG" >&2
			DEMO_PID=""
			return 1
		fi
		# The demo prints the addresses it bound; they differ from the ones asked for
		# when those were taken in the meantime.
		good=$(awk '$1 == "genservice" && $2 ~ /:[0-9]+$/ { print $2; exit }' "$DEMO_LOG") || good=""
		revoked=$(awk '$1 == "genservice" && $2 == "revoked" && $3 ~ /:[0-9]+$/ { print $3; exit }' "$DEMO_LOG") || revoked=""
		DEMO_ADDR=${good:-127.0.0.1:$p1}
		DEMO_REVOKED_ADDR=${revoked:-127.0.0.1:$p2}
		if [ -s "$DEMO_CERT_DIR/client.key" ] &&
			port_accepts "${DEMO_ADDR##*:}" && port_accepts "${DEMO_REVOKED_ADDR##*:}"; then
			break
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			interop_log "interop: genservice demo did not accept connections within 30 s; its output:"
			sed 's/^/    /' "$DEMO_LOG" >&2
			return 1
		fi
		sleep 0.2
	done
	interop_log "interop: demo ready: service $DEMO_ADDR, revoked-key service $DEMO_REVOKED_ADDR, certificates in $DEMO_CERT_DIR"
}

# interop_stop_demo: stop the demo started by interop_start_demo, if it still runs.
interop_stop_demo() {
	[ -n "$DEMO_PID" ] || return 0
	local pid=$DEMO_PID
	DEMO_PID=""
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		interop_log "interop: genservice demo (pid $pid) ignored SIGTERM for 10 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
