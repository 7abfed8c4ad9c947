package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/scenarios"
)

func (a *app) scenarioCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "scenario", Short: "Create, list, show, delete, run, stop, suspend and resume scenarios"}
	cmd.AddCommand(a.scenarioCreateCmd(), a.scenarioListCmd(), a.scenarioShowCmd(), a.scenarioDeleteCmd())
	cmd.AddCommand(a.scenarioActionCmds()...)
	cmd.AddCommand(a.scenarioTestCmds()...)
	return cmd
}

func (a *app) scenarioCreateCmd() *cobra.Command {
	var (
		file      string
		def       scenarios.Definition
		replicas  []string
		noSuspend bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Register a scenario and list its entities",
		Long: `Register a scenario: what is protected (master host and root directories),
where it is replicated (replica host and target directory) and how backups get
a consistent image (Assured Recovery, or suspending replication for a snapshot).

Either give a definition file (-f, TOML or JSON) or flags; flags given with a
file override its values.`,
		Example: `  holdfast scenario create docs --type fileserver --root /srv/docs --replica /replica/docs
  holdfast scenario create -f branch-office.toml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				loaded, err := readDefinition(file)
				if err != nil {
					return err
				}
				flags := def
				def = loaded
				mergeFlags(cmd, &def, flags)
			}
			if len(args) == 1 {
				def.Name = args[0]
			}
			if def.Name == "" {
				return fmt.Errorf("give the scenario's name as argument or in the definition file")
			}
			for _, r := range replicas {
				rep, err := parseReplica(r)
				if err != nil {
					return err
				}
				def.Replicas = append(def.Replicas, rep)
			}
			if noSuspend {
				off := false
				def.Suspend = &off
			}
			if def.Master.Host == "" {
				def.Master.Host = "localhost"
			}
			var out api.Scenario
			return a.show(cmd.Context(), "POST", "/api/v1/scenarios", def, &out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Scenario %s created (id %d, type %s, state %s).\n", out.Name, out.ID, out.Type, out.State)
				printEntities(w, out.Entities)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "definition file (TOML or JSON)")
	f.StringVar(&def.Type, "type", "", "scenario type, as 'holdfast plugins list' shows (e.g. fileserver)")
	f.StringVar(&def.Master.Host, "master", "", "master host (default localhost)")
	f.StringArrayVar(&def.Master.Roots, "root", nil, "root directory on the master to protect (repeat for several)")
	f.StringArrayVar(&replicas, "replica", nil, "replica as [HOST:]DIRECTORY (repeat for several; HOST defaults to localhost)")
	f.BoolVar(&def.AssuredRecovery, "assured-recovery", false, "prove the application on a snapshot before each backup")
	f.BoolVar(&noSuspend, "no-suspend", false, "do not suspend replication for backup snapshots (needs --assured-recovery)")
	f.Uint32Var(&def.SnapshotsKeep, "snapshots", 0, "replica snapshots to keep (default 10)")
	f.StringVar(&def.Sync, "sync", "", "how synchronization sends files that differ: auto (default; whole up to 1 MiB, changed blocks above), file or block")
	return cmd
}

// mergeFlags lets flags given beside -f override the file's values.
func mergeFlags(cmd *cobra.Command, def *scenarios.Definition, flags scenarios.Definition) {
	set := cmd.Flags().Changed
	if set("type") {
		def.Type = flags.Type
	}
	if set("master") {
		def.Master.Host = flags.Master.Host
	}
	if set("root") {
		def.Master.Roots = flags.Master.Roots
	}
	if set("assured-recovery") {
		def.AssuredRecovery = flags.AssuredRecovery
	}
	if set("snapshots") {
		def.SnapshotsKeep = flags.SnapshotsKeep
	}
	if set("sync") {
		def.Sync = flags.Sync
	}
}

func readDefinition(path string) (scenarios.Definition, error) {
	var def scenarios.Definition
	b, err := os.ReadFile(path)
	if err != nil {
		return def, fmt.Errorf("read definition: %w", err)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&def); err != nil {
			return def, fmt.Errorf("definition %s: %w", path, err)
		}
	case ".toml":
		md, err := toml.Decode(string(b), &def)
		if err != nil {
			return def, fmt.Errorf("definition %s: %w", path, err)
		}
		if u := md.Undecoded(); len(u) > 0 {
			return def, fmt.Errorf("definition %s: unknown key %s", path, u[0].String())
		}
	default:
		return def, fmt.Errorf("definition %s: name it .toml or .json", path)
	}
	return def, nil
}

// parseReplica reads "[HOST:]DIRECTORY". Directories are absolute, so the
// first ':' before a '/' separates the host.
func parseReplica(s string) (scenarios.Replica, error) {
	if strings.HasPrefix(s, "/") {
		return scenarios.Replica{Host: "localhost", Target: s}, nil
	}
	host, dir, ok := strings.Cut(s, ":")
	if !ok || host == "" || !strings.HasPrefix(dir, "/") {
		return scenarios.Replica{}, fmt.Errorf("--replica %q: write HOST:/absolute/dir or /absolute/dir", s)
	}
	return scenarios.Replica{Host: host, Target: dir}, nil
}

func (a *app) scenarioListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Scenario
			return a.show(cmd.Context(), "GET", "/api/v1/scenarios", nil, &out, func(w *tabwriter.Writer) {
				if len(out) == 0 {
					fmt.Fprintln(w, "No scenarios. Create one with 'holdfast scenario create'.")
					return
				}
				fmt.Fprintln(w, "NAME\tID\tTYPE\tSTATE\tMASTER\tREPLICAS")
				for _, s := range out {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.ID, s.Type, s.State,
						s.Master.Host+":"+strings.Join(s.Master.Roots, ","), replicasText(s.Replicas))
				}
			})
		},
	}
}

func replicasText(rs []scenarios.Replica) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Host + ":" + r.Target
	}
	return strings.Join(parts, " ")
}

func (a *app) scenarioShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a scenario and its entities",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s api.Scenario
			return a.show(cmd.Context(), "GET", "/api/v1/scenarios/"+url.PathEscape(args[0]), nil, &s, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Name:\t%s\n", s.Name)
				fmt.Fprintf(w, "ID:\t%d\n", s.ID)
				fmt.Fprintf(w, "Type:\t%s\n", s.Type)
				fmt.Fprintf(w, "State:\t%s\n", s.State)
				fmt.Fprintf(w, "Master:\t%s\n", s.Master.Host)
				for _, r := range s.Master.Roots {
					fmt.Fprintf(w, "  root:\t%s\n", r)
				}
				for _, r := range s.Replicas {
					fmt.Fprintf(w, "Replica:\t%s:%s\n", r.Host, r.Target)
				}
				consistency := "suspend replication for a snapshot (crash-consistent)"
				if s.AssuredRecovery {
					consistency = "Assured Recovery test (application-consistent)"
				}
				fmt.Fprintf(w, "Backup image:\t%s\n", consistency)
				fmt.Fprintf(w, "Snapshots kept:\t%d\n", s.SnapshotsKeep)
				fmt.Fprintf(w, "Synchronization:\t%s\n", s.Sync)
				fmt.Fprintf(w, "Created:\t%s\n", s.Created.Local().Format("2006-01-02 15:04:05"))
				printEntities(w, s.Entities)
			})
		},
	}
}

func printEntities(w *tabwriter.Writer, ents []api.Entity) {
	fmt.Fprintf(w, "\nEntities (%d):\n", len(ents))
	fmt.Fprintln(w, "  NAME\tKIND\tPATHS\tDETAIL")
	for _, e := range ents {
		var detail []string
		for _, k := range sortedKeys(e.Detail) {
			detail = append(detail, k+"="+e.Detail[k])
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", e.Name, e.Kind, strings.Join(e.Paths, ","), strings.Join(detail, " "))
	}
}

func (a *app) scenarioDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a scenario from the catalog (its replicas and backups stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s api.Scenario
			return a.show(cmd.Context(), "DELETE", "/api/v1/scenarios/"+url.PathEscape(args[0]), nil, &s, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Scenario %s (id %d) removed from the catalog; replica data and backup sessions are untouched.\n", s.Name, s.ID)
			})
		},
	}
}
