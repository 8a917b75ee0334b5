// Package openapicheck validates requests recorded by livepeertest against
// the gateway's OpenAPI 3.1 spec (shared/livepeer/gateway.openapi.yaml), so
// tests prove that what the service sends upstream is what the real
// gateway accepts, independently of the simulator's own validation.
//
// It uses kin-openapi's openapi3filter, which reads OpenAPI 3.1 and
// validates JSON and multipart/form-data bodies with JSON Schema 2020-12.
package openapicheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"genservice/livepeer/livepeertest"
)

// Checker validates recorded requests against a loaded spec. It is safe for
// concurrent use.
type Checker struct {
	doc *openapi3.T
}

// Load reads and validates the OpenAPI document at specPath.
//
// Request-body schemas of the spec leave additionalProperties open, but
// Studio validates the same schemas with additionalProperties false
// (UPSTREAM.md §4.2), so Load closes them: an unknown field fails Check
// just as it gets a 422 from Studio.
func Load(specPath string) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("openapicheck: load %s: %w", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapicheck: invalid spec %s: %w", specPath, err)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody == nil || op.RequestBody.Value == nil {
				continue
			}
			for _, mt := range op.RequestBody.Value.Content {
				closeObject(mt.Schema)
			}
		}
	}
	return &Checker{doc: doc}, nil
}

// closeObject sets additionalProperties false on an object schema that
// does not say anything about additional properties.
func closeObject(ref *openapi3.SchemaRef) {
	if ref == nil || ref.Value == nil || !ref.Value.Type.Is("object") {
		return
	}
	ap := &ref.Value.AdditionalProperties
	if ap.Has == nil && ap.Schema == nil {
		f := false
		ap.Has = &f
	}
}

// Check validates one recorded request: that its pipeline is an operation
// of the spec for its method, that its path ends with that operation's path
// (the base path, e.g. /api/beta/generate, is not part of the spec), the
// Authorization header (a bearer token must be present; its value is the
// simulator's business), the content type, and the JSON or multipart body
// against the operation's schema: required fields, types, unknown fields.
func (c *Checker) Check(r livepeertest.Request) error {
	path := "/" + r.Pipeline
	if r.Path != "" && !strings.HasSuffix(r.Path, path) {
		return fmt.Errorf("openapicheck: path %q does not end with %q", r.Path, path)
	}
	item := c.doc.Paths.Value(path)
	if item == nil {
		return fmt.Errorf("openapicheck: %s is not in the spec", path)
	}
	method := r.Method
	if method == "" {
		method = http.MethodPost
	}
	op := item.GetOperation(method)
	if op == nil {
		return fmt.Errorf("openapicheck: %s %s is not in the spec", method, path)
	}
	req, err := http.NewRequest(method, "http://gateway"+path, bytes.NewReader(r.Body))
	if err != nil {
		return fmt.Errorf("openapicheck: %w", err)
	}
	req.Header = r.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	input := &openapi3filter.RequestValidationInput{
		Request: req,
		Route: &routers.Route{
			Spec: c.doc, Path: path, PathItem: item, Method: method, Operation: op,
		},
		Options: &openapi3filter.Options{
			AuthenticationFunc:  requireBearer,
			MultiError:          true,
			SkipSettingDefaults: true,
		},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		return fmt.Errorf("openapicheck: %s %s: %w", method, path, err)
	}
	return nil
}

// CheckAll checks every request and joins the failures.
func (c *Checker) CheckAll(reqs []livepeertest.Request) error {
	var errs []error
	for i, r := range reqs {
		if err := c.Check(r); err != nil {
			errs = append(errs, fmt.Errorf("request %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// requireBearer implements the spec's HTTPBearer scheme as "a bearer token
// is present": which key is right is up to the simulator.
func requireBearer(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme == nil || in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return in.NewError(fmt.Errorf("unsupported security scheme %q", in.SecuritySchemeName))
	}
	scheme, token, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return in.NewError(errors.New("missing bearer token"))
	}
	return nil
}
