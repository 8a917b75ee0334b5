package main

import (
	"bufio"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"genservice/livepeer"
	"genservice/server"
)

// TestFlagDefaultsAreTheDefaults: every flag starts at the Default* value of the
// package that owns the setting (the one its Config falls back to), or at serve's own
// default*; a new flag must be listed here.
func TestFlagDefaultsAreTheDefaults(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var c serveConfig
	serveFlags(fs, &c) // no Parse: what the flags start at
	for name, tc := range map[string]struct{ got, want any }{
		"listen":                    {c.Listen, defaultListen},
		"tls-cert":                  {c.TLS.CertFile, ""},
		"tls-key":                   {c.TLS.KeyFile, ""},
		"client-ca":                 {c.TLS.ClientCAFile, ""},
		"gateway-url":               {c.GatewayURL, livepeer.DefaultGatewayURL},
		"allow-plaintext-gateway":   {c.AllowPlaintextGateway, false},
		"gateway-ca":                {c.GatewayCA, ""},
		"max-message-size":          {c.MaxMessageSize, server.DefaultMaxMessageSize},
		"max-send-message-size":     {c.MaxSendSize, server.DefaultMaxSendMessageSize},
		"max-conns-without-cert":    {c.MaxCertless, server.DefaultMaxConnsWithoutCert},
		"max-watchers-without-cert": {c.MaxWatchers, server.DefaultMaxWatchersWithoutIdentity},
		"max-connection-idle":       {c.MaxConnIdle, server.DefaultMaxConnectionIdle},
		"shutdown-grace":            {c.ShutdownGrace, defaultShutdownGrace},
		"drain-delay":               {c.DrainDelay, defaultDrainDelay},
		"log-level":                 {c.LogLevel, defaultLogLevel},
		"error-domain":              {c.ErrorDomain, server.DefaultErrorDomain},
		"upstream-max-attempts":     {c.MaxAttempts, livepeer.DefaultMaxAttempts},
		"upstream-connect-timeout":  {c.ConnectTimeout, livepeer.DefaultConnectTimeout},
		"media-allow-host":          {len(c.MediaAllow), 0},
		"max-media-bytes":           {c.MaxMediaBytes, livepeer.DefaultMaxMediaBytes},
		"pipeline-timeout":          {len(c.Timeouts), 0}, // none: livepeer.DefaultTimeouts apply
		"admin-listen":              {c.AdminListen, defaultAdminListen},
		"policy":                    {c.PolicyFile, ""},
		"max-in-flight":             {c.MaxInFlight, server.DefaultMaxInFlight},
		"mesh":                      {c.Mesh, ""},
		"mesh-allow-non-loopback":   {c.AllowNonLoopbackMesh, false},
		"max-connection-age":        {c.MaxConnAge, server.DefaultMaxConnectionAge},
		"max-connection-age-grace":  {c.MaxConnGrace, server.DefaultMaxConnectionAgeGrace},
		"stream-idle-timeout":       {c.StreamIdle, livepeer.DefaultStreamIdleTimeout},
	} {
		if fs.Lookup(name) == nil {
			t.Errorf("no flag --%s", name)
		}
		if tc.got != tc.want {
			t.Errorf("--%s starts at %v, want %v", name, tc.got, tc.want)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Usage, "(default ") {
			t.Errorf("--%s writes its default into its help text; serveUsage prints it from the value: %q", f.Name, f.Usage)
		}
	})
	// Inline media travels in the response message.
	if livepeer.DefaultMaxMediaBytes > server.DefaultMaxSendMessageSize {
		t.Errorf("the default media cap %d does not fit in the default largest response %d", livepeer.DefaultMaxMediaBytes, server.DefaultMaxSendMessageSize)
	}
}

// TestREADMEConfigurationTable: the README's table of flags gives each flag's real
// default. A backquoted default is set on the flag and must read back as the flag's
// default; other words ("required", "none", "off") stand for an empty default.
func TestREADMEConfigurationTable(t *testing.T) {
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) < 5 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`--") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cols[1]), "`-")
		doc := strings.TrimSpace(cols[3])
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		serveFlags(fs, &serveConfig{})
		fl := fs.Lookup(name)
		if fl == nil {
			t.Errorf("README documents --%s, which does not exist", name)
			continue
		}
		seen[name] = true
		if !strings.HasPrefix(doc, "`") {
			if fl.DefValue != "" {
				t.Errorf("README: --%s defaults to %q, the flag to %q", name, doc, fl.DefValue)
			}
			continue
		}
		if err := fs.Set(name, strings.Trim(doc, "`")); err != nil {
			t.Errorf("README: --%s default %s does not parse: %v", name, doc, err)
			continue
		}
		if got := fl.Value.String(); got != fl.DefValue {
			t.Errorf("README: --%s defaults to %s (%s), the flag to %s", name, doc, got, fl.DefValue)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	serveFlags(fs, &serveConfig{})
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			t.Errorf("README's configuration table lacks --%s", f.Name)
		}
	})
}
