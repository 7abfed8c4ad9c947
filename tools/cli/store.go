package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
)

func (a *app) storeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "The disk store: verify sessions, prune expired ones"}
	var vreq api.VerifyRequest
	var sessions []uint
	verify := &cobra.Command{
		Use:   "verify (--session N [--session N...] | --scenario NAME | --all) [--schedule S]",
		Short: "Queue a verify job: every chunk of the sessions is read back and checked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, id := range sessions {
				vreq.Sessions = append(vreq.Sessions, uint64(id))
			}
			var out api.Job
			return a.show(cmd.Context(), "POST", "/api/v1/store/verify", vreq, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Job %d (%s) queued: %s, next run %s. Problems go to the activity log ('holdfast log --job %d').\n",
					out.ID, out.Name, out.State, whenText(out.NextRun), out.ID)
			})
		},
	}
	f := verify.Flags()
	f.UintSliceVar(&sessions, "session", nil, "catalog session to verify (repeat for several; 'holdfast job show ID' lists a job's sessions)")
	f.StringVar(&vreq.Scenario, "scenario", "", "verify every session of this scenario")
	f.BoolVar(&vreq.All, "all", false, "verify every session")
	f.StringVar(&vreq.Schedule, "schedule", "", `when: now (default), "once 2026-12-01 22:00", "every 7d", "sun 04:00"`)
	cmd.AddCommand(verify)

	var preq api.PruneRequest
	prune := &cobra.Command{
		Use:   "prune [--schedule S]",
		Short: "Queue a prune job: sessions expired by [store] keep_last/keep_days are deleted and their space reclaimed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out api.Job
			return a.show(cmd.Context(), "POST", "/api/v1/store/prune", preq, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Job %d (%s) queued: %s, next run %s.\n", out.ID, out.Name, out.State, whenText(out.NextRun))
			})
		},
	}
	prune.Flags().StringVar(&preq.Schedule, "schedule", "", `when: now (default), "daily 03:30", "every 12h"`)
	cmd.AddCommand(prune)
	return cmd
}

func (a *app) catalogCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "The catalog: rebuild it from the disk store"}
	var password, passwordFile string
	rebuild := &cobra.Command{
		Use:   "rebuild [--password P | --password-file F]",
		Short: "Record in the catalog every disk store session it does not know (after a lost or restored catalog)",
		Long: "Reads the disk store's sessions and records those the catalog does not know, with their jobs and file versions,\n" +
			"so files can be found by name and restored again. Sessions already known are left alone; running it twice is harmless.\n" +
			"Password-protected sessions are skipped unless their password is given (it is used for this run only, never stored).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if passwordFile != "" {
				p, err := readPassword(passwordFile, cmd.InOrStdin())
				if err != nil {
					return err
				}
				password = p
			}
			var out api.RebuildResult
			return a.show(cmd.Context(), "POST", "/api/v1/catalog/rebuild", api.RebuildRequest{Password: password}, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "%d sessions in the store: %d recorded now (%d file versions), %d already known, %d skipped (protected), %d failed.\n",
					out.Stored, out.Recorded, out.Versions, out.Known, out.Skipped, out.Failed)
				if out.Skipped > 0 {
					fmt.Fprintln(w, "Protected sessions were skipped: run again with --password (or --password-file) for each password.")
				}
				if out.Failed > 0 {
					fmt.Fprintln(w, "Some sessions could not be read: see 'holdfast log' (HF-E5063) and run 'holdfast store verify --all'.")
				}
			})
		},
	}
	rebuild.Flags().StringVar(&password, "password", "", "password of protected sessions (visible to other users in the process list: prefer --password-file)")
	rebuild.Flags().StringVar(&passwordFile, "password-file", "", `file holding the password on its first line; "-" reads standard input`)
	cmd.AddCommand(rebuild)
	return cmd
}

// readPassword reads the first line of a file, or of in for "-".
func readPassword(path string, in io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(in, 4096))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("read the password from %s: %w", path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("the password file %s is empty: write the password on its first line", path)
	}
	return line, nil
}
