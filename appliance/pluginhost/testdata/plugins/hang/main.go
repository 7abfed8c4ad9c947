// Command hang is a test plugin whose ListEntities never returns and ignores
// its context, like a plugin stuck on a dead network share.
package main

import (
	"context"

	"github.com/holdfast/holdfast/plugins/sdk"
)

type handler struct{}

func (handler) Describe(context.Context) (sdk.ScenarioInfo, error) {
	return sdk.ScenarioInfo{Type: "hang", DisplayName: "Hang", Version: "1", EntityKind: "thing"}, nil
}
func (handler) ListEntities(context.Context, sdk.ScenarioConfig) ([]sdk.Entity, error) {
	select {}
}
func (handler) PrepareBackup(context.Context, sdk.ScenarioConfig, string) (sdk.PrepareResult, error) {
	select {}
}
func (handler) ReleaseBackup(context.Context, string) error { return nil }
func (handler) Verify(context.Context, sdk.VerifyRequest) (sdk.VerifyResult, error) {
	select {}
}
func (handler) BeforeRestore(context.Context, sdk.RestoreRequest) error { return nil }
func (handler) AfterRestore(context.Context, sdk.RestoreRequest) error  { return nil }

func main() { sdk.ServeScenario(handler{}) }
