#!/usr/bin/env bash
# Interop check with grpcurl (the version pinned in tools/go.mod): starts `genservice demo`
# and checks reflection, describe, TextToImage, Llm and SegmentAnything2 calls, health,
# the rejected-backend-key error and the missing-client-certificate error as a grpcurl
# user sees them.
#
#   bash interop/grpcurl.sh [path/to/genservice]   (default: build ./cmd/genservice)
set -euo pipefail

# shellcheck source=interop/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

BIN=$(interop_binary "${1:-}")
interop_log "interop: compiling grpcurl (tools/go.mod)"
(cd "$REPO_ROOT" && go tool -modfile=tools/go.mod grpcurl -version) >/dev/null 2>&1 || {
	interop_log "interop: go tool -modfile=tools/go.mod grpcurl does not run"
	exit 1
}
interop_start_demo "$BIN"

SERVICE=livepeer.generation.v1.GenerationService
CA="$DEMO_CERT_DIR/ca.crt"
MTLS=(-cacert "$CA" -cert "$DEMO_CERT_DIR/client.crt" -key "$DEMO_CERT_DIR/client.key")
passed=0
failed=0

# gc NAME ARGS...: run grpcurl with ARGS, leaving its stdout and stderr in OUT and its
# exit status in RC.
gc() {
	local name=$1
	shift
	RC=0
	OUT=$(cd "$REPO_ROOT" && go tool -modfile=tools/go.mod grpcurl -max-time 20 "$@" 2>&1) || RC=$?
	printf '%s\n' "$OUT" >"$INTEROP_WORK/$name.out"
}

# check NAME CONDITION...: PASS if the shell condition holds, else FAIL with grpcurl's output.
check() {
	local name=$1
	shift
	if "$@"; then
		echo "PASS  $name"
		passed=$((passed + 1))
	else
		echo "FAIL  $name (grpcurl exit status $RC); output:"
		printf '%s\n' "$OUT" | sed 's/^/        /'
		failed=$((failed + 1))
	fi
}
has() { grep -qF -- "$1" <<<"$OUT"; }
ok_and_has() {
	[ "$RC" -eq 0 ] || return 1
	local s
	for s in "$@"; do has "$s" || return 1; done
}
failed_with() {
	[ "$RC" -ne 0 ] || return 1
	local s
	for s in "$@"; do has "$s" || return 1; done
}

# (a) reflection lists the service.
gc list "${MTLS[@]}" "$DEMO_ADDR" list
check "list (reflection) includes $SERVICE" ok_and_has "$SERVICE"

# (b) describe shows the service and its RPCs.
gc describe "${MTLS[@]}" "$DEMO_ADDR" describe "$SERVICE"
check "describe $SERVICE" ok_and_has "service GenerationService" "rpc TextToImage" "rpc LlmStream"
check "  ... with the contract's comments (what a caller must know)" ok_and_has "TLS 1.3" "x-request-id" "Takes the same request as Llm"

# (c) a real call through the gateway simulator.
gc text-to-image "${MTLS[@]}" -d '{"prompt":"a red fox","seed":3}' "$DEMO_ADDR" "$SERVICE/TextToImage"
check "TextToImage returns images with a url" ok_and_has '"images"' '"url"'

# (c2) enums by name in protojson: the role goes in and comes back as LLM_ROLE_*.
gc llm "${MTLS[@]}" -d '{"messages":[{"role":"LLM_ROLE_USER","content":"Say hi"}]}' "$DEMO_ADDR" "$SERVICE/Llm"
check "Llm takes and returns roles as enum names" ok_and_has '"role": "LLM_ROLE_ASSISTANT"' '"content": "'

# (c3) typed SAM2 prompts and masks (the image is a 1×1 PNG, base64 as protojson has bytes).
gc sam2 "${MTLS[@]}" -d '{"image":{"content":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="},"point_coords":[{"x":0.5,"y":0.5}],"point_labels":[1],"box":{"x1":0,"y1":0,"x2":1,"y2":1}}' "$DEMO_ADDR" "$SERVICE/SegmentAnything2"
check "SegmentAnything2 takes typed prompts and returns masks with their sizes" ok_and_has '"masks"' '"height":' '"width":' '"scores"'

# (d) health.
gc health "${MTLS[@]}" "$DEMO_ADDR" grpc.health.v1.Health/Check
check "grpc.health.v1.Health/Check is SERVING" ok_and_has '"SERVING"'

# (e) the instance whose backend key the gateway rejects.
gc revoked "${MTLS[@]}" -format-error -d '{"prompt":"a red fox","seed":3}' "$DEMO_REVOKED_ADDR" "$SERVICE/TextToImage"
check "TextToImage with a rejected backend key: Unauthenticated, UPSTREAM_API_KEY_REJECTED" \
	failed_with '"code": 16' '"reason": "UPSTREAM_API_KEY_REJECTED"' '"domain": "genservice"' '"upstreamStatus": "401"' '"keyFingerprint": "sha256:'
gc revoked-text "${MTLS[@]}" -d '{"prompt":"a red fox"}' "$DEMO_REVOKED_ADDR" "$SERVICE/TextToImage"
check "  ... as grpcurl prints it by default: Code: Unauthenticated" failed_with "Code: Unauthenticated" "UPSTREAM_API_KEY_REJECTED"

# (f) no client certificate. Reflection needs a client certificate too, so grpcurl reads
# the schema from the .proto files here instead, plus google.rpc.ErrorInfo to decode the
# status details.
PROTO=(-import-path "$REPO_ROOT/proto" -proto livepeer/generation/v1/generation_service.proto
	-import-path "$INTEROP_DIR/node" -proto rpc_status.proto)
gc no-client-cert -cacert "$CA" "${PROTO[@]}" -format-error -d '{"prompt":"a red fox"}' "$DEMO_ADDR" "$SERVICE/TextToImage"
check "TextToImage without a client certificate: Unauthenticated, CLIENT_CERTIFICATE_REQUIRED" \
	failed_with '"code": 16' '"reason": "CLIENT_CERTIFICATE_REQUIRED"' '"domain": "genservice"'
gc no-client-cert-text -cacert "$CA" "${PROTO[@]}" -d '{"prompt":"a red fox"}' "$DEMO_ADDR" "$SERVICE/TextToImage"
check "  ... as grpcurl prints it by default: Code: Unauthenticated" failed_with "Code: Unauthenticated" "CLIENT_CERTIFICATE_REQUIRED"
# (g) the demo's own hint: the protoset it writes beside the certificates, as printed.
gc no-client-cert-protoset -protoset "$DEMO_CERT_DIR/genservice.protoset" -cacert "$CA" -d '{"prompt":"x"}' "$DEMO_ADDR" "$SERVICE/TextToImage"
check "  ... with the demo's protoset, as its hint prints: ErrorInfo decoded" failed_with "Code: Unauthenticated" '"reason": "CLIENT_CERTIFICATE_REQUIRED"'

echo "grpcurl interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
