package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

// simulate runs the Livepeer gateway simulator on its own, so that client teams can
// develop and test against a real genservice (`genservice serve --gateway-url` pointed
// here) without a Livepeer account or key. The key it accepts is the caller's choice,
// read like serve's: from LIVEPEER_API_KEY_FILE or LIVEPEER_API_KEY, never a flag.
func simulate(ctx context.Context, args []string, out io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("genservice simulate", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8937", "address of the simulated gateway (a go-livepeer gateway's usual port)")
	studio := fs.Bool("studio", false, "behave like Livepeer Studio: its paths, pipelines, multipart coercion and collapsed 500s")
	goLivepeer := fs.Bool("go-livepeer", false, "behave like a go-livepeer gateway: served at the root, dropped connections when no orchestrator serves the model")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: genservice simulate [flags]

Runs the Livepeer gateway simulator until Ctrl-C. It accepts exactly the key in
LIVEPEER_API_KEY_FILE or LIVEPEER_API_KEY (as "Authorization: Bearer <key>"), answers every
pipeline with generated results, and serves their media. Point genservice at it:

  LIVEPEER_API_KEY=dev-key genservice simulate &
  LIVEPEER_API_KEY=dev-key genservice serve --gateway-url http://127.0.0.1:8937/api/generate ...

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *studio && *goLivepeer {
		return errors.New("--studio and --go-livepeer are exclusive")
	}
	raw, origin := getenv("LIVEPEER_API_KEY"), "LIVEPEER_API_KEY"
	if file := getenv("LIVEPEER_API_KEY_FILE"); file != "" {
		if raw != "" {
			return errors.New("both LIVEPEER_API_KEY and LIVEPEER_API_KEY_FILE are set; set only one")
		}
		data, err := readKeyFile(file)
		if err != nil {
			return fmt.Errorf("LIVEPEER_API_KEY_FILE: %v", err)
		}
		raw, origin = strings.TrimSuffix(string(data), "\n"), "file "+file
	}
	// The same rules as serve's, so a key the simulator accepts is one serve accepts.
	key, err := livepeer.ParseKey(raw)
	if err != nil {
		return fmt.Errorf("%s (the key the simulator accepts; choose any): %v", origin, err)
	}
	sim, err := livepeertest.New(livepeertest.Config{
		APIKey: raw, Addr: *listen, Studio: *studio, GoLivepeer: *goLivepeer,
		MaxRecorded: -1, // a long-running simulator keeps no request bodies
	})
	if err != nil {
		return fmt.Errorf("--listen %s: %v", *listen, err)
	}
	defer sim.Close()
	fmt.Fprintf(out, "gateway simulator listening: %s (key %s from %s)\n", sim.URL(), key.Fingerprint(), origin)
	fmt.Fprintf(out, "point genservice at it: --gateway-url %s\n", sim.URL())
	<-ctx.Done()
	return nil
}
