package livepeertest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Result media. The gateway stores results in its object store and returns
// URLs like https://<gateway>/stream/d0fc1fc6/8fdf5a94.png, or a bare
// relative /stream/... path (UPSTREAM.md §3). The simulator's media URLs
// are stateless: any well-formed /stream/<8 hex>/<name>.<ext> serves a
// small valid file of that type, so serving them costs no memory however
// many requests a benchmark makes.

const mediaPrefix = "/stream/"

var mediaTypes = map[string]string{
	"png": "image/png",
	"mp4": "video/mp4",
	"wav": "audio/wav",
}

// mediaURL builds the URL of result n of request id.
func (s *Server) mediaURL(id string, n int, ext string) string {
	path := mediaPrefix + id + "/" + strconv.Itoa(n) + "." + ext
	if s.cfg.RelativeURLs {
		return path
	}
	return s.origin + path
}

// nextID returns 8 hex digits, distinct for the first 2^32 calls and
// deterministic for a server's sequence of requests.
func (s *Server) nextID() string {
	x := uint32(s.ids.Add(1))
	// A bijective 32-bit mix (murmur3's finalizer), so ids look random but
	// never repeat.
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], x)
	return hex.EncodeToString(b[:])
}

// serveMedia answers GET/HEAD on media URLs; no authentication, like the
// gateway's object store.
func serveMedia(w http.ResponseWriter, r *http.Request) {
	data, ctype, ok := mediaFor(r.URL.Path)
	if !ok {
		writeBody(w, http.StatusNotFound, "text/plain; charset=utf-8", "404 page not found\n")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeBody(w, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", "method not allowed\n")
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}

// mediaFor parses /stream/<8 hex>/<name>.<ext>.
func mediaFor(path string) ([]byte, string, bool) {
	rest, ok := strings.CutPrefix(path, mediaPrefix)
	if !ok {
		return nil, "", false
	}
	id, file, ok := strings.Cut(rest, "/")
	if !ok || len(id) != 8 || !isHex(id) {
		return nil, "", false
	}
	name, ext, ok := strings.Cut(file, ".")
	ctype, known := mediaTypes[ext]
	if !ok || !known || name == "" || !isAlnum(name) {
		return nil, "", false
	}
	switch ext {
	case "png":
		return tinyPNG(), ctype, true
	case "mp4":
		return tinyMP4, ctype, true
	default:
		return tinyWAV(), ctype, true
	}
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// tinyPNG is an 8x8 gradient encoded by image/png, so it decodes anywhere.
var tinyPNG = sync.OnceValue(func() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for y := range 8 {
		for x := range 8 {
			img.Set(x, y, color.RGBA{uint8(x * 32), uint8(y * 32), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic("livepeertest: png: " + err.Error())
	}
	return b.Bytes()
})

// tinyMP4 is an ISO BMFF "ftyp" box followed by an empty "mdat": enough for
// content sniffing, not a playable video.
var tinyMP4 = []byte{
	0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 2, 0,
	'i', 's', 'o', 'm', 'm', 'p', '4', '1',
	0, 0, 0, 8, 'm', 'd', 'a', 't',
}

// tinyWAV is 0.1 s of 16 kHz mono 16-bit PCM silence with a valid header.
var tinyWAV = sync.OnceValue(func() []byte {
	const rate, samples = 16000, 1600
	data := samples * 2
	b := make([]byte, 44+data)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16) // fmt chunk size
	binary.LittleEndian.PutUint16(b[20:], 1)  // PCM
	binary.LittleEndian.PutUint16(b[22:], 1)  // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], rate*2) // byte rate
	binary.LittleEndian.PutUint16(b[32:], 2)      // block align
	binary.LittleEndian.PutUint16(b[34:], 16)     // bits per sample
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(data))
	return b
})
