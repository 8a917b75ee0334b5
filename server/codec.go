package server

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	protov2 "google.golang.org/protobuf/proto"
)

// decodeCapturingCodec is grpc's proto codec, except that a request message that fails
// to decode (invalid UTF-8 in a string, truncated, nested too deeply) does not fail the
// call inside grpc, where it would become a bare INTERNAL that no interceptor sees, no
// log line reports and no metric counts. Instead the message is left empty, the error is
// kept beside it, and the interceptors answer INVALID_ARGUMENT with details once the
// caller is identified and admitted (takeDecodeError).
type decodeCapturingCodec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

// decodeErrors maps a request message (a pointer) to its decode error until the
// interceptors take it. Entries live for the few microseconds between the codec and the
// first interceptor (unary) or the stream's RecvMsg (streaming).
var decodeErrors sync.Map

func (decodeCapturingCodec) Name() string { return proto.Name }

func (decodeCapturingCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (decodeCapturingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := protoCodec.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(protov2.Message)
	if !ok {
		return err
	}
	protov2.Reset(m)
	decodeErrors.Store(v, fmt.Errorf("the request does not decode as %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
	return nil
}

// takeDecodeError returns and forgets the decode error of req, if any.
func takeDecodeError(req any) error {
	if v, ok := decodeErrors.LoadAndDelete(req); ok {
		return v.(error)
	}
	return nil
}
