"""A small genservice client in Python (grpcio and protobuf as Debian packages them).

    PYTHONPATH=examples/gen/python python3 examples/python/client.py

The stubs come from examples/run.sh (buf generate --template examples/buf.gen.yaml). The
connection comes from the environment, as examples/run.sh sets it for `genservice demo`:
GENSERVICE_ADDR, GENSERVICE_REVOKED_ADDR (an instance whose backend key the gateway
rejects), GENSERVICE_CA, GENSERVICE_CERT, GENSERVICE_KEY and GENSERVICE_SERVER_NAME
(default localhost). Prints one PASS/FAIL line per check and
"python example: N passed, M failed"; exits 1 on any failure.
"""

import json
import os
import secrets
import sys

import grpc

from google.rpc import error_details_pb2, status_pb2
from livepeer.generation.v1 import error_reason_pb2
from livepeer.generation.v1 import generation_service_pb2 as pb
from livepeer.generation.v1 import generation_service_pb2_grpc as pb_grpc

SERVICE = "livepeer.generation.v1.GenerationService"

# Retry UNAVAILABLE for the unary RPCs, with backoff: genservice returns UNAVAILABLE only
# where a retry is safe. LlmStream is left out, so a stream that already delivered text is
# never replayed behind the caller's back.
UNARY_RPCS = ["TextToImage", "ImageToImage", "ImageToVideo", "Upscale", "AudioToText",
              "SegmentAnything2", "Llm", "ImageToText", "TextToSpeech"]
SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": SERVICE, "method": m} for m in UNARY_RPCS],
        "retryPolicy": {
            "maxAttempts": 3,
            "initialBackoff": "0.5s",
            "maxBackoff": "5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})

# genservice's default response limit (32 MiB): gRPC's default receive limit of 4 MiB is too
# small once inline_media puts result bytes into a response.
MAX_RECEIVE_BYTES = 32 << 20

# Deadlines per pipeline, in seconds: text-to-image takes seconds, an LLM answer longer.
TEXT_TO_IMAGE_DEADLINE = 30
LLM_DEADLINE = 120


def env(name, default=None):
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"python example: set {name}")
    return value


def channel(addr):
    def read(name):
        with open(env(name), "rb") as f:
            return f.read()

    # genservice accepts only TLS 1.3; gRPC's TLS stack negotiates it without being told,
    # and Python's grpc offers no setting to refuse older versions on the client.
    creds = grpc.ssl_channel_credentials(
        root_certificates=read("GENSERVICE_CA"),
        private_key=read("GENSERVICE_KEY"),
        certificate_chain=read("GENSERVICE_CERT"),
    )
    options = [
        # The demo's certificate names localhost and 127.0.0.1; verify the name, connect to
        # the address given.
        ("grpc.ssl_target_name_override", os.environ.get("GENSERVICE_SERVER_NAME", "localhost")),
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ]
    return grpc.secure_channel(addr, creds, options)


def request_metadata():
    """A fresh x-request-id, which genservice logs and echoes, to join its logs and ours."""
    rid = "example-py-" + secrets.token_hex(8)
    return rid, [("x-request-id", rid)]


def reason_name(value):
    """ErrorInfo.reason for an ErrorReason: the enum value's name without its prefix."""
    return error_reason_pb2.ErrorReason.Name(value).removeprefix("ERROR_REASON_")


