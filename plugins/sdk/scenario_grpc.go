package sdk

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/holdfast/holdfast/plugins/sdk/internal/pluginpb"
)

// MaxReplyBytes bounds one reply message from a plugin. go-plugin's default
// would let a plugin make the host allocate up to 2 GiB.
const MaxReplyBytes = 16 << 20

// ScenarioPlugin is the go-plugin glue for scenario handlers: on the plugin
// side it serves Impl; on the host side it returns a ScenarioHandler that
// calls the plugin over gRPC. Plugin authors do not use it directly
// (ServeScenario does).
type ScenarioPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl ScenarioHandler // plugin side only
}

var _ plugin.GRPCPlugin = (*ScenarioPlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin.
func (p *ScenarioPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("sdk: ScenarioPlugin has no handler")
	}
	pluginpb.RegisterScenarioServer(s, &scenarioServer{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin. The result is a ScenarioHandler.
func (p *ScenarioPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &scenarioClient{c: pluginpb.NewScenarioClient(c)}, nil
}

// scenarioServer runs in the plugin and calls the partner's handler.
type scenarioServer struct {
	pluginpb.UnimplementedScenarioServer
	impl ScenarioHandler
}

func (s *scenarioServer) Describe(ctx context.Context, _ *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.DescribeResponse{Info: &pluginpb.ScenarioInfo{
		Type:         info.Type,
		DisplayName:  info.DisplayName,
		Version:      info.Version,
		EntityKind:   info.EntityKind,
		Capabilities: info.Capabilities,
	}}, nil
}

func (s *scenarioServer) ListEntities(ctx context.Context, req *pluginpb.ListEntitiesRequest) (*pluginpb.ListEntitiesResponse, error) {
	ents, err := s.impl.ListEntities(ctx, configFromPB(req.GetConfig()))
	if err != nil {
		return nil, handlerStatus(err)
	}
	out := &pluginpb.ListEntitiesResponse{Entities: make([]*pluginpb.Entity, 0, len(ents))}
	for _, e := range ents {
		out.Entities = append(out.Entities, &pluginpb.Entity{Name: e.Name, Kind: e.Kind, Paths: e.Paths, Detail: e.Detail})
	}
	return out, nil
}

func (s *scenarioServer) PrepareBackup(ctx context.Context, req *pluginpb.PrepareBackupRequest) (*pluginpb.PrepareBackupResponse, error) {
	r, err := s.impl.PrepareBackup(ctx, configFromPB(req.GetConfig()), req.GetEntity())
	if err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.PrepareBackupResponse{HoldId: r.HoldID, Consistency: r.Consistency}, nil
}

func (s *scenarioServer) ReleaseBackup(ctx context.Context, req *pluginpb.ReleaseBackupRequest) (*pluginpb.ReleaseBackupResponse, error) {
	if err := s.impl.ReleaseBackup(ctx, req.GetHoldId()); err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.ReleaseBackupResponse{}, nil
}

func (s *scenarioServer) Verify(ctx context.Context, req *pluginpb.VerifyRequest) (*pluginpb.VerifyResponse, error) {
	r, err := s.impl.Verify(ctx, VerifyRequest{Scenario: configFromPB(req.GetConfig()), Entity: req.GetEntity(), Root: req.GetRoot()})
	if err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.VerifyResponse{
		Passed:        r.Passed,
		Checked:       r.Checked,
		Problems:      r.Problems,
		DurationNanos: int64(r.Duration),
	}, nil
}

func (s *scenarioServer) BeforeRestore(ctx context.Context, req *pluginpb.RestoreRequest) (*pluginpb.RestoreResponse, error) {
	if err := s.impl.BeforeRestore(ctx, restoreFromPB(req)); err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.RestoreResponse{}, nil
}

func (s *scenarioServer) AfterRestore(ctx context.Context, req *pluginpb.RestoreRequest) (*pluginpb.RestoreResponse, error) {
	if err := s.impl.AfterRestore(ctx, restoreFromPB(req)); err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.RestoreResponse{}, nil
}

// scenarioClient runs in the host and implements ScenarioHandler by calling
// the plugin. It converts, but does not validate: the host validates with
// the request at hand (ValidateEntities needs the scenario's roots).
type scenarioClient struct {
	c pluginpb.ScenarioClient
}

var replyLimit = grpc.MaxCallRecvMsgSize(MaxReplyBytes)

func (c *scenarioClient) Describe(ctx context.Context) (ScenarioInfo, error) {
	resp, err := c.c.Describe(ctx, &pluginpb.DescribeRequest{}, replyLimit)
	if err != nil {
		return ScenarioInfo{}, clientError("Describe", err)
	}
	return infoFromPB(resp), nil
}

func (c *scenarioClient) ListEntities(ctx context.Context, cfg ScenarioConfig) ([]Entity, error) {
	resp, err := c.c.ListEntities(ctx, &pluginpb.ListEntitiesRequest{Config: configToPB(cfg)}, replyLimit)
	if err != nil {
		return nil, clientError("ListEntities", err)
	}
	return entitiesFromPB(resp), nil
}

func (c *scenarioClient) PrepareBackup(ctx context.Context, cfg ScenarioConfig, entity string) (PrepareResult, error) {
	resp, err := c.c.PrepareBackup(ctx, &pluginpb.PrepareBackupRequest{Config: configToPB(cfg), Entity: entity}, replyLimit)
	if err != nil {
		return PrepareResult{}, clientError("PrepareBackup", err)
	}
	return PrepareResult{HoldID: resp.GetHoldId(), Consistency: resp.GetConsistency()}, nil
}

func (c *scenarioClient) ReleaseBackup(ctx context.Context, holdID string) error {
	_, err := c.c.ReleaseBackup(ctx, &pluginpb.ReleaseBackupRequest{HoldId: holdID}, replyLimit)
	return clientError("ReleaseBackup", err)
}

func (c *scenarioClient) Verify(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	resp, err := c.c.Verify(ctx, &pluginpb.VerifyRequest{Config: configToPB(req.Scenario), Entity: req.Entity, Root: req.Root}, replyLimit)
	if err != nil {
		return VerifyResult{}, clientError("Verify", err)
	}
	return verifyFromPB(resp), nil
}

func (c *scenarioClient) BeforeRestore(ctx context.Context, req RestoreRequest) error {
	_, err := c.c.BeforeRestore(ctx, restoreToPB(req), replyLimit)
	return clientError("BeforeRestore", err)
}

func (c *scenarioClient) AfterRestore(ctx context.Context, req RestoreRequest) error {
	_, err := c.c.AfterRestore(ctx, restoreToPB(req), replyLimit)
	return clientError("AfterRestore", err)
}

// Conversions. The *FromPB functions take untrusted messages on the host side
// and must accept anything protobuf can decode (nil messages included); the
// fuzz tests feed them raw bytes.

func infoFromPB(resp *pluginpb.DescribeResponse) ScenarioInfo {
	i := resp.GetInfo()
	return ScenarioInfo{
		Type:         i.GetType(),
		DisplayName:  i.GetDisplayName(),
		Version:      i.GetVersion(),
		EntityKind:   i.GetEntityKind(),
		Capabilities: i.GetCapabilities(),
	}
}

func entitiesFromPB(resp *pluginpb.ListEntitiesResponse) []Entity {
	in := resp.GetEntities()
	out := make([]Entity, 0, len(in))
	for _, e := range in {
		out = append(out, Entity{Name: e.GetName(), Kind: e.GetKind(), Paths: e.GetPaths(), Detail: e.GetDetail()})
	}
	return out
}

func verifyFromPB(resp *pluginpb.VerifyResponse) VerifyResult {
	return VerifyResult{
		Passed:   resp.GetPassed(),
		Checked:  resp.GetChecked(),
		Problems: resp.GetProblems(),
		Duration: time.Duration(resp.GetDurationNanos()),
	}
}

func configToPB(c ScenarioConfig) *pluginpb.ScenarioConfig {
	return &pluginpb.ScenarioConfig{Id: c.ID, Name: c.Name, MasterHost: c.MasterHost, Roots: c.Roots, Options: c.Options}
}

func configFromPB(c *pluginpb.ScenarioConfig) ScenarioConfig {
	return ScenarioConfig{
		ID:         c.GetId(),
		Name:       c.GetName(),
		MasterHost: c.GetMasterHost(),
		Roots:      c.GetRoots(),
		Options:    c.GetOptions(),
	}
}

func restoreToPB(r RestoreRequest) *pluginpb.RestoreRequest {
	return &pluginpb.RestoreRequest{Config: configToPB(r.Scenario), Entity: r.Entity, Destination: r.Destination, Overwrite: r.Overwrite}
}

func restoreFromPB(r *pluginpb.RestoreRequest) RestoreRequest {
	return RestoreRequest{
		Scenario:    configFromPB(r.GetConfig()),
		Entity:      r.GetEntity(),
		Destination: r.GetDestination(),
		Overwrite:   r.GetOverwrite(),
	}
}
