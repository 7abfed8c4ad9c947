// Command testsummary turns `go test -json` on stdin into a readable report
// with a closing "N passed, N failed, N skipped" line; it exits 1 when
// anything failed.
package main

import (
	"fmt"
	"os"

	"github.com/holdfast/holdfast/tools/testsummary"
)

func main() {
	c, err := testsummary.Summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if !c.OK() {
		os.Exit(1)
	}
}
