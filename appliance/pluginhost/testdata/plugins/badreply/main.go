// Command badreply is a test plugin whose replies break the protocol's
// rules: entity paths escaping the roots, a hold with an invalid
// consistency, a verify result that passed with problems.
package main

import (
	"context"

	"github.com/holdfast/holdfast/plugins/sdk"
)

type handler struct{}

func (handler) Describe(context.Context) (sdk.ScenarioInfo, error) {
	return sdk.ScenarioInfo{Type: "badreply", DisplayName: "Bad Reply", Version: "1", EntityKind: "thing"}, nil
}
func (handler) ListEntities(_ context.Context, cfg sdk.ScenarioConfig) ([]sdk.Entity, error) {
	root := "/"
	if len(cfg.Roots) > 0 {
		root = cfg.Roots[0]
	}
	return []sdk.Entity{{Name: "escape", Kind: "thing", Paths: []string{root + "/../../etc"}}}, nil
}
func (handler) PrepareBackup(context.Context, sdk.ScenarioConfig, string) (sdk.PrepareResult, error) {
	return sdk.PrepareResult{HoldID: "h\x1b[2J", Consistency: "maybe"}, nil
}
func (handler) ReleaseBackup(context.Context, string) error { return nil }
func (handler) Verify(context.Context, sdk.VerifyRequest) (sdk.VerifyResult, error) {
	return sdk.VerifyResult{Passed: true, Problems: []string{"everything is broken"}}, nil
}
func (handler) BeforeRestore(context.Context, sdk.RestoreRequest) error { return nil }
func (handler) AfterRestore(context.Context, sdk.RestoreRequest) error  { return nil }

func main() { sdk.ServeScenario(handler{}) }
