// Command genservice serves the Livepeer AI generation API over gRPC with mTLS.
//
//	genservice serve   run the service (see genservice serve --help)
//	genservice demo    run a self-contained demo: throwaway CA, gateway simulator, real calls
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `Usage: genservice <command> [flags]

Commands:
  serve     serve livepeer.generation.v1.GenerationService over mTLS (genservice serve --help)
  demo      start a local demo: throwaway certificates, a Livepeer gateway simulator and the
            real service; makes a few calls and prints grpcurl lines to try (genservice demo --help)
  version   print the version
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		var c *serveConfig
		c, err = parseServe(args[1:], os.Getenv, readKeyFile)
		if err == nil {
			err = serve(ctx, c, newLogger(c.LogLevel), nil)
		}
	case "demo":
		err = demo(ctx, args[1:], os.Stdout)
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
