#!/usr/bin/env bash
# Interop check from Node.js (@grpc/grpc-js + @grpc/proto-loader, versions pinned in
# interop/node/package.json and package-lock.json): starts `genservice demo` and runs
# interop/node/client.mjs against it.
#
#   bash interop/node.sh [path/to/genservice]   (default: build ./cmd/genservice)
set -euo pipefail

# shellcheck source=interop/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

for tool in node npm; do
	command -v "$tool" >/dev/null || {
		interop_log "interop: $tool is not installed; the Node.js interop check needs Node.js 20 or later"
		exit 1
	}
done

BIN=$(interop_binary "${1:-}")

interop_log "interop: npm ci in interop/node"
# --ignore-scripts: none of the dependencies needs its install script to work here.
(cd "$INTEROP_DIR/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2

interop_start_demo "$BIN"
node "$INTEROP_DIR/node/client.mjs" "$DEMO_ADDR" "$DEMO_REVOKED_ADDR" "$DEMO_CERT_DIR"
