package contract

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// The protoset grpcurl reads without reflection resolves the service and the error
// details its statuses carry.
func TestProtoset(t *testing.T) {
	raw, err := Protoset()
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("the protoset does not resolve: %v", err)
	}
	for _, name := range []string{"livepeer.generation.v1.GenerationService", "google.rpc.ErrorInfo", "google.rpc.RetryInfo", "google.rpc.BadRequest"} {
		if _, err := files.FindDescriptorByName(protoreflect.FullName(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
