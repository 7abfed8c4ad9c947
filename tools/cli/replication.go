package cli

import (
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
)

func (a *app) scenarioActionCmds() []*cobra.Command {
	actions := []struct{ use, short string }{
		{"run", "Start replicating a scenario: synchronize, then capture changes as they happen"},
		{"stop", "Stop replicating a scenario (changes captured so far stay in the spool)"},
		{"suspend", "Stop applying changes on the replica; the master keeps spooling them"},
		{"resume", "Drain the spool to the replica again, without a resynchronization"},
	}
	var cmds []*cobra.Command
	for _, act := range actions {
		act := act
		cmds = append(cmds, &cobra.Command{
			Use:   act.use + " NAME",
			Short: act.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var st api.ScenarioStatus
				path := "/api/v1/scenarios/" + url.PathEscape(args[0]) + "/" + act.use
				return a.show(cmd.Context(), "POST", path, nil, &st, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "Scenario %s: %s\n", st.Name, st.State)
				})
			},
		})
	}
	cmds = append(cmds, &cobra.Command{
		Use:   "status NAME",
		Short: "Show a scenario's replication: state, lag, spool and counters per root",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.ScenarioStatus
			return a.show(cmd.Context(), "GET", "/api/v1/scenarios/"+url.PathEscape(args[0])+"/status", nil, &st, func(w *tabwriter.Writer) {
				printStatus(w, st)
			})
		},
	})
	return cmds
}

func printStatus(w *tabwriter.Writer, st api.ScenarioStatus) {
	fmt.Fprintf(w, "Scenario %s: %s\n", st.Name, st.State)
	if st.Problem != "" {
		fmt.Fprintf(w, "  problem:\t%s\n", st.Problem)
	}
	for _, p := range st.Pairs {
		fmt.Fprintf(w, "\n%s -> %s\n", p.Root, p.Replica)
		fmt.Fprintf(w, "  phase:\t%s\n", p.Phase)
		if p.Problem != "" {
			fmt.Fprintf(w, "  problem:\t%s\n", p.Problem)
		}
		fmt.Fprintf(w, "  capture:\t%s, since %s\n", p.Capture, p.Started.Local().Format(time.DateTime))
		fmt.Fprintf(w, "  lag:\tlast %.1f ms, p50 %.1f ms, p99 %.1f ms\n", p.LagLastMS, p.LagP50MS, p.LagP99MS)
		fmt.Fprintf(w, "  spool:\t%d changes, %s pending; %d paths waiting for resync\n", p.SpoolPending, sizeText(p.SpoolBytes), p.DirtyPaths)
		fmt.Fprintf(w, "  changes:\t%d (%s): %d created, %d updated, %d removed, %d renamed, %d metadata\n",
			p.Changes, sizeText(int64(p.Bytes)), p.Created, p.Updated, p.Removed, p.Renamed, p.Metadata)
		fmt.Fprintf(w, "  errors:\t%d; rescans %d\n", p.Errors, p.Rescans)
	}
}

func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (a *app) reportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "report", Short: "Replication reports: difference, replication, synchronization"}
	cmd.AddCommand(&cobra.Command{
		Use:   "difference NAME",
		Short: "What differs between master and replica right now (changes nothing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.DifferenceEntry
			return a.show(cmd.Context(), "GET", "/api/v1/scenarios/"+url.PathEscape(args[0])+"/difference", nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintf(w, "Scenario %s: master and replica are identical.\n", args[0])
					return
				}
				fmt.Fprintf(w, "Scenario %s: %d differences.\n", args[0], len(out))
				fmt.Fprintln(w, "ROOT\tPATH\tDIFFERENCE\tDETAIL")
				for _, d := range out {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Root, d.Path, d.Kind, d.Detail)
				}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "replication NAME",
		Short: "Changes replicated per root: counts, bytes, lag, errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.ScenarioStatus
			return a.show(cmd.Context(), "GET", "/api/v1/scenarios/"+url.PathEscape(args[0])+"/status", nil, &st, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Replication report for %s (%s), %s\n\n", st.Name, st.State, time.Now().Format(time.DateTime))
				fmt.Fprintln(w, "ROOT\tREPLICA\tCREATED\tUPDATED\tREMOVED\tRENAMED\tMETADATA\tBYTES\tERRORS\tLAG P50\tLAG P99")
				for _, p := range st.Pairs {
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%.1f ms\t%.1f ms\n", p.Root, p.Replica, p.Created, p.Updated,
						p.Removed, p.Renamed, p.Metadata, sizeText(int64(p.Bytes)), p.Errors, p.LagP50MS, p.LagP99MS)
				}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "synchronization NAME",
		Short: "What the last synchronization sent per root",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.ScenarioStatus
			return a.show(cmd.Context(), "GET", "/api/v1/scenarios/"+url.PathEscape(args[0])+"/status", nil, &st, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Synchronization report for %s (%s)\n\n", st.Name, st.State)
				fmt.Fprintln(w, "ROOT\tDIFFERENCES\tWHOLE FILES\tWHOLE BYTES\tBLOCK-LEVEL FILES\tSENT\tMATCHED\tREMOVED\tMETADATA\tTIME")
				for _, p := range st.Pairs {
					s := p.Sync
					fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t%d\t%.0f ms\n", p.Root, s.Differences, s.FilesWhole, sizeText(s.BytesWhole),
						s.FilesBlock, sizeText(s.BytesLiteral), sizeText(s.BytesMatched), s.Removed, s.MetadataFixes, s.ElapsedMS)
				}
			})
		},
	})
	return cmd
}