def status_details(err):
    """Decodes grpc-status-details-bin, the google.rpc.Status genservice puts in the
    trailers, into its detail messages (ErrorInfo, RetryInfo, BadRequest, Help, ...)."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return unpack_details(status_pb2.Status.FromString(value))
    return []


def unpack_details(st):
    known = (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo,
             error_details_pb2.BadRequest, error_details_pb2.Help,
             error_details_pb2.QuotaFailure)
    out = []
    for any_detail in st.details:
        for cls in known:
            if any_detail.Is(cls.DESCRIPTOR):
                msg = cls()
                any_detail.Unpack(msg)
                out.append(msg)
                break
        else:
            out.append(any_detail)  # a type this client does not know; keep it as Any
    return out


def describe(code, message, details, indent="      "):
    lines = [f"{indent}code {code.name}: {message}"]
    for d in details:
        if isinstance(d, error_details_pb2.ErrorInfo):
            lines.append(f"{indent}ErrorInfo reason={d.reason} domain={d.domain}")
            lines += [f"{indent}  {k}: {d.metadata[k]}" for k in sorted(d.metadata)]
        elif isinstance(d, error_details_pb2.RetryInfo):
            lines.append(f"{indent}RetryInfo retry after {d.retry_delay.ToTimedelta().total_seconds()}s")
        elif isinstance(d, error_details_pb2.BadRequest):
            lines += [f"{indent}BadRequest {v.field}: {v.description}" for v in d.field_violations]
        elif isinstance(d, error_details_pb2.Help):
            lines += [f"{indent}Help {l.description} ({l.url})" for l in d.links]
        elif isinstance(d, error_details_pb2.QuotaFailure):
            lines += [f"{indent}QuotaFailure {v.subject}: {v.description}" for v in d.violations]
        else:
            lines.append(f"{indent}detail {d.type_url}")
    print("\n".join(lines))


def describe_error(err):
    describe(err.code(), err.details(), status_details(err))


def find(details, cls):
    return next((d for d in details if isinstance(d, cls)), None)


def retry_delay_seconds(details):
    """How long the server asks the caller to wait before retrying, or None."""
    ri = find(details, error_details_pb2.RetryInfo)
    return ri.retry_delay.ToTimedelta().total_seconds() if ri else None


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def text_to_image(stub):
    rid, md = request_metadata()
    resp, call = stub.TextToImage.with_call(
        pb.TextToImageRequest(prompt="a lighthouse at dusk", seed=7),
        timeout=TEXT_TO_IMAGE_DEADLINE, metadata=md)
    echoed = [v for k, v in call.initial_metadata() if k == "x-request-id"]
    print(f"      x-request-id sent {rid}, echoed {','.join(echoed)}")
    expect(resp.images, "no images in the response")
    for m in resp.images:
        print(f"      image {m.url} (seed {m.seed}, nsfw {m.nsfw})")
        expect(m.url, "an image without a URL")


def llm_stream(stub):
    _, md = request_metadata()
    req = pb.LlmRequest(
        messages=[
            pb.LlmMessage(role=pb.LLM_ROLE_SYSTEM, content="You answer in one short sentence."),
            pb.LlmMessage(role=pb.LLM_ROLE_USER, content="Say hi"),
        ],
        max_tokens=64,
    )
    print("      text: ", end="", flush=True)
    finish = ""
    try:
        for msg in stub.LlmStream(req, timeout=LLM_DEADLINE, metadata=md):
            for choice in msg.choices:
                # Print each piece the moment it arrives: that is the point of the stream.
                print(choice.delta.content, end="", flush=True)
                finish = choice.finish_reason or finish
    finally:
        print()
    print(f"      finish_reason {finish}")
    expect(finish, "the stream ended OK without a finish_reason")


def expect_error(call):
    try:
        call()
    except grpc.RpcError as err:
        describe_error(err)
        return err, status_details(err)
    raise CheckFailed("the call succeeded; expected it to fail")


def revoked_key(stub):
    _, md = request_metadata()
    err, details = expect_error(lambda: stub.TextToImage(
        pb.TextToImageRequest(prompt="a lighthouse at dusk"), timeout=TEXT_TO_IMAGE_DEADLINE, metadata=md))
    expect(err.code() == grpc.StatusCode.UNAUTHENTICATED, f"code {err.code().name}, want UNAUTHENTICATED")
    info = find(details, error_details_pb2.ErrorInfo)
    want = reason_name(error_reason_pb2.ERROR_REASON_UPSTREAM_API_KEY_REJECTED)
    expect(info and info.reason == want, f"reason {info and info.reason!r}, want {want}")
    expect(find(details, error_details_pb2.Help), "no google.rpc.Help in the details")


def invalid_request(stub):
    _, md = request_metadata()
    # An empty prompt and too many images: genservice refuses both before calling upstream.
    err, details = expect_error(lambda: stub.TextToImage(
        pb.TextToImageRequest(prompt="", num_images_per_prompt=1000), timeout=TEXT_TO_IMAGE_DEADLINE, metadata=md))
    expect(err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"code {err.code().name}, want INVALID_ARGUMENT")
    info = find(details, error_details_pb2.ErrorInfo)
    want = reason_name(error_reason_pb2.ERROR_REASON_INVALID_REQUEST)
    expect(info and info.reason == want, f"reason {info and info.reason!r}, want {want}")
    bad = find(details, error_details_pb2.BadRequest)
    expect(bad and any(v.field == "prompt" for v in bad.field_violations),
           "no BadRequest field violation for prompt")


def retry_info_decodes():
    """Runs the decoding path on a status that carries RetryInfo. The demo's gateway
    simulator always answers, so no RetryInfo outcome (OVERLOADED, UPSTREAM_UNAVAILABLE, ...)
    can be provoked from a client: this builds the google.rpc.Status genservice sends for
    UPSTREAM_UNAVAILABLE, as the bytes of grpc-status-details-bin, and decodes those."""
    st = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0],
                           message="the Livepeer gateway is unavailable (HTTP 503); retry later")
    st.details.add().Pack(error_details_pb2.ErrorInfo(
        reason=reason_name(error_reason_pb2.ERROR_REASON_UPSTREAM_UNAVAILABLE),
        domain="genservice", metadata={"upstreamStatus": "503"}))
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(1500)
    st.details.add().Pack(retry)
    received = status_pb2.Status.FromString(st.SerializeToString())
    details = unpack_details(received)
    describe(grpc.StatusCode.UNAVAILABLE, received.message, details)
    delay = retry_delay_seconds(details)
    expect(delay == 1.5, f"retry delay {delay}, want 1.5 s")


def main():
    good = channel(env("GENSERVICE_ADDR"))
    revoked = channel(env("GENSERVICE_REVOKED_ADDR"))
    stub, revoked_stub = pb_grpc.GenerationServiceStub(good), pb_grpc.GenerationServiceStub(revoked)
    checks = [
        ("TextToImage returns an image URL", lambda: text_to_image(stub)),
        ("LlmStream streams text until finish_reason", lambda: llm_stream(stub)),
        ("rejected backend key: UNAUTHENTICATED, UPSTREAM_API_KEY_REJECTED with Help", lambda: revoked_key(revoked_stub)),
        ("invalid request: INVALID_ARGUMENT, INVALID_REQUEST with BadRequest", lambda: invalid_request(stub)),
        ("RetryInfo decodes from a status that carries it", retry_info_decodes),
    ]
    passed = failed = 0
    for name, check in checks:
        try:
            check()
        except grpc.RpcError as err:
            describe_error(err)
            print(f"FAIL  {name}: {err.code().name}: {err.details()}")
            failed += 1
        except CheckFailed as err:
            print(f"FAIL  {name}: {err}")
            failed += 1
        else:
            print(f"PASS  {name}")
            passed += 1
    good.close()
    revoked.close()
    print(f"python example: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
