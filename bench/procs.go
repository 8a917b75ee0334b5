package main

// Child processes (genservice and the reference proxy), and what /proc says about them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// child is a server process the benchmark started. It dies with the benchmark: SIGKILL
// on the parent's death (Pdeathsig), and stop on every normal exit path.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string // gRPC address
	admin string // genservice admin address ("" if none)
	// logPath, if set, is the file the child's stdout and stderr go to: a plain file
	// costs the child one write(2) per log line and this process nothing, like a
	// log sink with spare capacity (a pipe would wake a reader in this process on
	// every call, on the same two cores).
	logPath   string
	logOffset int64 // how far countLogLines has read
	tail      tailBuffer
	done      chan struct{}
	once      sync.Once
}

// children is every child started, so cleanup can stop them all.
var (
	childrenMu sync.Mutex
	children   []*child
)

func stopChildren() {
	childrenMu.Lock()
	cs := append([]*child(nil), children...)
	childrenMu.Unlock()
	for _, c := range cs {
		c.stop()
	}
}

// tailBuffer keeps the last few KiB a child wrote, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4<<10:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// startChild starts cmd and waits until ready returns true for a line of its output:
// of the file logPath if set (stdout and stderr both go there), else of its stdout.
func startChild(ctx context.Context, name string, cmd *exec.Cmd, logPath string, ready func(line []byte) bool) (*child, error) {
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	var out io.ReadCloser
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		if out, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		cmd.Stderr = &tailWriter{&c.tail}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	childrenMu.Lock()
	children = append(children, c)
	childrenMu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	readyc := make(chan error, 1)
	if logPath == "" {
		go func() {
			r := bufio.NewReader(out)
			for {
				line, err := r.ReadBytes('\n')
				c.tail.Write(line)
				if err != nil {
					readyc <- fmt.Errorf("%s exited before it was ready: %v\n%s", name, err, c.tail.String())
					return
				}
				if ready(line) {
					readyc <- nil
					_, _ = io.Copy(&tailWriter{&c.tail}, r)
					return
				}
			}
		}()
	} else {
		go func() {
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			var seen int
			for {
				data, _ := os.ReadFile(logPath)
				for {
					i := bytes.IndexByte(data[seen:], '\n')
					if i < 0 {
						break
					}
					line := data[seen : seen+i+1]
					seen += i + 1
					if ready(line) {
						c.logOffset = int64(seen)
						readyc <- nil
						return
					}
				}
				select {
				case <-c.done:
					readyc <- fmt.Errorf("%s exited before it was ready (%v)\n%s", name, cmd.ProcessState, c.logTail())
					return
				case <-t.C:
				}
			}
		}()
	}
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case err := <-readyc:
		if err != nil {
			c.stop()
			return nil, err
		}
		return c, nil
	case <-t.C:
		c.stop()
		return nil, fmt.Errorf("%s did not start within 60 s\n%s", name, c.logTail())
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// countLogLines returns how many complete lines the child logged since the last call.
func (c *child) countLogLines() int64 {
	if c.logPath == "" {
		return 0
	}
	f, err := os.Open(c.logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(c.logOffset, io.SeekStart); err != nil {
		return 0
	}
	data, _ := io.ReadAll(f)
	end := bytes.LastIndexByte(data, '\n') + 1 // a partial last line counts next time
	c.logOffset += int64(end)
	return int64(bytes.Count(data[:end], []byte{'\n'}))
}

// logTail is the end of the child's output, for error messages.
func (c *child) logTail() string {
	if c.logPath == "" {
		return c.tail.String()
	}
	f, err := os.Open(c.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 4<<10 {
		_, _ = f.Seek(-4<<10, io.SeekEnd)
	}
	data, _ := io.ReadAll(f)
	return strings.TrimSpace(string(data))
}

type tailWriter struct{ t *tailBuffer }

func (w *tailWriter) Write(p []byte) (int, error) { w.t.Write(p); return len(p), nil }

// alive returns an error if the child has exited.
func (c *child) alive() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited unexpectedly (%v)\n%s", c.name, c.cmd.ProcessState, c.logTail())
	default:
		return nil
	}
}

// stop ends the child: SIGTERM, then SIGKILL after 3 s.
func (c *child) stop() {
	c.once.Do(func() {
		_ = c.stdin.Close()
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(3 * time.Second)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on every
// Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpu returns the child's user+system CPU time so far.
func (c *child) cpu() (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.pid()), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it start at ") ".
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/<pid>/stat format")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/<pid>/stat format")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc/<pid>/stat format")
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// memory returns VmRSS and VmHWM (peak RSS) in bytes.
func (c *child) memory() (rss, hwm uint64, err error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.pid()), "status"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/<pid>/status %s: %v", k, err)
		}
		*dst = n << 10
	}
	return rss, hwm, nil
}

