// Command bench measures genservice against the performance targets of DESIGN.md §10,
// in one run and side by side with two baselines:
//
//	(a) direct      the client POSTs the JSON straight to the gateway simulator
//	(b) refproxy    a bare mTLS gRPC proxy: one http.Client call, nothing else
//	(c) genservice  the real binary (`genservice serve`, built from ./cmd/genservice)
//
// All three talk to one in-process livepeertest simulator on loopback. (b) and (c) run
// as child processes, so their CPU time (/proc/<pid>/stat) and memory (VmRSS, VmHWM)
// are theirs alone. Each round measures, for each number of concurrent callers, the
// three targets back to back with small TextToImage calls (the order rotates per
// round), so all three see the same machine, then LlmStream through genservice and
// straight from the simulator; the report gives the median of the per-round figures.
// After the rounds, 10 MiB ImageToImage uploads at 1 and 8 in flight measure
// genservice's memory per upload. Last, the attack phase (attack.go): gzip floods with
// and without a client certificate, and LlmStream callers that never read.
//
//	go run ./bench                   3 rounds, 3 s per measurement (about 2 minutes)
//	go run ./bench -short            a quick check for CI: every phase, 1 round, ~300 ms each
//	go run ./bench -out FILE         also write the markdown report to FILE
//	go run ./bench -cpuprofile FILE  also profile genservice and the reference proxy in-process
//	go run ./bench -only attack      only the attack phase
//
// It exits non-zero if any call fails or a server cannot be started, and if the attack
// phase misses its targets (see attack.go); it asserts nothing about speed (the
// verdicts are in the report).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"genservice/livepeer/livepeertest"
)

type options struct {
	rounds        int
	duration      time.Duration
	warmup        time.Duration
	short         bool
	out           string
	cpuProfile    string
	memProfile    string
	concs         []int
	streamCalls   int
	uploadCalls   int
	genserviceBin string
	profileOnly   bool
	quiet         bool
	only          string // "" (every phase) or "attack"
	// The attack phase (attack.go).
	attackCalls   int           // calls per gzip flood
	attackConc    int           // flood connections, one caller each
	attackTime    time.Duration // bound on each flood
	attackStreams int           // non-reading LlmStream callers (= genservice's --max-in-flight)
	attackIdle    time.Duration // genservice's --stream-idle-timeout in that part
}

func main() { os.Exit(run()) }

