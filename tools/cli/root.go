// Package cli is the holdfast command line: operators' and scripts' way to
// drive holdfastd. Tables for people by default, --json for scripts; every
// failure prints its message code with the reason and what to do.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/version"
)

type app struct {
	conn   Connection
	asJSON bool
	out    io.Writer
}

// Main runs the CLI with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout}
	root := &cobra.Command{
		Use:           "holdfast",
		Short:         "Operate a Holdfast appliance",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.conn.DataDir, "data", "", "holdfastd's data directory, to find its API address and token (default $HOLDFAST_DATA)")
	pf.StringVar(&a.conn.API, "api", "", "API address HOST:PORT (default $HOLDFAST_API, else read from the data directory)")
	pf.StringVar(&a.conn.TokenFile, "token-file", "", "file holding the administrator token (default $HOLDFAST_TOKEN, else DATA/admin.token)")
	pf.BoolVar(&a.asJSON, "json", false, "print JSON instead of tables")
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(a.scenarioCmd(), a.reportCmd(), a.pluginsCmd(), a.logCmd(), a.messagesCmd(), a.agentCmd(),
		a.rewindCmd(), a.snapshotCmd(), a.jobCmd(), a.restoreCmd(), a.storeCmd(), a.catalogCmd())
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "holdfast:", Explain(err))
		return 1
	}
	return 0
}

func (a *app) client() (*Client, error) { return a.conn.Dial() }

// show fetches path into out, then prints it as JSON or with table.
func (a *app) show(ctx context.Context, method, path string, body, out any, table func(w *tabwriter.Writer)) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	if err := c.Do(ctx, method, path, body, out); err != nil {
		return err
	}
	if a.asJSON {
		return printJSON(a.out, out)
	}
	w := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
