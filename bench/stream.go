package main

// LlmStream: time to first event and the gaps between events, through genservice and
// straight from the simulator, one call at a time, alternating.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

const (
	streamEvents   = 10 // scripted events; the simulator adds the final finish_reason one
	streamInterval = 5 * time.Millisecond
)

var streamModel = livepeer.DefaultModels[livepeer.PipelineLLM]

// streamStep is the simulator script for one streamed call.
func streamStep() livepeertest.Step {
	evs := make([]string, streamEvents)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"id":"chatcmpl-bench","model":%q,"created":1700000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"word%d "}}]}`, streamModel, i)
	}
	return livepeertest.Step{Events: evs, EventInterval: streamInterval}
}

// streamCall is one stream: when the call started and when each event arrived.
type streamCall struct {
	start    time.Time
	arrivals []time.Time
	sends    []time.Time // when the simulator flushed each event (from the tap)
}

func directStream(ctx context.Context, client *http.Client, gatewayURL, key string) (streamCall, error) {
	body, _ := json.Marshal(livepeer.LLMRequest{
		Messages: []livepeer.LLMMessage{{Role: "user", Content: "Say hi"}}, Model: streamModel,
		MaxTokens: livepeer.DefaultLLMMaxTokens, Stream: true,
	})
	sc := streamCall{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/"+livepeer.PipelineLLM, bytes.NewReader(body))
	if err != nil {
		return sc, err
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{"text/event-stream"}
	req.Header["Authorization"] = []string{"Bearer " + key}
	resp, err := client.Do(req)
	if err != nil {
		return sc, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sc, fmt.Errorf("simulator answered %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	hasData := false
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sc, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0 && hasData:
			sc.arrivals = append(sc.arrivals, time.Now())
			hasData = false
		case bytes.HasPrefix(line, []byte("data:")):
			var ev livepeer.LLMResponse
			if err := json.Unmarshal(bytes.TrimSpace(line[5:]), &ev); err != nil {
				return sc, err
			}
			hasData = true
		}
	}
	return sc, nil
}

func grpcStream(ctx context.Context, c generationv1.GenerationServiceClient) (streamCall, error) {
	sc := streamCall{start: time.Now()}
	s, err := c.LlmStream(ctx, &generationv1.LlmRequest{
		Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "Say hi"}}, Model: streamModel,
	})
	if err != nil {
		return sc, err
	}
	for {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return sc, nil
		}
		if err != nil {
			return sc, err
		}
		sc.arrivals = append(sc.arrivals, time.Now())
	}
}

// eventTap serves the simulator on a listener of the benchmark's own and, while armed,
// notes when the simulator flushes each chunk of an llm stream: the moment an event
// leaves the gateway, on the same clock as the callers' arrival times. All targets use
// it as their gateway, so they all see the same server.
type eventTap struct {
	sim   http.Handler
	armed atomic.Pointer[tapRecord]
}

type tapRecord struct {
	mu      sync.Mutex
	flushes []time.Time
	taken   atomic.Bool
	served  chan struct{} // closed when the recorded request's handler returns
}

func (t *eventTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rec := t.armed.Load(); rec != nil && strings.HasSuffix(r.URL.Path, "/"+livepeer.PipelineLLM) && rec.taken.CompareAndSwap(false, true) {
		defer close(rec.served)
		w = &flushRecorder{ResponseWriter: w, rec: rec}
	}
	t.sim.ServeHTTP(w, r)
}

// record arms the tap for one call. done disarms it and returns the flush times; after
// a successful call it first waits for the simulator's handler to return, since the
// caller may see the last event before the handler has noted its flush.
func (t *eventTap) record() (done func(ok bool) []time.Time) {
	rec := &tapRecord{served: make(chan struct{})}
	t.armed.Store(rec)
	return func(ok bool) []time.Time {
		t.armed.Store(nil)
		if ok && rec.taken.Load() {
			select {
			case <-rec.served:
			case <-time.After(5 * time.Second):
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.flushes
	}
}

type flushRecorder struct {
	http.ResponseWriter
	rec *tapRecord
}

func (f *flushRecorder) FlushError() error {
	err := http.NewResponseController(f.ResponseWriter).Flush()
	now := time.Now()
	f.rec.mu.Lock()
	f.rec.flushes = append(f.rec.flushes, now)
	f.rec.mu.Unlock()
	return err
}

func (f *flushRecorder) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// serveTap starts the tap on a loopback port; it returns the gateway URL (with the
// simulator's base path) and a stop function.
func serveTap(sim *livepeertest.Server) (*eventTap, string, func(), error) {
	tap := &eventTap{sim: sim}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: tap, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(lis) }()
	url := "http://" + lis.Addr().String() + strings.TrimPrefix(sim.URL(), sim.Origin())
	return tap, url, func() { _ = srv.Close() }, nil
}

// streamRound is one round's streaming figures.
type streamRound struct {
	calls                  int
	ttfeD50, ttfeD99       time.Duration // direct: call start to first event
	ttfeG50, ttfeG99       time.Duration // through genservice
	deliverD50, deliverD99 time.Duration // direct: simulator flush to arrival, every event
	deliverG50, deliverG99 time.Duration // through genservice
	gapD50, gapG50         time.Duration // between consecutive arrivals
	coalD, coalG           float64       // share of gaps under half the interval: events that arrived together
	errs                   int
	firstErr               error
}

func measureStreams(ctx context.Context, sim *livepeertest.Server, tap *eventTap, gatewayURL string, direct *http.Client, gen generationv1.GenerationServiceClient, key string, n int) streamRound {
	var res streamRound
	var dCalls, gCalls []streamCall
	for i := range 2 * n {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sim.Script(livepeertest.LLM, streamStep())
		var sc streamCall
		var err error
		// Alternate which goes first.
		viaGen := (i%2 == 0) == (i/2%2 == 0)
		done := tap.record()
		if viaGen {
			sc, err = grpcStream(cctx, gen)
		} else {
			sc, err = directStream(cctx, direct, gatewayURL, key)
		}
		flushes := done(err == nil)
		cancel()
		// The first flush sends the headers; then one per event.
		if err == nil && (len(sc.arrivals) != streamEvents+1 || len(flushes) != streamEvents+2) {
			err = fmt.Errorf("got %d events (%d flushed), want %d", len(sc.arrivals), max(len(flushes)-1, 0), streamEvents+1)
		}
		if err != nil {
			res.errs++
			if res.firstErr == nil {
				res.firstErr = err
			}
			if ctx.Err() != nil {
				return res
			}
			continue
		}
		sc.sends = flushes[1:]
		if viaGen {
			gCalls = append(gCalls, sc)
		} else {
			dCalls = append(dCalls, sc)
		}
	}
	if sim.Pending() > 0 {
		sim.Reset() // a failed call left its step queued
	}
	res.calls = min(len(dCalls), len(gCalls))
	if res.calls == 0 {
		return res
	}
	collect := func(cs []streamCall, f func(c streamCall, i int) (time.Duration, bool)) []time.Duration {
		var out []time.Duration
		for _, c := range cs {
			for i := range c.arrivals {
				if d, ok := f(c, i); ok {
					out = append(out, d)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	ttfe := func(c streamCall, i int) (time.Duration, bool) { return c.arrivals[0].Sub(c.start), i == 0 }
	deliver := func(c streamCall, i int) (time.Duration, bool) { return c.arrivals[i].Sub(c.sends[i]), true }
	gap := func(c streamCall, i int) (time.Duration, bool) {
		if i == 0 {
			return 0, false
		}
		return c.arrivals[i].Sub(c.arrivals[i-1]), true
	}
	td, tg := collect(dCalls, ttfe), collect(gCalls, ttfe)
	res.ttfeD50, res.ttfeD99 = percentile(td, 0.5), percentile(td, 0.99)
	res.ttfeG50, res.ttfeG99 = percentile(tg, 0.5), percentile(tg, 0.99)
	dd, dg := collect(dCalls, deliver), collect(gCalls, deliver)
	res.deliverD50, res.deliverD99 = percentile(dd, 0.5), percentile(dd, 0.99)
	res.deliverG50, res.deliverG99 = percentile(dg, 0.5), percentile(dg, 0.99)
	gd, gg := collect(dCalls, gap), collect(gCalls, gap)
	res.gapD50, res.coalD = percentile(gd, 0.5), coalesced(gd)
	res.gapG50, res.coalG = percentile(gg, 0.5), coalesced(gg)
	return res
}

// coalesced is the share of gaps shorter than half the interval: an event that waited
// and arrived together with the next one. On a quiet machine it is 0 both ways; a
// process that is not scheduled for a few milliseconds (a busy machine) makes some.
func coalesced(gaps []time.Duration) float64 {
	n := 0
	for _, g := range gaps {
		if g < streamInterval/2 {
			n++
		}
	}
	return float64(n) / float64(len(gaps))
}
