// Package contract serves the descriptors of genservice's .proto files with their
// comments. The generated Go code carries descriptors without comments, so reflection
// built on it gives grpcurl `describe` nothing to show; contract.binpb is the same files
// built by buf with their source info (./dev generate writes it, ./dev check-generated
// keeps it in step with proto/), and Resolver lets reflection serve those instead.
package contract

import (
	_ "embed"
	"fmt"
	"sync"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

//go:embed contract.binpb
var image []byte

var (
	once  sync.Once
	files *protoregistry.Files
	err   error
)

// Protoset returns the contract's descriptors, with those of the google.rpc error
// details its statuses carry, as a serialized FileDescriptorSet: what grpcurl -protoset
// reads when it cannot use reflection (a caller without a certificate).
func Protoset() ([]byte, error) {
	var set descriptorpb.FileDescriptorSet
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(image, &set); err != nil {
		return nil, err
	}
	var add func(fd protoreflect.FileDescriptor)
	seen := map[string]bool{}
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range set.File {
		seen[f.GetName()] = true
	}
	add((&errdetails.ErrorInfo{}).ProtoReflect().Descriptor().ParentFile())
	return proto.Marshal(&set)
}

// Files returns the contract's file descriptors, comments included.
func Files() (*protoregistry.Files, error) {
	once.Do(func() {
		var set descriptorpb.FileDescriptorSet
		// A buf image is a FileDescriptorSet with extra fields, which proto ignores.
		if err = (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(image, &set); err != nil {
			err = fmt.Errorf("contract descriptors: %w", err)
			return
		}
		files, err = protodesc.NewFiles(&set)
	})
	return files, err
}

// Resolver finds descriptors in the contract first (with comments) and then in the
// global registry (health, reflection and other libraries' files).
type Resolver struct{ contract *protoregistry.Files }

// NewResolver loads the contract's descriptors.
func NewResolver() (*Resolver, error) {
	f, err := Files()
	if err != nil {
		return nil, err
	}
	return &Resolver{contract: f}, nil
}

// FindFileByPath implements protodesc.Resolver.
func (r *Resolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.contract.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

// FindDescriptorByName implements protodesc.Resolver.
func (r *Resolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.contract.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
