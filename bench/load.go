package main

// Closed-loop load: N caller goroutines each making calls back to back for a fixed time.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

// callFunc makes one call as caller w of conc.
type callFunc func(ctx context.Context, w, conc int) error

// target is one of the three things measured side by side.
type target struct {
	name string
	call callFunc
	proc *child // the server process; nil for direct
}

const (
	benchPrompt = "a lighthouse at dusk"
	benchSeed   = int64(7)
)

var benchModel = livepeer.DefaultModels[livepeer.PipelineTextToImage]

// directTextToImage is target (a): the JSON POST genservice would send, straight to
// the simulator, and the answer decoded.
func directTextToImage(client *http.Client, gatewayURL, key string) callFunc {
	seed := benchSeed
	body, err := json.Marshal(livepeer.TextToImageParams{ModelID: benchModel, Prompt: benchPrompt, Seed: &seed})
	if err != nil {
		panic(err)
	}
	url := gatewayURL + "/" + livepeer.PipelineTextToImage
	auth := "Bearer " + key
	return func(ctx context.Context, _, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header["Content-Type"] = []string{"application/json"}
		req.Header["Accept"] = []string{"application/json"}
		req.Header["Authorization"] = []string{auth}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("simulator answered %d: %s", resp.StatusCode, data)
		}
		var out livepeer.ImageResponse
		if err := json.Unmarshal(data, &out); err != nil {
			return err
		}
		if len(out.Images) != 1 || out.Images[0].URL == "" {
			return fmt.Errorf("unexpected answer %s", data)
		}
		return nil
	}
}

// grpcTextToImage is targets (b) and (c): caller w uses connection w % min(conc, len).
func grpcTextToImage(clients []generationv1.GenerationServiceClient) callFunc {
	seed := benchSeed
	req := &generationv1.TextToImageRequest{ModelId: benchModel, Prompt: benchPrompt, Seed: &seed}
	return func(ctx context.Context, w, conc int) error {
		c := clients[w%min(conc, len(clients))]
		resp, err := c.TextToImage(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.GetImages()) != 1 || resp.GetImages()[0].GetUrl() == "" {
			return errors.New("unexpected answer " + resp.String())
		}
		return nil
	}
}

// loadResult is one run of the load.
type loadResult struct {
	lats     []time.Duration
	errs     int
	firstErr error
	elapsed  time.Duration
}

// runLoad runs conc callers for d (each finishes the call in progress at the end). If
// count > 0, each caller instead makes exactly count calls.
func runLoad(ctx context.Context, call callFunc, conc int, d time.Duration, count int) loadResult {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      loadResult
		startGun = make(chan struct{})
	)
	per := make([][]time.Duration, conc)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats := make([]time.Duration, 0, 4096)
			<-startGun
			end := time.Now().Add(d)
			for i := 0; ; i++ {
				if count > 0 && i >= count || count == 0 && !time.Now().Before(end) || ctx.Err() != nil {
					break
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				err := call(cctx, w, conc)
				lat := time.Since(t0)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					mu.Lock()
					res.errs++
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					continue
				}
				lats = append(lats, lat)
			}
			per[w] = lats
		}()
	}
	start := time.Now()
	close(startGun)
	wg.Wait()
	res.elapsed = time.Since(start)
	for _, l := range per {
		res.lats = append(res.lats, l...)
	}
	slices.Sort(res.lats)
	return res
}

// percentile returns the nearest-rank p-quantile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phase is one target at one concurrency in one round.
type phase struct {
	calls    int
	errs     int
	firstErr error
	p50, p99 time.Duration
	rate     float64       // calls/s
	benchCPU time.Duration // per call: this process (simulator + client)
	procCPU  time.Duration // per call: the server process (0 for direct)
	rssMax   uint64        // highest VmRSS sampled (server process)
	logLines int64         // lines the server logged during the phase
	switches float64       // server threads' context switches per call
}

// measure warms up, then measures one target at conc callers for d.
func measure(ctx context.Context, t *target, conc int, d, warm time.Duration) (phase, error) {
	if t.proc != nil {
		if err := t.proc.alive(); err != nil {
			return phase{}, err
		}
	}
	if warm > 0 {
		w := runLoad(ctx, t.call, conc, warm, 0)
		if w.errs > 0 {
			return phase{errs: w.errs, firstErr: w.firstErr}, nil
		}
	}
	var sampler *rssSampler
	var proc0 time.Duration
	var sw0 int64
	if t.proc != nil {
		var err error
		if proc0, err = t.proc.cpu(); err != nil {
			return phase{}, err
		}
		t.proc.countLogLines() // skip the warm-up's
		sw0 = t.proc.switches()
		sampler = sampleRSS(t.proc, 20*time.Millisecond)
	}
	self0 := selfCPU()
	r := runLoad(ctx, t.call, conc, d, 0)
	self1 := selfCPU()
	p := phase{calls: len(r.lats), errs: r.errs, firstErr: r.firstErr}
	if t.proc != nil {
		p.rssMax = sampler.finish()
		proc1, err := t.proc.cpu()
		if err != nil {
			return p, err
		}
		if p.calls > 0 {
			p.procCPU = (proc1 - proc0) / time.Duration(p.calls)
			p.switches = float64(t.proc.switches()-sw0) / float64(p.calls)
		}
		p.logLines = t.proc.countLogLines()
	}
	if p.calls > 0 {
		p.p50, p.p99 = percentile(r.lats, 0.50), percentile(r.lats, 0.99)
		p.rate = float64(p.calls) / r.elapsed.Seconds()
		p.benchCPU = (self1 - self0) / time.Duration(p.calls)
	}
	return p, nil
}