func run() int {
	if len(os.Args) > 1 && os.Args[1] == "-refproxy-serve" {
		return refProxyMain(os.Args[2:])
	}
	opt, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer stopChildren()
	dir, err := os.MkdirTemp("", "genservice-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	res, err := benchmark(ctx, opt, dir)
	if res != nil {
		report := res.markdown()
		fmt.Print(report)
		if opt.out != "" {
			if werr := os.WriteFile(opt.out, []byte(report), 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "bench: -out:", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if fails := res.failures(); len(fails) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d phase(s) had failed calls:\n  %s\n", len(fails), strings.Join(fails, "\n  "))
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; the report gives the median of the per-round figures")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "length of each measurement")
	fs.DurationVar(&o.warmup, "warmup", 0, "warm-up before each measurement (default: duration/6, at most 500ms)")
	fs.BoolVar(&o.short, "short", false, "quick mode for CI: 1 round, 300ms measurements, every phase (the attack phase with fewer calls); fails only if a call fails or the attack phase misses its targets")
	fs.StringVar(&o.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "after the run, profile genservice (serve's wiring) and the reference proxy in this process under 16 callers (at least 5s each) and write the CPU profile here; pprof label role=genservice|refproxy")
	concs := fs.String("callers", "1,16,64", "comma-separated numbers of concurrent callers")
	fs.IntVar(&o.streamCalls, "stream-calls", 20, "LlmStream calls per round through genservice, and as many direct")
	fs.IntVar(&o.uploadCalls, "upload-calls", 6, "10 MiB uploads per caller in each of the two batches")
	fs.StringVar(&o.genserviceBin, "genservice-bin", "", "use this genservice binary instead of building ./cmd/genservice")
	fs.StringVar(&o.memProfile, "memprofile", "", "after the run, send 10 MiB uploads (8 in flight) through genservice in this process and write the allocation profile here")
	fs.BoolVar(&o.profileOnly, "profile-only", false, "only the in-process profile runs (-cpuprofile, -memprofile)")
	fs.BoolVar(&o.quiet, "q", false, "no progress on stderr")
	fs.StringVar(&o.only, "only", "", `run only this phase: "attack" (the gzip floods and the non-reading LlmStream callers)`)
	fs.IntVar(&o.attackCalls, "attack-calls", 200, "calls in each gzip flood of the attack phase (one without, one with a client certificate)")
	fs.IntVar(&o.attackConc, "attack-conc", 20, "concurrent callers of each gzip flood, one connection each")
	fs.IntVar(&o.attackStreams, "attack-streams", 10, "LlmStream callers that never read; genservice runs with --max-in-flight this many")
	fs.DurationVar(&o.attackIdle, "attack-idle", 2*time.Second, "genservice's --stream-idle-timeout for the non-reading LlmStream callers (production default 60s)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.short {
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["duration"] {
			o.duration = 300 * time.Millisecond
		}
		if !set["stream-calls"] {
			o.streamCalls = 3
		}
		if !set["upload-calls"] {
			o.uploadCalls = 1
		}
		if !set["attack-calls"] {
			o.attackCalls = 30
		}
		if !set["attack-conc"] {
			o.attackConc = 10
		}
		if !set["attack-streams"] {
			o.attackStreams = 4
		}
	}
	// A bound on each flood for a server that stops answering, not a pace: a second
	// per call per caller, and at least 20 s.
	o.attackTime = max(20*time.Second, time.Duration(o.attackCalls/max(o.attackConc, 1))*time.Second)
	if !set["warmup"] {
		o.warmup = min(o.duration/6, 500*time.Millisecond).Truncate(time.Millisecond)
	}
	for _, s := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-callers: %q is not a positive number", s)
		}
		o.concs = append(o.concs, n)
	}
	switch {
	case o.rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.duration <= 0:
		return o, errors.New("-duration must be positive")
	case o.streamCalls < 1 || o.uploadCalls < 1:
		return o, errors.New("-stream-calls and -upload-calls must be at least 1")
	case o.profileOnly && o.cpuProfile == "" && o.memProfile == "":
		return o, errors.New("-profile-only needs -cpuprofile or -memprofile")
	case o.only != "" && o.only != "attack":
		return o, fmt.Errorf(`-only: unknown phase %q (the one phase that runs alone is "attack")`, o.only)
	case o.only != "" && o.profileOnly:
		return o, errors.New("-only and -profile-only exclude each other")
	case o.attackCalls < 1 || o.attackConc < 1 || o.attackStreams < 1 || o.attackIdle <= 0:
		return o, errors.New("-attack-calls, -attack-conc and -attack-streams must be at least 1, -attack-idle positive")
	case o.attackConc > 100:
		// genservice's default --max-conns-without-cert: more would be refused at the
		// handshake, which is another defence than the one the flood measures.
		return o, errors.New("-attack-conc must be at most 100")
	}
	return o, nil
}

// progress prints to stderr unless -q.
type progress bool

func (p progress) printf(format string, a ...any) {
	if p {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

func benchmark(ctx context.Context, opt options, dir string) (*results, error) {
	say := progress(!opt.quiet)
	started := time.Now()
	res := &results{opt: opt, machine: readMachine()}

	var kb [12]byte
	_, _ = rand.Read(kb[:])
	key := "bench-" + hex.EncodeToString(kb[:])
	sim, err := livepeertest.New(livepeertest.Config{APIKey: key, MaxRecorded: -1, MaxFileBytes: 16 << 20})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	tap, gateway, stopTap, err := serveTap(sim)
	if err != nil {
		return nil, err
	}
	defer stopTap()
	// The certificates and the policy get a directory of their own: genservice watches
	// their directory, and its log file (in dir) must not wake the watcher on every line.
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return nil, err
	}
	certs, err := mintCerts(certDir)
	if err != nil {
		return nil, err
	}
	if opt.profileOnly {
		err := runProfile(ctx, opt, res, certs, gateway, key)
		res.elapsed, res.loadEnd = time.Since(started), loadAvg()
		return res, err
	}

	if opt.only == "attack" {
		bin := opt.genserviceBin
		if bin == "" {
			say.printf("building ./cmd/genservice ...")
			if bin, err = buildGenservice(ctx, dir); err != nil {
				return nil, err
			}
		}
		res.attack, err = runAttack(ctx, opt, bin, dir, certs, sim, gateway, key)
		res.elapsed, res.loadEnd = time.Since(started), loadAvg()
		return res, err
	}

	// Build genservice while the rest starts.
	type built struct {
		bin string
		err error
	}
	buildc := make(chan built, 1)
	go func() {
		if opt.genserviceBin != "" {
			buildc <- built{opt.genserviceBin, nil}
			return
		}
		t0 := time.Now()
		say.printf("building ./cmd/genservice ...")
		bin, err := buildGenservice(ctx, dir)
		if err == nil {
			say.printf("built in %.1fs", time.Since(t0).Seconds())
		}
		buildc <- built{bin, err}
	}()
	ref, err := startRefProxy(ctx, certs, gateway, key)
	if err != nil {
		<-buildc
		return nil, err
	}
	defer ref.stop()
	refConns, refClients, err := dialAll(ctx, ref.addr, certs.clientTLS)
	if err != nil {
		<-buildc
		return nil, err
	}
	defer closeAll(refConns)
	direct := newDirectClient()
	defer direct.CloseIdleConnections()
	b := <-buildc
	if b.err != nil {
		return nil, b.err
	}
	gen, err := startGenservice(ctx, b.bin, filepath.Join(dir, "genservice.log"), certs, gateway, key)
	if err != nil {
		return nil, err
	}
	defer gen.stop()
	genConns, genClients, err := dialAll(ctx, gen.addr, certs.clientTLS)
	if err != nil {
		return nil, err
	}
	defer closeAll(genConns)
	res.idleGen, _, _ = gen.memory()
	res.idleRef, _, _ = ref.memory()

	targets := []*target{
		{name: "direct", call: directTextToImage(direct, gateway, key)},
		{name: "refproxy", call: grpcTextToImage(refClients), proc: ref},
		{name: "genservice", call: grpcTextToImage(genClients), proc: gen},
	}
	// Open the connection pools and let the servers' heaps grow to their working size.
	for _, t := range targets {
		for _, c := range []int{max(res.maxConc(), 1), 1} {
			w := runLoad(ctx, t.call, c, opt.warmup+100*time.Millisecond, 0)
			if w.errs > 0 {
				return res, fmt.Errorf("%s does not answer: %v", t.name, w.firstErr)
			}
		}
	}

	for r := range opt.rounds {
		round := make([]map[string]phase, len(opt.concs))
		for ci, conc := range opt.concs {
			round[ci] = map[string]phase{}
			for k := range targets {
				t := targets[(k+r)%len(targets)] // rotate who goes first
				p, err := measure(ctx, t, conc, opt.duration, opt.warmup)
				if err != nil {
					return res, err
				}
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				round[ci][t.name] = p
				say.printf("round %d/%d  %2d callers  %-10s  p50 %7.3f ms  p99 %7.3f ms  %6.0f calls/s  server CPU %5.0f µs/call, %4.1f context switches/call%s",
					r+1, opt.rounds, conc, t.name, ms(p.p50), ms(p.p99), p.rate, us(p.procCPU), p.switches, errNote(p.errs, p.firstErr))
			}
		}
		res.rounds = append(res.rounds, round)
		sr := measureStreams(ctx, sim, tap, gateway, direct, genClients[0], key, opt.streamCalls)
		res.streams = append(res.streams, sr)
		say.printf("round %d/%d  LlmStream   first event: direct %.3f ms, genservice %.3f ms; event delivery p50: direct %.3f ms, genservice %.3f ms%s",
			r+1, opt.rounds, ms(sr.ttfeD50), ms(sr.ttfeG50), ms(sr.deliverD50), ms(sr.deliverG50), errNote(sr.errs, sr.firstErr))
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	_, res.peakGen, _ = gen.memory()
	_, res.peakRef, _ = ref.memory()

	payload := uploadPayload()
	directUp, err := directImageToImage(direct, gateway, key, payload)
	if err != nil {
		return res, err
	}
	genUp := grpcImageToImage(genClients, payload)
	baseline, _, _ := gen.memory()
	for _, conc := range []int{1, 8} {
		up := measureUploads(ctx, gen, genUp, directUp, conc, opt.uploadCalls, baseline)
		res.uploads = append(res.uploads, up)
		say.printf("uploads     %d in flight  p50 direct %.1f ms, genservice %.1f ms; genservice RSS before %s, peak %s / %s%s",
			conc, ms(up.p50Direct), ms(up.p50Gen), mib(up.baseline), mib(up.peak1), mib(up.peak2), errNote(up.errs, up.firstErr))
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	if err := gen.alive(); err != nil {
		return res, err
	}
	res.overheadMean, res.overheadCount = scrapeOverhead(gen.admin)
	// The attack phase starts genservice processes of its own; this one has done its
	// part and would only hold memory meanwhile.
	gen.stop()
	res.attack, err = runAttack(ctx, opt, b.bin, dir, certs, sim, gateway, key)
	if err != nil {
		return res, err
	}

	if err := runProfile(ctx, opt, res, certs, gateway, key); err != nil {
		return res, err
	}
	res.elapsed = time.Since(started)
	res.loadEnd = loadAvg()
	return res, nil
}

// runProfile runs the in-process profiles that -cpuprofile and -memprofile ask for.
func runProfile(ctx context.Context, opt options, res *results, certs *certFiles, gatewayURL, key string) error {
	if opt.memProfile != "" {
		if err := profileUploads(ctx, opt, certs, gatewayURL, key); err != nil {
			return fmt.Errorf("-memprofile: %v", err)
		}
		progress(!opt.quiet).printf("allocation profile of 10 MiB uploads in %s", opt.memProfile)
	}
	if opt.cpuProfile == "" {
		return nil
	}
	d := opt.duration
	if !opt.short {
		d = max(d, 5*time.Second)
	}
	ps, err := profileInProcess(ctx, opt, d, certs, gatewayURL, key)
	res.profile = ps
	if err != nil {
		return fmt.Errorf("-cpuprofile: %v", err)
	}
	for _, p := range ps {
		progress(!opt.quiet).printf("in-process %-10s 16 callers: p50 %.3f ms, %.0f calls/s, process CPU %.0f µs/call", p.role, ms(p.phase.p50), p.phase.rate, us(p.phase.benchCPU))
	}
	return nil
}

func errNote(n int, err error) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("  %d FAILED: %v", n, err)
}

// scrapeOverhead reads genservice's own per-call overhead histogram for TextToImage
// from its /metrics: the mean, and how many calls it covers.
func scrapeOverhead(admin string) (time.Duration, int64) {
	if admin == "" {
		return 0, 0
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0
	}
	var sum float64
	var count int64
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case `genservice_call_overhead_seconds_sum{grpc_method="TextToImage"}`:
			sum, _ = strconv.ParseFloat(val, 64)
		case `genservice_call_overhead_seconds_count{grpc_method="TextToImage"}`:
			count, _ = strconv.ParseInt(val, 10, 64)
		}
	}
	if count == 0 {
		return 0, 0
	}
	return time.Duration(sum / float64(count) * float64(time.Second)), count
}