// switches returns the context switches (voluntary + involuntary) of all the child's
// threads so far: each is a thread going to sleep or being preempted.
func (c *child) switches() int64 {
	dir := filepath.Join("/proc", strconv.Itoa(c.pid()), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// resetPeak resets VmHWM to the current RSS (Linux ≥ 4.0: "5" > clear_refs).
func (c *child) resetPeak() error {
	return os.WriteFile(filepath.Join("/proc", strconv.Itoa(c.pid()), "clear_refs"), []byte("5"), 0)
}

// rssSampler records the highest VmRSS seen while it runs, as a cross-check of VmHWM
// (and the only figure if clear_refs is not writable).
type rssSampler struct {
	max  atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(c *child, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, _, err := c.memory(); err == nil && rss > s.max.Load() {
				s.max.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) finish() uint64 {
	close(s.stop)
	<-s.done
	return s.max.Load()
}

// childEnv is the environment of a child: the benchmark's, less anything that would
// configure genservice differently (tracing, GENSERVICE_*, other keys), plus the key.
func childEnv(key string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "OTEL_") || strings.HasPrefix(name, "GENSERVICE_") || strings.HasPrefix(name, "LIVEPEER_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LIVEPEER_API_KEY="+key, "OTEL_SDK_DISABLED=true")
}

// buildGenservice builds cmd/genservice into dir, from the module the benchmark runs in.
func buildGenservice(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	modCmd := exec.CommandContext(ctx, goBin, "env", "GOMOD")
	gomod, err := modCmd.Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("run the benchmark from inside the genservice module (go run ./bench), or pass -genservice-bin")
	}
	out := filepath.Join(dir, "genservice")
	cmd := exec.CommandContext(ctx, goBin, "build", "-ldflags=-s -w -X main.version=bench", "-o", out, "./cmd/genservice")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/genservice: %v\n%s", err, msg)
	}
	return out, nil
}

// startGenservice runs `genservice serve` against the simulator, with every feature a
// production deployment has on: mTLS, the policy, the in-flight cap, metrics (admin
// listener on), and the JSON log at info on stderr (one line per call) into logPath.
// extra flags come last, so they override the ones here (the flag package keeps the
// last value given).
func startGenservice(ctx context.Context, bin, logPath string, f *certFiles, gatewayURL, key string, extra ...string) (*child, error) {
	args := []string{"serve",
		"--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0",
		"--tls-cert", f.serverCert, "--tls-key", f.serverKey, "--client-ca", f.ca,
		"--gateway-url", gatewayURL,
		"--policy", f.policy,
		"--max-in-flight", "512",
		"--max-message-size", "32MiB",
		"--log-level", "info",
		"--drain-delay", "0s", "--shutdown-grace", "2s",
	}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Env = childEnv(key)
	var addr, admin string
	c, err := startChild(ctx, "genservice", cmd, logPath, func(line []byte) bool {
		var rec struct {
			Msg         string `json:"msg"`
			Listen      string `json:"listen"`
			AdminListen string `json:"adminListen"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != "genservice serving" {
			return false
		}
		addr, admin = rec.Listen, rec.AdminListen
		return true
	})
	if err != nil {
		return nil, err
	}
	c.addr, c.admin = addr, admin
	return c, nil
}

// startRefProxy re-runs this benchmark binary as the reference proxy.
func startRefProxy(ctx context.Context, f *certFiles, gatewayURL, key string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-refproxy-serve", "-listen", "127.0.0.1:0", "-gateway-url", gatewayURL, "-cert-dir", f.dir)
	cmd.Env = childEnv(key)
	var addr string
	c, err := startChild(ctx, "refproxy", cmd, "", func(line []byte) bool {
		a, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "listening ")
		addr = a
		return ok
	})
	if err != nil {
		return nil, err
	}
	c.addr = addr
	return c, nil
}
