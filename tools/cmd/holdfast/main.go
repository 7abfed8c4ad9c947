// Command holdfast is the Holdfast command line.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/holdfast/holdfast/tools/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
