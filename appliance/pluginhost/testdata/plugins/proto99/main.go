// Command proto99 is a test plugin that speaks only plugin protocol version 99,
// as a plugin built for a far newer Holdfast would.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"

	"github.com/holdfast/holdfast/plugins/sdk"
)

type handler struct{}

func (handler) Describe(context.Context) (sdk.ScenarioInfo, error) {
	return sdk.ScenarioInfo{Type: "future", DisplayName: "Future", Version: "99", EntityKind: "thing"}, nil
}
func (handler) ListEntities(context.Context, sdk.ScenarioConfig) ([]sdk.Entity, error) {
	return nil, nil
}
func (handler) PrepareBackup(context.Context, sdk.ScenarioConfig, string) (sdk.PrepareResult, error) {
	return sdk.PrepareResult{HoldID: "h", Consistency: sdk.ConsistencyCrash}, nil
}
func (handler) ReleaseBackup(context.Context, string) error { return nil }
func (handler) Verify(context.Context, sdk.VerifyRequest) (sdk.VerifyResult, error) {
	return sdk.VerifyResult{Passed: true}, nil
}
func (handler) BeforeRestore(context.Context, sdk.RestoreRequest) error { return nil }
func (handler) AfterRestore(context.Context, sdk.RestoreRequest) error  { return nil }

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(sdk.ScenarioPluginName, &sdk.ScenarioPlugin{Impl: handler{}}, []int{99}),
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
