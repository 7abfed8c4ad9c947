package cli

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
)

// agentStateDir is the state directory holdfast-agent uses by default; the
// printed command names it so the operator sees where the key will live.
const agentStateDir = "/var/lib/holdfast-agent"

func (a *app) agentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Enroll, list and revoke the agents on master and replica hosts"}
	cmd.AddCommand(a.agentTokenCmd(), a.agentListCmd(), a.agentRevokeCmd())
	return cmd
}

func (a *app) agentTokenCmd() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token HOST",
		Short: "Create a one-time enrollment token for HOST and print the command to run there",
		Long: `Create a one-time enrollment token for HOST. The token is shown once, is
bound to HOST, and expires after --ttl. Run the printed holdfast-agent
command on HOST: it checks the appliance's CA fingerprint before it sends
the token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var tok api.AgentToken
			req := api.AgentTokenRequest{Host: args[0], TTL: ttl.String()}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/agents/tokens", req, &tok); err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(a.out, tok)
			}
			fmt.Fprintf(a.out, "Enrollment token for %s, valid until %s (single use):\n\n  %s\n\n",
				tok.Host, tok.Expires.Local().Format(time.DateTime), enrollCommand(tok))
			fmt.Fprintf(a.out, "Run this on %s as the user holdfast-agent runs as. Appliance CA fingerprint (SHA-256):\n  %s\n", tok.Host, tok.CAFingerprint)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token stays valid (at most 168h)")
	return cmd
}

// enrollCommand is the exact command line for the agent host.
func enrollCommand(t api.AgentToken) string {
	parts := []string{"holdfast-agent", "enroll", "--appliance", t.Appliance}
	if host, _, err := net.SplitHostPort(t.Appliance); err == nil && !strings.EqualFold(strings.TrimSuffix(host, "."), t.ServerName) {
		parts = append(parts, "--server-name", t.ServerName)
	}
	parts = append(parts, "--token", t.Token, "--fingerprint", t.CAFingerprint, "--host", t.Host, "--state", agentStateDir)
	return strings.Join(parts, " ")
}

func (a *app) agentListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the certificates issued to agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Agent
			return a.show(cmd.Context(), "GET", "/api/v1/agents", nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintln(w, "No agents enrolled. 'holdfast agent token HOST' starts an enrollment.")
					return
				}
				fmt.Fprintln(w, "HOST\tSERIAL\tEXPIRES\tSTATE")
				for _, ag := range out {
					state := "valid"
					if ag.Revoked {
						state = "revoked " + ag.RevokedAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", ag.Host, ag.Serial, ag.NotAfter.Local().Format(time.DateTime), state)
				}
			})
		},
	}
}

func (a *app) agentRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke HOST",
		Short: "Revoke HOST: its certificates are refused and its unused tokens discarded",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/agents/"+url.PathEscape(args[0])+"/revoke", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "revoked %s; enroll it again with 'holdfast agent token %s'\n", args[0], args[0])
			return nil
		},
	}
}
