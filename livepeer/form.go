package livepeer

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unicode"
)

// form collects the parts of a multipart/form-data body. Text fields come first and
// files last, in the order added, which is what the gateway's FastAPI and Studio's
// multer parsers expect.
type form struct {
	fields []formField
	files  []formFile
	err    error // the first value that cannot be encoded; encode returns it
}

func (f *form) fail(field, reason string) {
	if f.err == nil {
		f.err = &InvalidParamError{Field: field, Reason: reason}
	}
}

// formField is one text part. text marks a string-typed field (as opposed to a number
// or boolean written as text), which Livepeer Studio's coercion can break.
type formField struct {
	name, value string
	text        bool
}

type formFile struct {
	name string
	File
}

// str adds a string-typed field.
func (f *form) str(name, v string) { f.fields = append(f.fields, formField{name, v, true}) }

// scalar adds a number or boolean written as text.
func (f *form) scalar(name, v string) { f.fields = append(f.fields, formField{name, v, false}) }

func (f *form) optStr(name string, v *string) {
	if v != nil {
		f.str(name, *v)
	}
}

func (f *form) optInt(name string, v *int64) {
	if v != nil {
		f.scalar(name, strconv.FormatInt(*v, 10))
	}
}

func (f *form) optInt32(name string, v *int32) {
	if v != nil {
		f.scalar(name, strconv.FormatInt(int64(*v), 10))
	}
}

func (f *form) optFloat(name string, v *float64) {
	if v == nil {
		return
	}
	if math.IsNaN(*v) || math.IsInf(*v, 0) {
		f.fail(name, "must be a finite number")
		return
	}
	f.scalar(name, strconv.FormatFloat(*v, 'g', -1, 64))
}

func (f *form) optBool(name string, v *bool) {
	if v != nil {
		f.scalar(name, strconv.FormatBool(*v))
	}
}

func (f *form) file(name string, file File) { f.files = append(f.files, formFile{name, file}) }

// encoded is a multipart body as a list of segments: small buffers holding boundaries
// and part headers, interleaved with the callers' file contents, which are referenced
// rather than copied. A 10 MiB upload therefore costs no second 10 MiB buffer, the
// Content-Length is known up front, and the body can be replayed for a retry.
type encoded struct {
	segments    [][]byte
	size        int64
	contentType string
}

func (e *encoded) reader() io.Reader {
	readers := make([]io.Reader, len(e.segments))
	for i, s := range e.segments {
		readers[i] = bytes.NewReader(s)
	}
	return io.MultiReader(readers...)
}

// segmentWriter receives the multipart.Writer's output into the current segment.
type segmentWriter struct {
	enc *encoded
	cur bytes.Buffer
}

func (w *segmentWriter) Write(p []byte) (int, error) { return w.cur.Write(p) }

// flush closes the current buffered segment.
func (w *segmentWriter) flush() {
	if w.cur.Len() > 0 {
		b := bytes.Clone(w.cur.Bytes())
		w.enc.segments = append(w.enc.segments, b)
		w.enc.size += int64(len(b))
		w.cur.Reset()
	}
}

// raw appends a caller-owned segment without copying it.
func (w *segmentWriter) raw(b []byte) {
	w.flush()
	if len(b) > 0 {
		w.enc.segments = append(w.enc.segments, b)
		w.enc.size += int64(len(b))
	}
}

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

// hasControl reports whether s contains a control character (CR and LF included),
// which would end or split a header line.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// checkFile refuses a content type or file name that cannot be written into a part
// header as given. The file name is quoted (quotes and backslashes escaped, as
// multipart.Writer does), so only control characters are a problem there; the content
// type is written verbatim, so it must be a well-formed media type.
func (f *form) checkFile(file formFile) {
	if hasControl(file.Filename) {
		f.fail(file.name+".filename", "must not contain control characters")
	}
	if file.ContentType == "" {
		return
	}
	if hasControl(file.ContentType) {
		f.fail(file.name+".content_type", "must not contain control characters")
		return
	}
	if mt, _, err := mime.ParseMediaType(file.ContentType); err != nil || !strings.Contains(mt, "/") {
		f.fail(file.name+".content_type", "must be a MIME type such as image/png")
	}
}

