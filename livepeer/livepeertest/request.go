package livepeertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"sync"
)

// Request is one request the simulator received, as recorded for tests.
//
// Requests rejected before their body is read (401, 404, 405) are recorded
// without Body, JSON, Form and Files.
type Request struct {
	Pipeline     string // "text-to-image", ...
	Method, Path string
	Header       http.Header // clone of the request headers
	ContentType  string      // media type without parameters, lower case
	// Body is the body as received. JSON bodies are kept whole (the
	// simulator answers 413 beyond 1 MiB, recording the first 1 MiB). Multipart
	// bodies are re-assembled from their parts with each file part's
	// content cut to RecordFileBytes, so for a body written by Go's
	// mime/multipart with small files it is byte-identical to what was
	// sent, and it always stays a well-formed multipart body (File.Size
	// keeps the real length).
	Body  []byte
	JSON  map[string]any    // decoded JSON body; nil for multipart
	Form  map[string]string // multipart text fields (last value wins)
	Files map[string]File   // multipart file parts by field name
}

// File describes one uploaded multipart file part.
type File struct {
	Filename, ContentType string
	Size                  int64  // full length as received
	SHA256                string // hex digest of the full content
}

// RecordFileBytes is how much of each uploaded file the recorded
// multipart Body keeps. Whole uploads (10 MiB each) would make recording
// the bottleneck of a benchmark.
const RecordFileBytes = 64 << 10

const (
	// maxJSONBytes caps JSON bodies; LLM prompts of a full 8192-token
	// context are well under it.
	maxJSONBytes = 1 << 20
	// maxFieldBytes is multer's default text-field limit, which Studio
	// keeps (UPSTREAM.md §5).
	maxFieldBytes = 1 << 20
	// maxDrainBytes bounds how much of a rejected upload is read and
	// thrown away so that the client still gets to read the 422.
	maxDrainBytes = 64 << 20
)

// errDisconnected means the client went away while the body was read.
var errDisconnected = errors.New("client disconnected")

// reply is a complete non-streamed response.
type reply struct {
	status int
	body   string
}

// readBody reads and decodes r's body into rec. A non-nil reply is the
// error normal behaviour answers with (scripts may override it); the error
// is errDisconnected when the client went away.
func readBody(r *http.Request, p *pipeline, maxFile int64, rec *Request) (*reply, error) {
	body := &trackingReader{r: r.Body}
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	rec.ContentType = mediaType
	var rep *reply
	if p.json {
		rep = readJSON(body, mediaType, rec)
	} else {
		rep = readMultipart(body, mediaType, params["boundary"], p, maxFile, rec)
	}
	if rep != nil && body.err == nil {
		// Read what is left (bounded) so the client, still sending, reads
		// our answer instead of a connection reset.
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
	}
	if body.err != nil {
		return nil, errDisconnected
	}
	return rep, nil
}

func readJSON(body io.Reader, mediaType string, rec *Request) *reply {
	data, err := io.ReadAll(io.LimitReader(body, maxJSONBytes+1))
	if err != nil {
		return nil // trackingReader reports it
	}
	rec.Body = data
	if mediaType != "application/json" {
		return &reply{422, StudioError("Expected application/json content-type")}
	}
	if len(data) > maxJSONBytes {
		// body-parser's answer to an oversized body.
		rec.Body = data[:maxJSONBytes]
		return &reply{413, StudioError("request entity too large")}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		// express.json() turns an empty body into {}.
		rec.JSON = map[string]any{}
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return &reply{400, StudioError("invalid JSON body: " + err.Error())}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return &reply{422, StudioError(ajvError("", "#/type", "type", map[string]any{"type": "object"}, "must be object"))}
	}
	rec.JSON = obj
	return nil
}

