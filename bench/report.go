package main

// The markdown report: medians of the per-round figures, DESIGN.md §10's targets next
// to them, and a verdict for each.

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

type machine struct {
	cpus   int
	model  string
	memory string
	goVer  string
	kernel string
	load   string // /proc/loadavg at the start
}

func readMachine() machine {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version(), model: "unknown", memory: "unknown", kernel: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb uint64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
					m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	m.load = loadAvg()
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}
	return m
}

type results struct {
	opt     options
	machine machine
	elapsed time.Duration
	// rounds[r][concIndex][target]
	rounds           [][]map[string]phase
	streams          []streamRound
	uploads          []uploadPhase
	idleGen, idleRef uint64 // VmRSS after start
	peakGen, peakRef uint64 // VmHWM after all small-call rounds
	overheadMean     time.Duration
	overheadCount    int64
	profile          []inProcess
	attack           *attackResult
	loadEnd          string
}

var targetNames = []string{"direct", "refproxy", "genservice"}

var targetLabel = map[string]string{
	"direct":     "(a) direct HTTP",
	"refproxy":   "(b) reference proxy",
	"genservice": "(c) genservice",
}

func (r *results) maxConc() int { return slices.Max(r.opt.concs) }

// failures lists every phase with failed calls.
func (r *results) failures() []string {
	var out []string
	for ri, round := range r.rounds {
		for ci, byTarget := range round {
			for _, name := range targetNames {
				if p := byTarget[name]; p.errs > 0 {
					out = append(out, fmt.Sprintf("round %d, %d callers, %s: %d failed, first: %v", ri+1, r.opt.concs[ci], name, p.errs, p.firstErr))
				}
			}
		}
	}
	for ri, s := range r.streams {
		if s.errs > 0 {
			out = append(out, fmt.Sprintf("round %d, LlmStream: %d failed, first: %v", ri+1, s.errs, s.firstErr))
		}
	}
	for _, u := range r.uploads {
		if u.errs > 0 {
			out = append(out, fmt.Sprintf("uploads, %d in flight: %d failed, first: %v", u.conc, u.errs, u.firstErr))
		}
	}
	for _, p := range r.profile {
		if p.phase.errs > 0 {
			out = append(out, fmt.Sprintf("in-process %s (profile run): %d failed, first: %v", p.role, p.phase.errs, p.phase.firstErr))
		}
	}
	return out
}

