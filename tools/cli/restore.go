package cli

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/restorejob"
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
	listing := func(use, short, route, none, head string, row func(w *tabwriter.Writer, f api.FileVersion)) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				q, err := hostPathQuery(args[0])
				if err != nil {
					return err
				}
				var out []api.FileVersion
				return a.show(cmd.Context(), "GET", route+"?"+q, nil, &out, func(w *tabwriter.Writer) {
					if len(out) == 0 {
						fmt.Fprintf(w, none+"\n", args[0])
						return
					}
					fmt.Fprintln(w, head)
					for _, f := range out {
						row(w, f)
					}
				})
			},
		}
	}
	cmd.AddCommand(listing("tree HOST:/DIR", "List a backed-up directory of a master host: each entry at its latest version",
		"/api/v1/files/tree", "Nothing was backed up below %s.", "SESSION\tPATH\tSIZE\tMODIFIED\tBACKED UP",
		func(w *tabwriter.Writer, f api.FileVersion) {
			if f.Session == 0 {
				fmt.Fprintf(w, "-\t%s/\t\t\t\n", f.Path)
				return
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", f.Session, f.Path, sizeText(int64(f.Size)), f.MTime.Local().Format(time.DateTime), f.Finished.Local().Format(time.DateTime))
		}))
	cmd.AddCommand(listing("versions HOST:/PATH", "List every backed-up version of a file, newest first",
		"/api/v1/files/versions", "No version of %s was backed up.", "SESSION\tSIZE\tMODIFIED\tBACKED UP",
		func(w *tabwriter.Writer, f api.FileVersion) {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", f.Session, sizeText(int64(f.Size)), f.MTime.Local().Format(time.DateTime), f.Finished.Local().Format(time.DateTime))
		}))
	var sessHost, sessScenario string
	sessions := &cobra.Command{
		Use:   "sessions [--host H] [--scenario NAME]",
		Short: "List the backup sessions, newest first: what a restore by session starts from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if sessHost != "" {
				q.Set("host", sessHost)
			}
			if sessScenario != "" {
				q.Set("scenario", sessScenario)
			}
			var out []api.JobSession
			return a.show(cmd.Context(), "GET", "/api/v1/sessions?"+q.Encode(), nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintln(w, "No backup session matches.")
					return
				}
				fmt.Fprintln(w, "SESSION\tJOB\tSCENARIO\tHOST\tENTITY\tCONSISTENCY\tFILES\tSIZE\tFINISHED")
				for _, s := range out {
					sc := s.Scenario
					if sc == "" {
						sc = "-"
					}
					fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, s.Job, sc, s.MasterHost, s.Entity, s.Consistency, s.Files,
						sizeText(int64(s.Bytes)), s.Finished.Local().Format(time.DateTime))
				}
			})
		},
	}
	sessions.Flags().StringVar(&sessHost, "host", "", "only sessions of this master host")
	sessions.Flags().StringVar(&sessScenario, "scenario", "", "only sessions of this scenario")
	cmd.AddCommand(sessions)
	var req api.JobRequest
	var tree, asOf, passwordFile string
	run := &cobra.Command{
		Use:   "run (--session N [--path P...] | --tree HOST:/PATH [--as-of TIME]) --to original|replica|DIR|HOST:DIR [--policy overwrite|skip|rename|newer]",
		Short: "Queue a restore of a session, files of it, or a tree as it stood, to the master, the replica, a folder here or a folder on an agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Kind = "restore"
			if passwordFile != "" {
				p, err := readPassword(passwordFile, cmd.InOrStdin())
				if err != nil {
					return err
				}
				req.Password = p
			}
			if tree != "" {
				host, p, ok := strings.Cut(tree, ":")
				if !ok || host == "" || !strings.HasPrefix(p, "/") {
					return fmt.Errorf("--tree %q: give HOST:/PATH, e.g. fs01:/srv/data/reports", tree)
				}
				req.Tree = &restorejob.Tree{Host: host, Path: p}
				if asOf != "" {
					t, err := parseTime(asOf)
					if err != nil {
						return fmt.Errorf("--as-of %q: %v", asOf, err)
					}
					req.Tree.AsOf = t
				}
			} else if asOf != "" {
				return fmt.Errorf("--as-of goes with --tree")
			}
			var out api.Job
			return a.show(cmd.Context(), "POST", "/api/v1/jobs", req, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Job %d (%s) queued: %s.\n", out.ID, out.Name, out.State)
			})
		},
	}
	f := run.Flags()
	f.Uint64Var(&req.Session, "session", 0, "session number ('holdfast restore find' and 'holdfast job show' list them)")
	f.StringArrayVar(&req.Paths, "path", nil, "master path of a file or directory to restore (repeat; default: the whole session)")
	f.StringVar(&tree, "tree", "", "restore by tree: HOST:/PATH, every file below it at its latest backed-up version")
	f.StringVar(&asOf, "as-of", "", `with --tree: the versions backed up by this time ("2026-11-25 14:00" local, or RFC 3339)`)
	f.StringVar(&req.Destination, "to", "", `"original" (where the files were on the master), "replica" (the scenario's replicas; the scenario is stopped first), an absolute folder here, or HOST:/folder on an enrolled agent`)
	f.StringVar(&req.Policy, "policy", "", "when the destination has the file: overwrite (default), skip, rename or newer")
	f.StringVar(&passwordFile, "password-file", "", `the password of a protected session, on this file's first line ("-": standard input)`)
	f.BoolVar(&req.ContinueIfRunning, "continue-if-running", false, "with --to replica: go on even when the scenario cannot be stopped")
	cmd.AddCommand(run)
	return cmd
}

// hostPathQuery turns HOST:/PATH into the query of the tree routes.
func hostPathQuery(arg string) (string, error) {
	host, p, ok := strings.Cut(arg, ":")
	if !ok || host == "" || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q: give HOST:/PATH, e.g. fs01:/srv/data", arg)
	}
	return url.Values{"host": {host}, "path": {path.Clean(p)}}.Encode(), nil
}

// parseTime reads a local "YYYY-MM-DD HH:MM[:SS]" or an RFC 3339 time.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, time.DateTime, "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a time: use \"2026-11-25 14:00\" or RFC 3339")
}
