// Command crash is a test plugin that panics in the middle of ListEntities.
package main

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/plugins/sdk"
)

type handler struct{}

func (handler) Describe(context.Context) (sdk.ScenarioInfo, error) {
	return sdk.ScenarioInfo{Type: "crash", DisplayName: "Crash", Version: "1", EntityKind: "thing"}, nil
}
func (handler) ListEntities(context.Context, sdk.ScenarioConfig) ([]sdk.Entity, error) {
	// A Go panic in a gRPC handler ends the whole process; the runtime
	// writes the trace straight to file descriptor 2.
	panic("simulated crash in ListEntities")
}
func (handler) PrepareBackup(context.Context, sdk.ScenarioConfig, string) (sdk.PrepareResult, error) {
	return sdk.PrepareResult{}, fmt.Errorf("not supported")
}
func (handler) ReleaseBackup(context.Context, string) error { return nil }
func (handler) Verify(context.Context, sdk.VerifyRequest) (sdk.VerifyResult, error) {
	return sdk.VerifyResult{Passed: true}, nil
}
func (handler) BeforeRestore(context.Context, sdk.RestoreRequest) error { return nil }
func (handler) AfterRestore(context.Context, sdk.RestoreRequest) error  { return nil }

func main() { sdk.ServeScenario(handler{}) }