func (f *form) encode() (*encoded, error) {
	for _, file := range f.files {
		f.checkFile(file)
	}
	if f.err != nil {
		return nil, f.err
	}
	enc := &encoded{}
	sw := &segmentWriter{enc: enc}
	mw := multipart.NewWriter(sw)
	for _, fld := range f.fields {
		if err := mw.WriteField(fld.name, fld.value); err != nil {
			return nil, err
		}
	}
	for _, file := range f.files {
		name := file.Filename
		if name == "" {
			name = file.name + extensionFor(file.ContentType)
		}
		h := make(textproto.MIMEHeader, 2)
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`,
			quoteEscaper.Replace(file.name), quoteEscaper.Replace(name)))
		h.Set("Content-Type", file.ContentType)
		if _, err := mw.CreatePart(h); err != nil {
			return nil, err
		}
		sw.raw(file.Content)
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	sw.flush()
	enc.contentType = mw.FormDataContentType()
	return enc, nil
}

// DetectContentType returns the MIME type of content as sniffed by net/http, falling
// back to application/octet-stream. Audio formats net/http does not know are left to the
// gateway, which probes the file itself.
func DetectContentType(content []byte) string {
	ct := http.DetectContentType(content)
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return ct
}

func extensionFor(contentType string) string {
	switch contentType {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "image/gif":
		return ".gif"
	case "audio/wave", "audio/wav", "audio/x-wav":
		return ".wav"
	case "audio/mpeg":
		return ".mp3"
	case "audio/flac":
		return ".flac"
	case "audio/webm", "video/webm":
		return ".webm"
	case "video/mp4", "audio/mp4":
		return ".mp4"
	case "audio/ogg", "application/ogg":
		return ".ogg"
	}
	return ""
}

// studioCheck refuses string fields that Livepeer Studio would refuse after coercing
// them (UPSTREAM §12.1): Studio runs JavaScript's Number.parseFloat on every multipart
// text field before validating, so a value that begins with a number ("4k photo" reads
// as 4) or is exactly "true" or "false" stops being a string and fails with 422 "must be
// string". No rewrite keeps such a value's meaning, so genservice says so before paying
// for a round trip.
func (f *form) studioCheck() error {
	for _, fl := range f.fields {
		if !fl.text {
			continue
		}
		switch {
		case jsParsesAsNumber(fl.value):
			return &InvalidParamError{Field: fl.name, Reason: fmt.Sprintf(
				"begins with a number (%q), which Livepeer Studio reads as that number and then refuses as not a string; start the text with a word (for example \"a %s\"), or use a go-livepeer gateway",
				truncateTo(fl.value, 24), truncateTo(fl.value, 24))}
		case fl.value == "true" || fl.value == "false":
			return &InvalidParamError{Field: fl.name, Reason: fmt.Sprintf(
				"is exactly %q, which Livepeer Studio turns into a boolean and then refuses as not a string; use another spelling (for example %q)", fl.value, strings.ToUpper(fl.value[:1])+fl.value[1:])}
		}
	}
	return nil
}

// jsParsesAsNumber reports whether JavaScript's Number.parseFloat(s) is not NaN: after
// leading white space, an optional sign and then "Infinity", a digit, or a point and a
// digit.
func jsParsesAsNumber(s string) bool {
	s = strings.TrimLeftFunc(s, jsSpace)
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if strings.HasPrefix(s, "Infinity") {
		return true
	}
	if s != "" && s[0] == '.' {
		s = s[1:]
	}
	return s != "" && s[0] >= '0' && s[0] <= '9'
}

// jsSpace is JavaScript's WhiteSpace and LineTerminator set, which parseFloat skips.
func jsSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', '\u00a0', '\ufeff', '\u2028', '\u2029':
		return true
	}
	return unicode.Is(unicode.Zs, r)
}
