// Command genservice serves the Livepeer AI generation API over gRPC with mTLS.
//
//	genservice serve   run the service (see genservice serve --help)
//	genservice demo      run a self-contained demo: throwaway CA, gateway simulator, real calls
//	genservice simulate  run the gateway simulator alone, for client development
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"genservice/app"
)

const usage = `Usage: genservice <command> [flags]

Commands:
  serve     serve livepeer.generation.v1.GenerationService over mTLS (genservice serve --help)
  demo      start a local demo: throwaway certificates, a Livepeer gateway simulator and the
            real service; makes a few calls and prints grpcurl lines to try (genservice demo --help)
  simulate  run the Livepeer gateway simulator alone, accepting a key of your choosing, to
            develop clients without a Livepeer account (genservice simulate --help)
  version   print the version
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	ctx, stop := shutdownSignals()
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		var c *serveConfig
		c, err = parseServe(args[1:], os.Getenv, readKeyFile)
		if err == nil {
			c.Version = version
			err = app.Run(ctx, c, newLogger(c.LogLevel), nil)
		}
	case "demo":
		err = demo(ctx, args[1:], os.Stdout)
	case "simulate":
		err = simulate(ctx, args[1:], os.Stdout, os.Getenv)
	case "version", "--version":
		fmt.Println(version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "genservice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(os.Stderr, "genservice %s: %v\n", args[0], err)
	return 1
}

// shutdownSignals returns a context cancelled by the first SIGTERM or SIGINT, which
// starts a graceful shutdown. A second signal during the shutdown exits at once: an
// operator pressing Ctrl-C twice, or a supervisor that escalates, must not wait for the
// whole grace period.
func shutdownSignals() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "genservice: second signal (%v) during shutdown: exiting now\n", sig)
			os.Exit(exitSecondSignal)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// exitSecondSignal is the exit status after a second signal cut the shutdown short.
const exitSecondSignal = 130
