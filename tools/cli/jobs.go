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

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Backup jobs: submit, list, show, hold, release, cancel, rerun, modify, delete"}
	var req api.JobRequest
	var passwordFile string
	submit := &cobra.Command{
		Use:   "submit (--scenario NAME | --dir HOST:/PATH)... [--schedule S] [--name N] [--hold] [--full] [--multistream] [--password-file F]",
		Short: "Queue a backup of scenarios, from a consistent replica snapshot, to the disk store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if passwordFile != "" {
				p, err := readPassword(passwordFile, cmd.InOrStdin())
				if err != nil {
					return err
				}
				req.Password = p
			}
			var out api.Job
			return a.show(cmd.Context(), "POST", "/api/v1/jobs", req, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Job %d (%s) queued: %s, next run %s.\n", out.ID, out.Name, out.State, whenText(out.NextRun))
			})
		},
	}
	f := submit.Flags()
	f.StringArrayVar(&req.Scenarios, "scenario", nil, "scenario to back up (repeat for several)")
	f.StringArrayVar(&req.Directories, "dir", nil, "a folder outside scenarios to back up, HOST:/PATH on an enrolled agent or this appliance (repeat for several)")
	f.StringVar(&req.Schedule, "schedule", "", `when: now (default), "once 2026-12-01 22:00", "every 6h", "mon-fri 01:30"`)
	f.StringVar(&req.Name, "name", "", "job name (default: backup of SCENARIO)")
	f.BoolVar(&req.Hold, "hold", false, "queue the job on hold")
	f.BoolVar(&req.Full, "full", false, "read every file, even those unchanged since the previous session")
	f.BoolVar(&req.Multistream, "multistream", false, "run each scenario as a child job, side by side")
	f.StringVar(&passwordFile, "password-file", "", `protect the sessions with the password on this file's first line ("-": standard input); kept in memory only, so it must be given again after holdfastd restarts`)
	cmd.AddCommand(submit)

	var state string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the jobs in the queue (Ready, Active, Hold, Done)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/api/v1/jobs"
			if state != "" {
				path += "?state=" + url.QueryEscape(state)
			}
			var out []api.Job
			return a.show(cmd.Context(), "GET", path, nil, &out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "JOB\tNAME\tSTATE\tRESULT\tSCHEDULE\tNEXT RUN\tPROGRESS")
				for _, j := range out {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Name, j.State, j.Result, j.Schedule, whenText(j.NextRun), progressText(j.Progress))
				}
			})
		},
	}
	list.Flags().StringVar(&state, "state", "", "only jobs in this state: ready, active, hold or done")
	cmd.AddCommand(list)

	cmd.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Show a job: schedule, progress, runs and the sessions it wrote",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j api.Job
			return a.show(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, &j, func(w *tabwriter.Writer) {
				printJob(w, j)
			})
		},
	})
	for _, act := range []struct{ use, short string }{
		{"hold", "Hold a ready job: it does not run until released"},
		{"release", "Release a held job"},
		{"cancel", "Cancel a job; an active one stops and ends Canceled"},
		{"rerun", "Queue a finished job again"},
	} {
		act := act
		cmd.AddCommand(&cobra.Command{
			Use:   act.use + " ID",
			Short: act.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var j api.Job
				return a.show(cmd.Context(), "POST", "/api/v1/jobs/"+url.PathEscape(args[0])+"/"+act.use, nil, &j, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "Job %d (%s): %s %s\n", j.ID, j.Name, j.State, j.Result)
				})
			},
		})
	}
	var change api.JobChange
	var newName, newSchedule string
	var newScenarios, newDirs []string
	modify := &cobra.Command{
		Use:   "modify ID [--name N] [--schedule S] [--scenario NAME...] [--dir HOST:/PATH...]",
		Short: "Change a job that is not running: its name, schedule, or what a backup job backs up",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			if fl.Changed("name") {
				change.Name = &newName
			}
			if fl.Changed("schedule") {
				change.Schedule = &newSchedule
			}
			if fl.Changed("scenario") {
				change.Scenarios = &newScenarios
			}
			if fl.Changed("dir") {
				change.Directories = &newDirs
			}
			if change == (api.JobChange{}) {
				return fmt.Errorf("nothing to change: give --name, --schedule, --scenario or --dir")
			}
			var j api.Job
			return a.show(cmd.Context(), "PATCH", "/api/v1/jobs/"+url.PathEscape(args[0]), change, &j, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Job %d (%s): %s, schedule %s, next run %s.\n", j.ID, j.Name, j.State, j.Schedule, whenText(j.NextRun))
			})
		},
	}
	mf := modify.Flags()
	mf.StringVar(&newName, "name", "", "new name")
	mf.StringVar(&newSchedule, "schedule", "", `new schedule: now, "once 2026-12-01 22:00", "every 6h", "mon-fri 01:30"`)
	mf.StringArrayVar(&newScenarios, "scenario", nil, "backup jobs: the scenarios to back up (replaces the list; repeat)")
	mf.StringArrayVar(&newDirs, "dir", nil, "backup jobs: the folders to back up, HOST:/PATH (replaces the list; repeat)")
	cmd.AddCommand(modify)
	cmd.AddCommand(&cobra.Command{
		Use:   "delete ID",
		Short: "Delete a job that is not active and wrote no session",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), "DELETE", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Job %s deleted.\n", args[0])
			return nil
		},
	})
	return cmd
}

func progressText(p *api.JobProgress) string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("%s of %s, %d of %d files, %s/s", sizeText(p.Done.Bytes), sizeText(p.Total.Bytes), p.Done.Files, p.Total.Files, sizeText(int64(p.BytesPerS)))
	if p.RemainingS >= 0 {
		s += ", " + (time.Duration(p.RemainingS) * time.Second).String() + " left"
	}
	return s
}

func printJob(w *tabwriter.Writer, j api.Job) {
	fmt.Fprintf(w, "Job %d: %s\n", j.ID, j.Name)
	fmt.Fprintf(w, "  kind:\t%s\n  state:\t%s %s\n  schedule:\t%s\n  next run:\t%s\n", j.Kind, j.State, j.Result, j.Schedule, whenText(j.NextRun))
	if j.Restore != nil {
		what := "the whole session"
		if len(j.Restore.Paths) > 0 {
			what = strings.Join(j.Restore.Paths, ", ")
		}
		fmt.Fprintf(w, "  restores:\t%s of session %d to %s\n", what, j.Restore.Session, j.Restore.Destination)
	} else {
		fmt.Fprintf(w, "  scenarios:\t%v\n", j.Scenarios)
	}
	if j.Progress != nil {
		fmt.Fprintf(w, "  progress:\t%s\n", progressText(j.Progress))
	}
	for i, r := range j.Runs {
		fmt.Fprintf(w, "  run %d:\t%s, %s to %s, %s in %d files", i+1, r.Result, whenText(r.Started), whenText(r.Finished),
			sizeText(r.Done.Bytes), r.Done.Files)
		if r.Reason != "" {
			fmt.Fprintf(w, " (%s)", r.Reason)
		}
		fmt.Fprintln(w)
	}
	if len(j.Sessions) > 0 {
		fmt.Fprintln(w, "\nSESSION\tSCENARIO\tENTITY\tHOST\tCONSISTENCY\tFILES\tSIZE\tSTORED AS")
		for _, s := range j.Sessions {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", strconv.FormatUint(s.ID, 10), s.Scenario, s.Entity, s.MasterHost, s.Consistency,
				s.Files, sizeText(int64(s.Bytes)), s.Stored)
		}
	}
}
