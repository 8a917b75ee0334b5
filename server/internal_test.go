package server

// Test hooks for the external test package (the export_test.go pattern: this file is
// compiled into package server only under `go test`, so server_test can reach the few
// internals an end-to-end test needs), plus narrow tests of internals.

import (
	"context"
	"errors"
	"strings"
	"testing"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// RegisterServiceForTest registers an extra service on the server's gRPC server, behind
// the same interceptor chain as GenerationService. Call it before Serve.
func (s *Server) RegisterServiceForTest(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// SetDrainingForTest sets the flag Shutdown sets before GracefulStop, without stopping
// the server, so the SHUTTING_DOWN answer can be observed deterministically.
func (s *Server) SetDrainingForTest(v bool) { s.draining.Store(v) }

// PanicServiceName is the test service whose handlers panic with PanicValue().
const PanicServiceName = "genservice.test.v1.PanicService"

// PanicServiceDesc describes a service with a unary method "Unary" and a server-streaming
// method "Stream", both taking and returning google.protobuf.Empty; impl must be a
// PanicService. GenerationService has no panicking path, so this is how the recovery
// interceptor is driven end to end.
var PanicServiceDesc = grpc.ServiceDesc{
	ServiceName: PanicServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				srv.(PanicService).Panic()
				return &emptypb.Empty{}, nil
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + PanicServiceName + "/Unary"}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(emptypb.Empty)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			srv.(PanicService).Panic()
			return nil
		},
	}},
}

// PanicService is implemented by the test's panicking handler.
type PanicService interface{ Panic() }

// PanicFunc adapts a func to PanicService.
type PanicFunc func()

// Panic implements PanicService.
func (f PanicFunc) Panic() { f() }

// TestUpstreamUnknownErrorIsOpaque: an error the table does not know becomes INTERNAL /
// INTERNAL_ERROR with the request id, and nothing of the error's text.
func TestUpstreamUnknownErrorIsOpaque(t *testing.T) {
	t.Parallel()
	e := Errors{Domain: DefaultErrorDomain}
	err := e.Upstream(errors.New("driver exploded: secret-internal-detail"), "rid-123")
	st := status.Convert(err)
	if st.Code() != codes.Internal {
		t.Fatalf("code = %v, want Internal", st.Code())
	}
	if strings.Contains(st.Message(), "secret-internal-detail") {
		t.Errorf("message leaks the cause: %q", st.Message())
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	if info == nil || info.GetReason() != "INTERNAL_ERROR" || info.GetDomain() != "genservice" || info.GetMetadata()["requestId"] != "rid-123" {
		t.Errorf("ErrorInfo = %v, want INTERNAL_ERROR/genservice with requestId", info)
	}
}

// TestUpstreamFieldPaths: gateway field paths become the request's field names.
func TestUpstreamFieldPaths(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"body.prompt": "prompt",
		"body":        "",
		"prompt":      "prompt",
		"height":      "height",
	} {
		if got := upstreamField(in); got != want {
			t.Errorf("upstreamField(%q) = %q, want %q", in, got, want)
		}
	}
}
