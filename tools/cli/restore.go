package cli

import (
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
)

func (a *app) restoreCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "restore", Short: "Find backed-up files and restore sessions or files of them"}
	cmd.AddCommand(&cobra.Command{
		Use:   "find PATTERN",
		Short: "Find backed-up files by name (a pattern such as *.xlsx); shows each file's latest version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.FileFound
			return a.show(cmd.Context(), "GET", "/api/v1/files?name="+url.QueryEscape(args[0]), nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintf(w, "No backed-up file is named %s.\n", args[0])
					return
				}
				fmt.Fprintln(w, "SESSION\tHOST\tPATH\tSIZE\tMODIFIED")
				for _, f := range out {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", f.Session, f.Host, f.Path, sizeText(int64(f.Size)), f.MTime.Local().Format(time.DateTime))
				}
			})
		},
	})
	var req api.JobRequest
	run := &cobra.Command{
		Use:   "run --session N [--path P...] --to original|DIR [--policy overwrite|skip|rename|newer]",
		Short: "Queue a restore of a session, or of some of its files, to the master's original location or to a folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Kind = "restore"
			var out api.Job
			return a.show(cmd.Context(), "POST", "/api/v1/jobs", req, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Job %d (%s) queued: %s.\n", out.ID, out.Name, out.State)
			})
		},
	}
	f := run.Flags()
	f.Uint64Var(&req.Session, "session", 0, "session number ('holdfast restore find' and 'holdfast job show' list them)")
	f.StringArrayVar(&req.Paths, "path", nil, "master path of a file or directory to restore (repeat; default: the whole session)")
	f.StringVar(&req.Destination, "to", "", `"original" (where the files were on the master) or an absolute folder`)
	f.StringVar(&req.Policy, "policy", "", "when the destination has the file: overwrite (default), skip, rename or newer")
	cmd.AddCommand(run)
	return cmd
}
