#!/usr/bin/env bash
# Runs the client examples (Go, Python, TypeScript) against `genservice demo`: installs what
# they need when it is missing, generates the Python and TypeScript stubs into examples/gen/
# (not committed), starts the demo, runs each client and stops the demo.
#
#   bash examples/run.sh [path/to/genservice]   (default: build ./cmd/genservice)
#   ./dev examples [path/to/genservice]
#
# Needs Go and Node.js 20 or later. The Python client uses Debian's python3-grpcio and
# python3-protobuf, and generation Debian's protoc and gRPC Python plugin: when they are
# missing and this runs as root, it installs them with apt-get (about half a minute);
# otherwise it says what to install. npm packages come from examples/package-lock.json.
# Prints each client's result line and "examples: N passed, M failed" (N counts clients).
set -euo pipefail

# The demo start and stop helpers are the ones the interop checks use; lib.sh also removes
# the demo and its work directory on exit, however this script ends.
# shellcheck source=interop/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/interop/lib.sh"

EXAMPLES="$REPO_ROOT/examples"
# Debian's packages install for Debian's own interpreter; a python3 earlier on PATH (pyenv,
# a virtualenv) would not see them.
PYTHON=/usr/bin/python3
# Each client gets this long, in seconds, for all its calls; the calls' own deadlines are
# shorter, so this only stops a client that hangs outside a call.
CLIENT_TIMEOUT=180

log() { printf 'examples: %s\n' "$*" >&2; }

for tool in go node npm; do
	command -v "$tool" >/dev/null || {
		log "$tool is not installed; the examples need Go and Node.js 20 or later"
		exit 1
	}
done

debian_ready() {
	[ -x /usr/bin/protoc ] && [ -x /usr/bin/grpc_python_plugin ] && [ -x "$PYTHON" ] &&
		"$PYTHON" -c 'import grpc, google.protobuf' 2>/dev/null
}
DEBIAN_PACKAGES=(protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf)
if ! debian_ready; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		log "missing protoc, grpc_python_plugin or Python's grpc; install the Debian packages: ${DEBIAN_PACKAGES[*]}"
		exit 1
	fi
	log "installing ${DEBIAN_PACKAGES[*]} with apt-get"
	started=$SECONDS
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" >&2
	log "apt-get took $((SECONDS - started)) s"
	debian_ready || {
		log "the Debian packages are installed but $PYTHON still cannot import grpc"
		exit 1
	}
fi
log "$("$PYTHON" -c 'import grpc, google.protobuf as p; print("python", __import__("sys").version.split()[0], "grpcio", grpc.__version__, "protobuf", p.__version__)'); $(protoc --version)"

log "npm ci in examples/"
started=$SECONDS
# --ignore-scripts: none of the dependencies needs its install script (esbuild, under tsx,
# finds its platform binary in the optional package npm installs beside it).
(cd "$EXAMPLES" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
log "npm ci took $((SECONDS - started)) s"

log "generating the Python and TypeScript stubs (buf generate --template examples/buf.gen.yaml)"
# From the repository root: the template's paths are relative to it.
(cd "$REPO_ROOT" && go tool -modfile=tools/go.mod buf generate --template examples/buf.gen.yaml)

log "building the Go example and type-checking the TypeScript one"
(cd "$REPO_ROOT" && go build -o "$INTEROP_WORK/example-go" ./examples/go)
(cd "$EXAMPLES" && npx --no-install tsc -p ts/tsconfig.json)

BIN=$(interop_binary "${1:-}")
interop_start_demo "$BIN"

export GENSERVICE_ADDR=$DEMO_ADDR
export GENSERVICE_REVOKED_ADDR=$DEMO_REVOKED_ADDR
export GENSERVICE_CA=$DEMO_CERT_DIR/ca.crt
export GENSERVICE_CERT=$DEMO_CERT_DIR/client.crt
export GENSERVICE_KEY=$DEMO_CERT_DIR/client.key
export GENSERVICE_SERVER_NAME=localhost

passed=0
failed=0
summaries=()
# run NAME COMMAND...: run one client, its output shown as it comes; it passes when it exits 0.
run() {
	local name=$1 rc=0 out
	shift
	echo
	echo "--- examples: $name"
	out="$INTEROP_WORK/$name.out"
	timeout "$CLIENT_TIMEOUT" "$@" 2>&1 | tee "$out" || rc=$?
	if [ "$rc" -eq 124 ]; then echo "examples: $name did not finish within $CLIENT_TIMEOUT s"; fi
	# The client's own closing line ("go example: 5 passed, 0 failed"), for the summary.
	summaries+=("$(grep -E '^[a-z]+ example: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -1 || echo "$name: no result line (exit status $rc)")")
	if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
run go "$INTEROP_WORK/example-go"
run python env PYTHONPATH="$EXAMPLES/gen/python" PYTHONDONTWRITEBYTECODE=1 "$PYTHON" "$EXAMPLES/python/client.py"
run typescript bash -c 'cd "$1" && exec node --import tsx ts/client.ts' _ "$EXAMPLES"

echo
printf '%s\n' "${summaries[@]}"
echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