func readMultipart(body io.Reader, mediaType, boundary string, p *pipeline, maxFile int64, rec *Request) *reply {
	if mediaType != "multipart/form-data" || boundary == "" {
		// Keep what was sent (bounded) for the test to look at.
		data, err := io.ReadAll(io.LimitReader(body, maxJSONBytes))
		if err != nil {
			return nil // trackingReader reports it
		}
		rec.Body = data
		if mediaType != "multipart/form-data" {
			return &reply{422, StudioError("Expected multipart/form-data content-type")}
		}
		return &reply{422, StudioError("Multipart: Boundary not found")}
	}
	rec.Form = map[string]string{}
	rec.Files = map[string]File{}
	var out bytes.Buffer
	mr := multipart.NewReader(body, boundary)
	for {
		// NextRawPart: record and hash the bytes as sent, without
		// quoted-printable decoding.
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &reply{422, StudioError("Malformed multipart body: " + err.Error())}
		}
		writePartHeader(&out, boundary, part)
		rep := readPart(part, p, maxFile, &out, rec)
		out.WriteString("\r\n")
		if rep != nil {
			rec.Body = closeMultipart(&out, boundary)
			return rep
		}
	}
	rec.Body = closeMultipart(&out, boundary)
	return nil
}

func readPart(part *multipart.Part, p *pipeline, maxFile int64, out *bytes.Buffer, rec *Request) *reply {
	defer part.Close()
	_, disp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	name := disp["name"]
	filename, isFile := disp["filename"]
	if !isFile {
		data, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return &reply{422, StudioError("Malformed multipart body: " + err.Error())}
		}
		if len(data) > maxFieldBytes {
			out.Write(data[:RecordFileBytes])
			return &reply{422, StudioError("Field value too long")}
		}
		out.Write(data)
		if name != "" {
			rec.Form[name] = string(data)
		}
		return nil
	}
	// multer rejects a file in a field it was not told about before the
	// body is validated.
	if k, ok := p.fieldKind[name]; !ok || k != kFile {
		return &reply{422, StudioError("Unexpected field")}
	}
	h := sha256.New()
	rest := &capWriter{buf: out, left: RecordFileBytes}
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(h, rest), io.LimitReader(part, maxFile+1), *buf)
	copyBufs.Put(buf)
	if err != nil {
		return &reply{422, StudioError("Malformed multipart body: " + err.Error())}
	}
	if n > maxFile {
		return &reply{422, StudioError("File too large")}
	}
	rec.Files[name] = File{
		Filename:    filename,
		ContentType: part.Header.Get("Content-Type"),
		Size:        n,
		SHA256:      hex.EncodeToString(h.Sum(nil)),
	}
	return nil
}

// writePartHeader writes a part's boundary line and headers the way Go's
// multipart.Writer does (keys sorted), so recorded bodies of Go clients
// match byte for byte.
func writePartHeader(out *bytes.Buffer, boundary string, part *multipart.Part) {
	out.WriteString("--")
	out.WriteString(boundary)
	out.WriteString("\r\n")
	keys := make([]string, 0, len(part.Header))
	for k := range part.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range part.Header[k] {
			out.WriteString(k)
			out.WriteString(": ")
			out.WriteString(v)
			out.WriteString("\r\n")
		}
	}
	out.WriteString("\r\n")
}

func closeMultipart(out *bytes.Buffer, boundary string) []byte {
	out.WriteString("--")
	out.WriteString(boundary)
	out.WriteString("--\r\n")
	return out.Bytes()
}

// copyBufs saves io.Copy's 32 KiB buffer per uploaded file.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// capWriter keeps the first left bytes written to it and drops the rest.
type capWriter struct {
	buf  *bytes.Buffer
	left int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if w.left > 0 {
		k := min(len(p), w.left)
		w.buf.Write(p[:k])
		w.left -= k
	}
	return len(p), nil
}

// trackingReader remembers a read error of the underlying connection, which
// multipart.Reader would otherwise report as a malformed body: a client that
// vanished mid-upload is a disconnect, not a 422.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}
