package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
)

func scenarioPath(name, rest string) string {
	return "/api/v1/scenarios/" + url.PathEscape(name) + "/" + rest
}

func (a *app) rewindCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rewind", Short: "Data Rewind: bookmarks, rewind points, and rewinding a replica to one of them"}
	cmd.AddCommand(&cobra.Command{
		Use:   "bookmark NAME LABEL",
		Short: "Mark this moment on every replica of the scenario, to rewind to it later",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Bookmark
			return a.show(cmd.Context(), "POST", scenarioPath(args[0], "bookmarks"), api.BookmarkRequest{Label: args[1]}, &out, func(w *tabwriter.Writer) {
				for _, m := range out {
					fmt.Fprintf(w, "Bookmark %q set on %s at point %d (%s).\n", args[1], m.Replica, m.Point.ID, m.Point.Time.Local().Format(time.DateTime))
				}
			})
		},
	})

	var q struct {
		path, since, replica string
		limit                int
	}
	list := &cobra.Command{
		Use:   "list NAME",
		Short: "List the rewind points and bookmarks of the scenario's replicas, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := url.Values{}
			if q.path != "" {
				v.Set("path", q.path)
			}
			if q.since != "" {
				t, err := parseWhen(q.since)
				if err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				v.Set("since", t.Format(time.RFC3339Nano))
			}
			if q.replica != "" {
				v.Set("replica", q.replica)
			}
			v.Set("limit", strconv.Itoa(q.limit))
			var out []api.ReplicaPoints
			return a.show(cmd.Context(), "GET", scenarioPath(args[0], "points")+"?"+v.Encode(), nil, &out, func(w *tabwriter.Writer) {
				for _, rp := range out {
					fmt.Fprintf(w, "%s (root %s): %d points kept, journal %s, oldest %s\n", rp.Replica, rp.Root, rp.PointsKept,
						sizeText(rp.JournalSize), whenText(rp.Oldest))
					fmt.Fprintln(w, "POINT\tTIME\tKIND\tOPERATION\tPATH")
					for _, p := range rp.Points {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", p.ID, p.Time.Local().Format("2006-01-02 15:04:05.000"), p.Kind, pointWhat(p), pointPath(p))
					}
					fmt.Fprintln(w)
				}
			})
		},
	}
	f := list.Flags()
	f.StringVar(&q.path, "path", "", "only points touching this master path (or path relative to the roots) or below it")
	f.StringVar(&q.since, "since", "", "only points after this time (RFC 3339, 'YYYY-MM-DD HH:MM[:SS]' local, or a duration ago such as 15m)")
	f.StringVar(&q.replica, "replica", "", "only this replica directory")
	f.IntVar(&q.limit, "limit", 50, "at most this many points per replica (0: all)")
	cmd.AddCommand(list)

	var to struct {
		point                         uint64
		when, bookmark, path, replica string
	}
	toCmd := &cobra.Command{
		Use:   "to NAME (--point ID | --time T | --bookmark LABEL)",
		Short: "Rewind the stopped scenario's replica (or one path of it) to a point, a time or a bookmark",
		Long: "Rewind undoes, on the replica, every change recorded after the point, newest first. The scenario must be stopped.\n" +
			"The rewind is recorded as new points, so rewinding to the last point before it undoes it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.RewindRequest{Point: to.point, Bookmark: to.bookmark, Path: to.path, Replica: to.replica}
			if to.when != "" {
				t, err := parseWhen(to.when)
				if err != nil {
					return fmt.Errorf("--time: %w", err)
				}
				req.Time = t.Format(time.RFC3339Nano)
			}
			var out []api.Rewound
			return a.show(cmd.Context(), "POST", scenarioPath(args[0], "rewind"), req, &out, func(w *tabwriter.Writer) {
				for _, r := range out {
					fmt.Fprintf(w, "%s: %d operations undone in %.0f ms; the rewind is points %d-%d (rewind to point %d to undo it).\n",
						r.Replica, r.Undone, r.DurationMS, r.FirstNew, r.LastNew, r.FirstNew-1)
				}
			})
		},
	}
	f = toCmd.Flags()
	f.Uint64Var(&to.point, "point", 0, "rewind point ID, as 'holdfast rewind list' shows")
	f.StringVar(&to.when, "time", "", "the moment to go back to (RFC 3339, 'YYYY-MM-DD HH:MM[:SS]' local, or a duration ago such as 15m)")
	f.StringVar(&to.bookmark, "bookmark", "", "bookmark label")
	f.StringVar(&to.path, "path", "", "rewind only this master path (or path relative to the roots) and what is below it")
	f.StringVar(&to.replica, "replica", "", "only this replica directory (needed with --point when the scenario has several)")
	cmd.AddCommand(toCmd)
	return cmd
}