func median[T int64 | float64 | time.Duration | uint64](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// across returns f of each round's phase for conc index ci and target name.
func across[T any](r *results, ci int, name string, f func(phase) T) []T {
	var out []T
	for _, round := range r.rounds {
		if ci < len(round) {
			if p, ok := round[ci][name]; ok {
				out = append(out, f(p))
			}
		}
	}
	return out
}

// small is the median figures of one target at one concurrency.
type small struct {
	p50, p99, add50, add99 time.Duration
	rate                   float64
	procCPU, benchCPU      time.Duration
	rssMax                 uint64
	calls                  int64
	logPerCall             float64
	switches               float64
}

func (r *results) small(ci int, name string) small {
	var s small
	s.p50 = median(across(r, ci, name, func(p phase) time.Duration { return p.p50 }))
	s.p99 = median(across(r, ci, name, func(p phase) time.Duration { return p.p99 }))
	s.rate = median(across(r, ci, name, func(p phase) float64 { return p.rate }))
	s.procCPU = median(across(r, ci, name, func(p phase) time.Duration { return p.procCPU }))
	s.benchCPU = median(across(r, ci, name, func(p phase) time.Duration { return p.benchCPU }))
	s.rssMax = median(across(r, ci, name, func(p phase) uint64 { return p.rssMax }))
	s.switches = median(across(r, ci, name, func(p phase) float64 { return p.switches }))
	s.calls = median(across(r, ci, name, func(p phase) int64 { return int64(p.calls) }))
	s.logPerCall = median(across(r, ci, name, func(p phase) float64 {
		if p.calls == 0 {
			return 0
		}
		return float64(p.logLines) / float64(p.calls)
	}))
	if name != "direct" {
		var a50, a99 []time.Duration
		for _, round := range r.rounds {
			if ci < len(round) {
				d, p := round[ci]["direct"], round[ci][name]
				a50 = append(a50, p.p50-d.p50)
				a99 = append(a99, p.p99-d.p99)
			}
		}
		s.add50, s.add99 = median(a50), median(a99)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func mib(b uint64) string        { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func fms(d time.Duration) string { return fmt.Sprintf("%.3f ms", ms(d)) }
func fadd(d time.Duration) string {
	return fmt.Sprintf("%+.3f ms", ms(d))
}

// verdict says whether got ≤ limit and by how much.
func verdict(ok bool, margin string) string {
	if ok {
		return "**met**" + margin
	}
	return "**missed**" + margin
}

func (r *results) concIndex(c int) int { return slices.Index(r.opt.concs, c) }

func (r *results) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	o := r.opt
	m := r.machine
	w("## genservice benchmark\n\n")
	w("Machine: %d CPUs (%s), %s RAM, Linux %s, %s, GOMAXPROCS %d; load average %s at the start, %s at the end. ",
		m.cpus, m.model, m.memory, m.kernel, m.goVer, runtime.GOMAXPROCS(0), m.load, cmp.Or(r.loadEnd, loadAvg()))
	if o.only == "attack" {
		w("Run: the attack phase only (`-only %s`)", o.only)
		if r.elapsed > 0 {
			w(", %.0f s in all", r.elapsed.Seconds())
		}
		w(".\n\n")
		r.attackMarkdown(w)
		return b.String()
	}
	w("Run: %d round(s), %s per measurement after a %s warm-up, callers %v", len(r.rounds), o.duration, o.warmup, o.concs)
	if r.elapsed > 0 {
		w(", %.0f s in all", r.elapsed.Seconds())
	}
	w(". Every figure is the median of the per-round figures.\n\n")
	w("Targets, all against one in-process livepeertest simulator (plain HTTP on 127.0.0.1): ")
	w("(a) direct: JSON POST with livepeer.NewTransport's settings; ")
	w("(b) reference proxy: bare mTLS gRPC server, one http.Client call, nothing else (child process); ")
	w("(c) genservice: the real `genservice serve` binary with policy, in-flight cap, metrics, admin listener and the JSON log at info (child process). ")
	w("gRPC clients: %d grpc.ClientConns per target, caller w uses conn w mod min(callers, %d); TLS 1.3 with a client certificate.\n\n", connsPerTarget, connsPerTarget)

	if len(r.rounds) > 0 {
		w("### Small unary calls (TextToImage)\n\n")
		w("| callers | target | p50 | p99 | added p50 | added p99 | calls/s | server CPU/call | server context switches/call | simulator+client CPU/call |\n")
		w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for ci, conc := range o.concs {
			for _, name := range targetNames {
				s := r.small(ci, name)
				add50, add99, proc, sw := "—", "—", "—", "—"
				if name != "direct" {
					add50, add99 = fadd(s.add50), fadd(s.add99)
					proc, sw = fmt.Sprintf("%.0f µs", us(s.procCPU)), fmt.Sprintf("%.1f", s.switches)
				}
				w("| %d | %s | %s | %s | %s | %s | %.0f | %s | %s | %.0f µs |\n", conc, targetLabel[name], fms(s.p50), fms(s.p99), add50, add99, s.rate, proc, sw, us(s.benchCPU))
			}
		}
		w("\n\"added\" is the target's percentile minus direct's in the same round. \"server CPU\" is the proxy process's own user+system time (/proc/<pid>/stat) per call, ")
		w("its context switches are summed over its threads; \"simulator+client\" is this process's CPU (getrusage): it runs the simulator and the callers of all three targets.\n\n")

		w("### DESIGN.md §10 targets\n\n")
		w("| target | measured | verdict |\n|---|---|---|\n")
		if ci := r.concIndex(1); ci >= 0 {
			g, ref := r.small(ci, "genservice"), r.small(ci, "refproxy")
			w("| 1 caller: added latency ≤ 0.5 ms p50 | %s (reference proxy %s) | %s |\n", fadd(g.add50), fadd(ref.add50), budget(g.add50, 500*time.Microsecond))
			w("| 1 caller: added latency ≤ 1.5 ms p99 | %s (reference proxy %s) | %s |\n", fadd(g.add99), fadd(ref.add99), budget(g.add99, 1500*time.Microsecond))
		}
		if ci := r.concIndex(16); ci >= 0 {
			g, ref := r.small(ci, "genservice"), r.small(ci, "refproxy")
			w("| 16 callers: added latency ≤ 1.5× the reference proxy's, p50 | %s vs %s | %s |\n", fadd(g.add50), fadd(ref.add50), ratioVerdict(g.add50, ref.add50, 1.5))
			if ref.add99 > 0 {
				w("| 16 callers: added latency ≤ 1.5× the reference proxy's, p99 | %s vs %s | %s |\n", fadd(g.add99), fadd(ref.add99), ratioVerdict(g.add99, ref.add99, 1.5))
			} else {
				w("| 16 callers: added latency ≤ 1.5× the reference proxy's, p99 | p99 %s vs %s (direct %s) | not comparable: direct's own p99 is the larger, so \"added\" p99 is not defined; genservice's p99 is %.2f× the reference proxy's |\n",
					fms(g.p99), fms(ref.p99), fms(r.small(ci, "direct").p99), float64(g.p99)/float64(max(ref.p99, 1)))
			}
		}
		for ci, conc := range o.concs {
			g, ref := r.small(ci, "genservice"), r.small(ci, "refproxy")
			w("| ≤ 250 µs CPU per small unary call, every interceptor on (%d caller%s) | %.0f µs (reference proxy %.0f µs) | %s |\n",
				conc, plural(conc), us(g.procCPU), us(ref.procCPU), budget(g.procCPU, 250*time.Microsecond))
		}
	}
	if len(r.streams) > 0 {
		s := r.streamMedians()
		w("| streaming: ≤ 1 ms p50 added to the first event | %s (p99 %s) | %s |\n", fadd(s.ttfeG50-s.ttfeD50), fadd(s.ttfeG99-s.ttfeD99), budget(s.ttfeG50-s.ttfeD50, time.Millisecond))
		// Each event's delivery time is measured from the moment the simulator flushed
		// it. An event held back until the next arrives would be late by the interval.
		added50, added99 := s.deliverG50-s.deliverD50, s.deliverG99-s.deliverD99
		ok := added50 <= time.Millisecond && added99 < streamInterval
		w("| streaming: each event forwarded as it arrives | every event, from the simulator's flush to the caller: %s p50, %s p99 later than direct; events arriving together %.1f%% (direct %.1f%%) | %s |\n",
			fadd(added50), fadd(added99), 100*s.coalG, 100*s.coalD,
			verdict(ok, fmt.Sprintf(" (criterion: ≤ 1 ms p50 and < the %s between events at p99)", streamInterval)))
	}
	if r.peakGen > 0 {
		w("| RSS ≤ 64 MiB at %d concurrent small calls | peak (VmHWM) %s over every small-call phase (reference proxy %s) | %s |\n",
			r.maxConc(), mib(r.peakGen), mib(r.peakRef), budgetBytes(r.peakGen, 64<<20))
	}
	if len(r.uploads) > 0 {
		var parts []string
		for _, u := range r.uploads {
			per, mult := u.perCall()
			parts = append(parts, fmt.Sprintf("%d in flight: peak %s above the idle RSS, %s (%.1f× the payload) per call", u.conc, mib(u.excess()), mib(per), mult))
		}
		slope, fixed, ok := r.uploadSlope()
		if ok {
			parts = append(parts, fmt.Sprintf("each further call in flight: %s = %.1f× the payload, plus %s whatever the count", mib(uint64(max(slope, 0))), float64(slope)/uploadBytes, mib(uint64(max(fixed, 0)))))
			w("| 10 MiB uploads: memory bounded by in-flight calls × a small multiple (≤ %.0f×) of the payload | %s | %s |\n",
				uploadMultiple, strings.Join(parts, "; "), verdict(float64(slope) <= uploadMultiple*uploadBytes, ""))
		} else {
			w("| 10 MiB uploads: memory bounded by in-flight calls × a small multiple (≤ %.0f×) of the payload | %s | needs two levels of uploads in flight |\n", uploadMultiple, strings.Join(parts, "; "))
		}
	}
	w("\n")

	if len(r.streams) > 0 {
		s := r.streamMedians()
		w("### LlmStream (%d events %s apart, plus the final one; %d calls per round each way, alternating)\n\n", streamEvents, streamInterval, o.streamCalls)
		w("| | direct p50 | direct p99 | genservice p50 | genservice p99 | added p50 | added p99 |\n|---|---:|---:|---:|---:|---:|---:|\n")
		w("| call start → first event | %s | %s | %s | %s | %s | %s |\n", fms(s.ttfeD50), fms(s.ttfeD99), fms(s.ttfeG50), fms(s.ttfeG99), fadd(s.ttfeG50-s.ttfeD50), fadd(s.ttfeG99-s.ttfeD99))
		w("| simulator flush → caller, every event | %s | %s | %s | %s | %s | %s |\n", fms(s.deliverD50), fms(s.deliverD99), fms(s.deliverG50), fms(s.deliverG99), fadd(s.deliverG50-s.deliverD50), fadd(s.deliverG99-s.deliverD99))
		w("| gap between arrivals | %s | | %s | | %s | |\n\n", fms(s.gapD50), fms(s.gapG50), fadd(s.gapG50-s.gapD50))
		w("The simulator is served through a tap of the benchmark that notes when each event is flushed to the connection, on the callers' clock.\n\n")
	}

	if r.peakGen > 0 || len(r.uploads) > 0 {
		w("### Memory (resident set of the server processes)\n\n")
		w("| | genservice | reference proxy |\n|---|---:|---:|\n")
		w("| after start | %s | %s |\n", mib(r.idleGen), mib(r.idleRef))
		if ci := r.concIndex(r.maxConc()); ci >= 0 && len(r.rounds) > 0 {
			w("| highest VmRSS sampled during the %d-caller phases | %s | %s |\n", r.maxConc(), mib(r.small(ci, "genservice").rssMax), mib(r.small(ci, "refproxy").rssMax))
		}
		w("| peak (VmHWM) after every small-call phase | %s | %s |\n\n", mib(r.peakGen), mib(r.peakRef))
	}
	if len(r.uploads) > 0 {
		w("10 MiB ImageToImage uploads through genservice (`--max-message-size 32MiB`), %d call%s per caller in each of two batches; the peak is reset (clear_refs) before each level:\n\n", o.uploadCalls, plural(o.uploadCalls))
		w("| in flight | p50 direct | p50 genservice | RSS before | peak, 1st batch | peak, 2nd batch | highest sampled | above RSS before, per call in flight |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, u := range r.uploads {
			per, mult := u.perCall()
			w("| %d | %.1f ms | %.1f ms | %s | %s | %s | %s | %s (%.1f×) |\n", u.conc, ms(u.p50Direct), ms(u.p50Gen), mib(u.baseline), mib(u.peak1), mib(u.peak2), mib(u.rssSampled), mib(per), mult)
		}
		if r.uploads[0].peakResetUnsupported {
			w("\n(clear_refs was not writable: peaks are since the process started; \"highest sampled\" is the phase's own.)\n")
		}
		w("\n")
	}

	if len(r.rounds) > 0 {
		w("Cross-checks: ")
		if ci := r.concIndex(16); ci >= 0 {
			w("genservice wrote %.2f log lines per call (16 callers); ", r.small(ci, "genservice").logPerCall)
		}
		if r.overheadCount > 0 {
			w("its own `genservice_call_overhead_seconds` (handling time minus upstream time) averages %.0f µs over %d TextToImage calls; ", us(r.overheadMean), r.overheadCount)
		}
		w("failed calls: %d.\n\n", len(r.failures()))
	}
	if len(r.profile) > 0 {
		w("In-process profile run, 16 callers (genservice with serve's wiring and its log going to io.Discard; CPU is this whole process, callers and simulator included):\n\n")
		w("| server | p50 | p99 | calls/s | process CPU/call |\n|---|---:|---:|---:|---:|\n")
		for _, p := range r.profile {
			w("| %s | %s | %s | %.0f | %.0f µs |\n", p.role, fms(p.phase.p50), fms(p.phase.p99), p.phase.rate, us(p.phase.benchCPU))
		}
		w("\nCPU profile: `%s`; `go tool pprof -top -tagfocus=role=genservice %s` (or role=refproxy).\n\n", o.cpuProfile, o.cpuProfile)
	}
	r.attackMarkdown(w)
	return b.String()
}

// attackMarkdown writes the "Under attack" section, if the attack phase ran.
func (r *results) attackMarkdown(w func(format string, a ...any)) {
	a := r.attack
	if a == nil || len(a.floods) == 0 {
		return
	}
	w("### Under attack\n\n")
	w("Each part runs its own fresh `genservice serve` (mTLS, the policy, metrics, the JSON log at info; the limits as said), warmed up with one ordinary call. ")
	w("RSS before is VmRSS then; the peak is VmHWM after resetting it (clear_refs), or the highest VmRSS sampled every 5 ms if higher; growth is peak − before.\n\n")
	w("gzip flood: TextToImage with a prompt of %d MiB of one letter, %.1f KB gzip-compressed on the wire (`grpc.UseCompressor(gzip.Name)`), from %d connections with one caller each calling back to back, %d calls in all (TLS 1.3; `--max-message-size %s`, the default):\n\n",
		attackPromptBytes>>20, float64(a.wireBytes)/1000, r.opt.attackConc, r.opt.attackCalls, attackMaxMessage)
	w("| callers | calls | time | how they ended | RSS before | peak | growth | RSS after |\n|---|---:|---:|---|---:|---:|---:|---:|\n")
	for _, f := range a.floods {
		label := "without a client certificate"
		if f.withCert {
			label = "with a client certificate (baseline)"
		}
		w("| %s | %d | %.2f s | %s | %s | %s | **+%s** | %s |\n", label, f.calls, f.elapsed.Seconds(), outcomeList(f.outcomes), mib(f.before), mib(f.peak()), mib(f.growth()), mib(f.after))
	}
	w("\n")
	if s := a.stuck; s != nil {
		w("Non-reading LlmStream callers: genservice with `--max-in-flight %d --stream-idle-timeout %s` (production default 60s; shortened to keep the run short). ", s.streams, s.idle)
		w("The simulator answers each with %d events of about 5 KB; %d callers with a certificate and fixed 64 KiB windows (stream and connection), one connection each, open an LlmStream and never read. ", attackStreamEvents, s.streams)
		w("From another connection a TextToImage is made once they hold every slot, then every 50 ms until one succeeds; the release time runs from the first stream's start to that success.\n\n")
		w("\"All ended\" is when genservice's `genservice_call_errors_total` counted every stuck call as CALLER_NOT_READING (polled every 20 ms); only then do the callers read, to see the status they got.\n\n")
		w("| stuck callers | idle timeout | a call meanwhile | first slot free after | all ended after | calls turned away meanwhile | how the streams ended | RSS before | peak | growth |\n|---:|---:|---|---:|---:|---:|---|---:|---:|---:|\n")
		w("| %d | %s | %s | **%.2f s** | %s | %d | %s | %s | %s | +%s |\n\n", s.streams, s.idle, s.whileStuck, s.release.Seconds(), fmtSeconds(s.allReleased), s.overloadedPolls, outcomeList(s.ended), mib(s.before), mib(s.peak()), mib(s.growth()))
	}
	w("| DESIGN.md §10 target | measured | verdict |\n|---|---|---|\n")
	for _, f := range a.floods {
		if !f.withCert {
			base := ""
			if len(a.floods) > 1 {
				base = fmt.Sprintf(" (with a certificate, refused after decompression at the size cap: +%s)", mib(a.floods[1].growth()))
			}
			w("| a flood of unauthenticated, compressed, oversized requests grows RSS by < 50 MiB | +%s over %d calls, %d at once%s | %s |\n",
				mib(f.growth()), f.calls, f.conc, base, verdict(f.growth() < attackRSSLimit && f.unexpected == 0, fmt.Sprintf(" (%.0f%% of the bound)", 100*float64(f.growth())/attackRSSLimit)))
		}
	}
	if s := a.stuck; s != nil {
		ok := s.release <= s.idle+attackReleaseSlack && s.allReleased > 0 && s.allReleased <= s.idle+attackReleaseSlack && s.ended[outcomeKey(codes.ResourceExhausted, "CALLER_NOT_READING")] == s.streams
		w("| non-reading stream callers release their slots within the stream idle timeout | first slot free %.2f s after the streams started, all %d ended after %s, idle timeout %s; RSS +%s while they were stuck | %s |\n",
			s.release.Seconds(), s.streams, fmtSeconds(s.allReleased), s.idle, mib(s.growth()), verdict(ok, fmt.Sprintf(" (criterion: ≤ idle timeout + %s)", attackReleaseSlack)))
	}
	w("\n")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// uploadMultiple is the "small multiple" of the payload allowed per upload in flight:
// the received message and its decoded copy, each with the garbage collector's
// default headroom (GOGC=100).
const uploadMultiple = 4.0

// excess is the phase's peak RSS above the RSS before any upload.
func (u uploadPhase) excess() uint64 {
	peak := max(u.peak1, u.peak2)
	if u.peakResetUnsupported {
		peak = u.rssSampled
	}
	if peak < u.baseline {
		return 0
	}
	return peak - u.baseline
}

// perCall is the excess per call in flight, and that as a multiple of the payload.
func (u uploadPhase) perCall() (uint64, float64) {
	per := u.excess() / uint64(u.conc)
	return per, float64(per) / uploadBytes
}

// uploadSlope fits the excess of the lowest and highest levels: memory per further call
// in flight, and the part that does not depend on how many are in flight.
func (r *results) uploadSlope() (slope, fixed int64, ok bool) {
	if len(r.uploads) < 2 {
		return 0, 0, false
	}
	lo, hi := r.uploads[0], r.uploads[len(r.uploads)-1]
	if hi.conc == lo.conc {
		return 0, 0, false
	}
	slope = (int64(hi.excess()) - int64(lo.excess())) / int64(hi.conc-lo.conc)
	fixed = int64(lo.excess()) - slope*int64(lo.conc)
	return slope, fixed, true
}

func budget(got, limit time.Duration) string {
	if got <= limit {
		return verdict(true, fmt.Sprintf(" (%.0f%% of the %s budget)", 100*float64(got)/float64(limit), fmtLimit(limit)))
	}
	return verdict(false, fmt.Sprintf(" by %s (%s > %s)", fmtLimit(got-limit), fmtLimit(got), fmtLimit(limit)))
}

func fmtLimit(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", us(d))
	}
	return fmt.Sprintf("%.3f ms", ms(d))
}

func budgetBytes(got, limit uint64) string {
	if got <= limit {
		return verdict(true, fmt.Sprintf(" (%.0f%% of %s)", 100*float64(got)/float64(limit), mib(limit)))
	}
	return verdict(false, fmt.Sprintf(" by %s", mib(got-limit)))
}

func ratioVerdict(got, ref time.Duration, limit float64) string {
	allowed := time.Duration(float64(max(ref, 0)) * limit)
	if got <= allowed {
		r := ""
		if ref > 0 {
			r = fmt.Sprintf(" (%.2f×)", float64(got)/float64(ref))
		}
		return verdict(true, r)
	}
	r := "n/a"
	if ref > 0 {
		r = fmt.Sprintf("%.2f×", float64(got)/float64(ref))
	}
	return verdict(false, fmt.Sprintf(" by %s (%s; allowed %s)", fmtLimit(got-allowed), r, fadd(allowed)))
}

func (r *results) streamMedians() streamRound {
	var ok []streamRound
	for _, s := range r.streams {
		if s.calls > 0 {
			ok = append(ok, s)
		}
	}
	d := func(g func(streamRound) time.Duration) time.Duration {
		var v []time.Duration
		for _, s := range ok {
			v = append(v, g(s))
		}
		return median(v)
	}
	f := func(g func(streamRound) float64) float64 {
		var v []float64
		for _, s := range ok {
			v = append(v, g(s))
		}
		return median(v)
	}
	return streamRound{
		ttfeD50:    d(func(s streamRound) time.Duration { return s.ttfeD50 }),
		ttfeD99:    d(func(s streamRound) time.Duration { return s.ttfeD99 }),
		ttfeG50:    d(func(s streamRound) time.Duration { return s.ttfeG50 }),
		ttfeG99:    d(func(s streamRound) time.Duration { return s.ttfeG99 }),
		deliverD50: d(func(s streamRound) time.Duration { return s.deliverD50 }),
		deliverD99: d(func(s streamRound) time.Duration { return s.deliverD99 }),
		deliverG50: d(func(s streamRound) time.Duration { return s.deliverG50 }),
		deliverG99: d(func(s streamRound) time.Duration { return s.deliverG99 }),
		gapD50:     d(func(s streamRound) time.Duration { return s.gapD50 }),
		gapG50:     d(func(s streamRound) time.Duration { return s.gapG50 }),
		coalD:      f(func(s streamRound) float64 { return s.coalD }),
		coalG:      f(func(s streamRound) float64 { return s.coalG }),
	}
}

// loadAvg is the 1-minute load average: other work on the machine competes for the
// same cores.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}
