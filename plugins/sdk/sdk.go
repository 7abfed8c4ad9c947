// Package sdk is the Go SDK for Holdfast plugins: separate programs that
// holdfastd starts and talks to over gRPC (hashicorp/go-plugin), so a partner
// can teach the appliance a new kind of scenario (a database, a mail server)
// or a new way to carry replication traffic without linking into the daemon.
//
// A plugin author implements ScenarioHandler or Transport with plain Go types
// and calls ServeScenario or ServeTransport from main. The protobuf messages
// that cross the process boundary are an internal detail of this package
// (plugins/sdk/internal/pluginpb) so the wire format can evolve behind
// negotiated protocol versions without breaking partners' code.
//
// The host side (appliance/pluginhost) uses the same types: it dispenses a
// ScenarioHandler or Transport backed by a gRPC client, and checks every reply
// with the Validate functions because a plugin is not trusted to be correct.
//
// docs/plugins.md is the partner guide: folder layout, manifest, contracts of
// each call, supervision and the message codes a partner will meet.
package sdk

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Handshake is the go-plugin handshake shared by holdfastd and every plugin.
// The magic cookie only stops a plugin binary from doing anything surprising
// when someone runs it by hand; it is not a security measure (the manifest
// checksum and go-plugin's AutoMTLS are).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "HOLDFAST_PLUGIN",
	MagicCookieValue: "c8d4f1b6-holdfast-plugin-v1",
}

// ProtocolVersions lists the plugin protocol versions this SDK speaks, oldest
// first. At start the host offers all of its versions, the plugin serves the
// ones it knows, and the highest version both know is used. A version names a
// revision of the .proto files in plugins/sdk/proto: one is added whenever a
// change is not backward compatible.
var ProtocolVersions = []int{1}

// Names under which the two plugin kinds are dispensed through go-plugin. A
// plugin binary serves exactly one of them, matching its manifest's kind.
const (
	ScenarioPluginName  = "scenario"
	TransportPluginName = "transport"
)

// ServeScenario serves h as a scenario plugin. A plugin's main calls it and
// nothing else: it does not return until holdfastd ends the plugin, and it
// exits the process when started by anything other than holdfastd.
func ServeScenario(h ScenarioHandler) {
	serve(ScenarioPluginName, &ScenarioPlugin{Impl: h})
}

// ServeTransport serves t as a transport plugin, like ServeScenario.
func ServeTransport(t Transport) {
	serve(TransportPluginName, &TransportPlugin{Impl: t})
}

func serve(name string, p plugin.Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: PluginSets(name, p, ProtocolVersions),
		GRPCServer:       plugin.DefaultGRPCServer,
		// JSON lines on stderr are what holdfastd parses into its own log,
		// keeping each line's level and fields.
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       name,
			Level:      hclog.Info,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}

// PluginSets returns go-plugin's VersionedPlugins map serving p under name
// for each of versions. ServeScenario and ServeTransport use it with
// ProtocolVersions; the host uses it to offer its versions; a test plugin
// can use it to serve a version this SDK does not know.
func PluginSets(name string, p plugin.Plugin, versions []int) map[int]plugin.PluginSet {
	sets := make(map[int]plugin.PluginSet, len(versions))
	for _, v := range versions {
		sets[v] = plugin.PluginSet{name: p}
	}
	return sets
}
