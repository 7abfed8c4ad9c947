package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/messages"
)

func (a *app) logCmd() *cobra.Command {
	var (
		job      uint64
		code     string
		severity string
		since    string
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Show the activity log",
		Example: `  holdfast log --severity warning --since 2h
  holdfast log --job 95
  holdfast log --code HF-W3005`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if job != 0 {
				q.Set("job", strconv.FormatUint(job, 10))
			}
			if code != "" {
				q.Set("code", code)
			}
			if severity != "" {
				q.Set("severity", severity)
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				q.Set("since", t.UTC().Format(time.RFC3339))
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var out []api.LogEntry
			return a.show(cmd.Context(), "GET", "/api/v1/log?"+q.Encode(), nil, &out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "TIME\tSEVERITY\tCODE\tJOB\tHOST\tMESSAGE")
				for _, e := range out {
					jobText := "-"
					if e.JobID != 0 {
						jobText = strconv.FormatUint(e.JobID, 10)
					}
					codeText := e.Code
					if codeText == "" {
						codeText = "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Severity, codeText, jobText, e.Host, e.Message)
				}
			})
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&job, "job", 0, "only entries of this job")
	f.StringVar(&code, "code", "", "only entries with this message code")
	f.StringVar(&severity, "severity", "", "only entries at least this severe: info, warning or error")
	f.StringVar(&since, "since", "", "only entries newer than a duration ago (2h) or a time (2026-11-25T08:00:00Z)")
	f.IntVar(&limit, "limit", 200, "at most this many newest entries (0: all)")
	return cmd
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: give a positive duration", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give a duration such as 2h or a time such as 2026-11-25T08:00:00Z", s)
}

func (a *app) messagesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "messages [CODE]",
		Short: "Explain message codes (all of them, or one)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list := messages.All()
			if len(args) == 1 {
				m, ok := messages.Lookup(messages.Code(args[0]))
				if !ok {
					return fmt.Errorf("no message code %q; 'holdfast messages' lists them all", args[0])
				}
				list = []messages.Message{m}
			}
			w := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			for _, m := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\n", m.Code, m.Module, m.Text)
				if len(args) == 1 {
					if m.Reason != "" {
						fmt.Fprintf(w, "  reason:\t%s\n", m.Reason)
					}
					if m.Action != "" {
						fmt.Fprintf(w, "  action:\t%s\n", m.Action)
					}
				}
			}
			return w.Flush()
		},
	}
}
