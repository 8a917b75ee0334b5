package authz

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"genservice/reload"
)

// Config configures an Enforcer.
type Config struct {
	// Path is the policy file.
	Path string
	// KnownMethods are the RPC names rules may list.
	KnownMethods []string
	// Logger receives reload outcomes.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt with its error.
	OnReload func(err error)
}

// Enforcer applies the current policy. The policy is swapped atomically on reload. A
// principal's in-flight count survives every reload, so new limits apply to the calls
// already running; its rate bucket survives a reload that keeps its rate and burst.
type Enforcer struct {
	policy  *reload.Value[*Policy]
	callers sync.Map // principal -> *callerState
}

// callerState is what the enforcer remembers of one principal across reloads.
type callerState struct {
	// inFlight counts the principal's admitted calls that have not ended, whatever the
	// limits were when they were admitted.
	inFlight atomic.Int64
	bucket   atomic.Pointer[rateBucket]
}

// rateBucket is a token bucket for one rate and burst.
type rateBucket struct {
	rate    float64
	burst   int
	limiter *rate.Limiter
}

// New loads the policy file; it fails if the first load does.
func New(cfg Config) (*Enforcer, error) {
	p, err := reload.New(reload.Config[*Policy]{
		Paths:    []string{cfg.Path},
		Load:     func() (*Policy, [32]byte, error) { return load(cfg.Path, cfg.KnownMethods) },
		Rejected: "policy file rejected; keeping the current policy",
		Reloaded: "policy reloaded",
		OnReload: cfg.OnReload,
		Logger:   cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Enforcer{policy: p}, nil
}

func load(path string, knownMethods []string) (*Policy, [32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("cannot read the policy file: %v", err)
	}
	p, err := Parse(data, knownMethods)
	return p, sha256.Sum256(data), err
}

// Reload re-reads the policy file. A file that fails to read, parse or validate keeps
// the current policy; the error (with the line at fault) is logged and returned.
func (e *Enforcer) Reload() error {
	_, err := e.policy.Reload()
	return err
}

// Watch reloads the policy whenever the file changes, until ctx ends.
func (e *Enforcer) Watch(ctx context.Context) { e.policy.Watch(ctx) }

// DenialKind says why a call was refused.
type DenialKind int

const (
	// NotAllowed: no rule allows the principal to call the method.
	NotAllowed DenialKind = iota + 1
	// RateLimited: the principal's request rate is above its rule's rate.
	RateLimited
	// TooManyInFlight: the principal has max_in_flight calls running.
	TooManyInFlight
)

// Denial describes a refused call.
type Denial struct {
	Kind DenialKind
	// RetryAfter is when a token is next available (RateLimited), or a short hint
	// (TooManyInFlight).
	RetryAfter time.Duration
	Limits     Limits
}

// Admit decides whether principal may call method now. On success the caller must call
// release when the call ends.
func (e *Enforcer) Admit(principal, method string) (release func(), d *Denial) {
	limits, ok := e.policy.Current().Allows(principal, method)
	if !ok {
		return nil, &Denial{Kind: NotAllowed}
	}
	// Every admitted call is counted, limited or not, so that a reload which adds or
	// lowers max_in_flight sees the calls already running.
	c := e.caller(principal)
	if n := c.inFlight.Add(1); limits.MaxInFlight > 0 && n > int64(limits.MaxInFlight) {
		c.inFlight.Add(-1)
		return nil, &Denial{Kind: TooManyInFlight, RetryAfter: time.Second, Limits: limits}
	}
	if limits.Rate > 0 {
		lim := c.limiter(limits)
		now := time.Now()
		r := lim.ReserveN(now, 1)
		if delay := r.DelayFrom(now); !r.OK() || delay > 0 {
			r.CancelAt(now)
			c.inFlight.Add(-1)
			return nil, &Denial{Kind: RateLimited, RetryAfter: delay, Limits: limits}
		}
	}
	var once sync.Once
	return func() { once.Do(func() { c.inFlight.Add(-1) }) }, nil
}

// caller returns the principal's state, creating it on first use.
func (e *Enforcer) caller(principal string) *callerState {
	if v, ok := e.callers.Load(principal); ok {
		return v.(*callerState)
	}
	v, _ := e.callers.LoadOrStore(principal, &callerState{})
	return v.(*callerState)
}

// limiter returns the principal's token bucket for l's rate and burst, starting a full
// one when they changed on reload.
func (c *callerState) limiter(l Limits) *rate.Limiter {
	for {
		cur := c.bucket.Load()
		if cur != nil && cur.rate == l.Rate && cur.burst == l.Burst {
			return cur.limiter
		}
		nb := &rateBucket{rate: l.Rate, burst: l.Burst, limiter: rate.NewLimiter(rate.Limit(l.Rate), l.Burst)}
		if c.bucket.CompareAndSwap(cur, nb) {
			return nb.limiter
		}
	}
}
