package cli

import (
	"fmt"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/plugins/sdk"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
)

func (a *app) pluginsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Short: "List the daemon's plugins, or seal a plugin for installation"}
	cmd.AddCommand(a.pluginsListCmd(), a.pluginsSealCmd())
	return cmd
}

func (a *app) pluginsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List plugins with their state, process and restarts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []pluginhost.PluginStatus
			return a.show(cmd.Context(), "GET", "/api/v1/plugins", nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintln(w, "No plugins found. Plugins live in DATA/plugins/NAME/ with a manifest.toml.")
					return
				}
				fmt.Fprintln(w, "NAME\tKIND\tTYPE\tVERSION\tSTATE\tPID\tPROTOCOL\tRESTARTS\tSINCE\tPROBLEM")
				for _, p := range out {
					pid, since := "-", "-"
					if p.PID > 0 {
						pid = fmt.Sprint(p.PID)
					}
					if !p.Started.IsZero() {
						since = p.Started.Local().Format(time.DateTime)
					}
					problem := p.LastError
					if p.LastCode != "" {
						problem = p.LastCode + " " + problem
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Kind, p.Type, p.Version,
						p.State, pid, p.Protocol, p.Restarts, since, problem)
				}
			})
		},
	}
}

func (a *app) pluginsSealCmd() *cobra.Command {
	var m manifest.Manifest
	cmd := &cobra.Command{
		Use:   "seal BINARY",
		Short: "Write manifest.toml beside a plugin binary, with its SHA-256",
		Long: `Write manifest.toml beside a plugin binary. holdfastd starts a plugin only
when the binary's SHA-256 matches its manifest, so seal the binary you ship,
after the last build, and ship the folder as it is.`,
		Example: "  holdfast plugins seal --kind scenario --type fileserver --version 1.0.0 plugins/fileserver/holdfast-fileserver",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bin := args[0]
			if m.Name == "" {
				m.Name = filepath.Base(filepath.Dir(mustAbs(bin)))
			}
			m.Binary = filepath.Base(bin)
			if len(m.Protocols) == 0 {
				m.Protocols = append([]int(nil), sdk.ProtocolVersions...)
			}
			if err := manifest.Seal(bin, m); err != nil {
				return fmt.Errorf("seal %s: %w", bin, err)
			}
			fmt.Fprintf(a.out, "sealed %s\n", filepath.Join(filepath.Dir(bin), "manifest.toml"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&m.Name, "name", "", "plugin name (default: the binary's folder name)")
	f.StringVar(&m.Kind, "kind", "", "scenario or transport")
	f.StringVar(&m.Type, "type", "", "scenario type or transport name the plugin serves")
	f.StringVar(&m.Version, "version", "", "plugin version")
	f.IntSliceVar(&m.Protocols, "protocols", nil, "plugin protocol versions served (default: this SDK's)")
	return cmd
}

func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