// parseWhen reads an absolute time or a duration before now.
func parseWhen(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration ago must be positive", s)
		}
		return time.Now().Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05.000", time.DateTime, "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2026-11-25T10:04:05Z, \"2026-11-25 10:04\") nor a duration ago (15m)", s)
}

func whenText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func pointWhat(p api.Point) string {
	switch {
	case p.Label != "":
		return fmt.Sprintf("%q", p.Label)
	case p.RewindOf != 0:
		return fmt.Sprintf("%s (undoing point %d)", p.Op, p.RewindOf)
	}
	return p.Op
}

func pointPath(p api.Point) string {
	if p.NewPath != "" {
		return p.Path + " -> " + p.NewPath
	}
	return p.Path
}

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Point-in-time, read-only images of a scenario's replicas"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list NAME",
		Short: "List the snapshots of the scenario's replicas, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Snapshot
			return a.show(cmd.Context(), "GET", scenarioPath(args[0], "snapshots"), nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintf(w, "Scenario %s has no snapshots.\n", args[0])
					return
				}
				printSnapshots(w, out)
			})
		},
	})
	var label string
	take := &cobra.Command{
		Use:   "take NAME",
		Short: "Snapshot the scenario's replicas now (applying pauses while it is made; the master spools meanwhile)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Snapshot
			return a.show(cmd.Context(), "POST", scenarioPath(args[0], "snapshots"), api.SnapshotRequest{Label: label}, &out, func(w *tabwriter.Writer) {
				printSnapshots(w, out)
			})
		},
	}
	take.Flags().StringVar(&label, "label", "", "a note kept with the snapshot")
	cmd.AddCommand(take)
	cmd.AddCommand(&cobra.Command{
		Use:   "release NAME ID",
		Short: "Delete a snapshot",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), "DELETE", scenarioPath(args[0], "snapshots/"+url.PathEscape(args[1])), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Snapshot %s of %s released.\n", args[1], args[0])
			return nil
		},
	})
	return cmd
}

func printSnapshots(w *tabwriter.Writer, list []api.Snapshot) {
	fmt.Fprintln(w, "ID\tTAKEN\tREPLICA\tCONSISTENCY\tMETHOD\tFILES\tSIZE\tLABEL")
	for _, s := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, s.Time.Local().Format(time.DateTime), s.Replica,
			s.Consistency, s.Method, s.Files, sizeText(s.Bytes), s.Label)
	}
}

func (a *app) scenarioTestCmds() []*cobra.Command {
	run := &cobra.Command{
		Use:   "test NAME",
		Short: "Assured Recovery: prove the application on a writable view of a fresh replica snapshot, while replication goes on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.RecoveryTest
			return a.show(cmd.Context(), "POST", scenarioPath(args[0], "tests"), nil, &out, func(w *tabwriter.Writer) {
				printTests(w, out)
			})
		},
	}
	var limit int
	list := &cobra.Command{
		Use:   "tests NAME",
		Short: "List the scenario's Assured Recovery tests, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.RecoveryTest
			return a.show(cmd.Context(), "GET", scenarioPath(args[0], "tests")+"?limit="+strconv.Itoa(limit), nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintf(w, "Scenario %s has not been tested yet.\n", args[0])
					return
				}
				printTests(w, out)
			})
		},
	}
	list.Flags().IntVar(&limit, "limit", 20, "at most this many tests (0: all)")
	return []*cobra.Command{run, list}
}

func printTests(w *tabwriter.Writer, list []api.RecoveryTest) {
	fmt.Fprintln(w, "TEST\tSTARTED\tREPLICA\tSNAPSHOT\tRESULT\tCHECKED\tTIME\tVIEW")
	for _, t := range list {
		result := "passed"
		if !t.Passed {
			result = "FAILED"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%.0f ms\t%s\n", t.ID, t.Started.Local().Format(time.DateTime), t.Replica, t.Snapshot,
			result, t.Checked, t.DurationMS, t.View)
		if t.Error != "" {
			fmt.Fprintf(w, "\terror: %s\n", t.Error)
		}
		if len(t.Problems) > 0 {
			fmt.Fprintf(w, "\tproblems: %s\n", strings.Join(t.Problems, "; "))
		}
	}
}
