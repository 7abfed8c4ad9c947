package sdk

import (
	"context"
	"errors"
	"io"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/holdfast/holdfast/plugins/sdk/internal/pluginpb"
)

// TransportPlugin is the go-plugin glue for transports, like ScenarioPlugin.
type TransportPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Transport // plugin side only
}

var _ plugin.GRPCPlugin = (*TransportPlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin.
func (p *TransportPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("sdk: TransportPlugin has no transport")
	}
	pluginpb.RegisterTransportServer(s, &transportServer{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin. The result is a Transport.
func (p *TransportPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &transportClient{c: pluginpb.NewTransportClient(c)}, nil
}

// transportServer runs in the plugin. Each stream RPC pumps the host's
// messages into the partner's stream object on one goroutine and the
// partner's output back to the host on the RPC's own goroutine.
type transportServer struct {
	pluginpb.UnimplementedTransportServer
	impl Transport
}

func (s *transportServer) Describe(ctx context.Context, _ *pluginpb.DescribeTransportRequest) (*pluginpb.DescribeTransportResponse, error) {
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.DescribeTransportResponse{Info: &pluginpb.TransportInfo{
		Name: info.Name, Version: info.Version, Features: info.Features,
	}}, nil
}

func (s *transportServer) Configure(ctx context.Context, req *pluginpb.ConfigureTransportRequest) (*pluginpb.ConfigureTransportResponse, error) {
	if err := s.impl.Configure(ctx, req.GetSettings()); err != nil {
		return nil, handlerStatus(err)
	}
	return &pluginpb.ConfigureTransportResponse{}, nil
}

var errNoOpen = status.Error(codes.InvalidArgument, "the first message of a stream must open it")

func (s *transportServer) Send(stream grpc.BidiStreamingServer[pluginpb.SendRequest, pluginpb.Ack]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return errNoOpen
	}
	// The partner's sender must unblock when ctx ends; cancelling it is how
	// a failed pump stops the ack loop below.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	fs, err := s.impl.Send(ctx, open.GetPeer(), open.GetSession())
	if err != nil {
		return handlerStatus(err)
	}
	var a Ack
	return relay(cancel, func() error { return pumpFrames(stream, fs) },
		func() (err error) { a, err = fs.Recv(); return err },
		func() error { return stream.Send(&pluginpb.Ack{Seq: a.Seq, Payload: a.Payload}) })
}

// relay runs the plugin side of a stream: pump feeds the host's messages to
// the partner's stream object on a goroutine of its own, while recv takes
// the partner's next output and send forwards it to the host, until recv
// says io.EOF. A failed pump cancels the stream; the partner's stream then
// fails too, and the pump's error, the cause, is the one returned.
func relay(cancel context.CancelFunc, pump, recv, send func() error) error {
	pumpErr := make(chan error, 1)
	go func() {
		err := pump()
		pumpErr <- err
		if err != nil {
			cancel()
		}
	}()
	for {
		err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			select {
			case perr := <-pumpErr:
				if perr != nil {
					return perr
				}
			default:
			}
			return handlerStatus(err)
		}
		if err := send(); err != nil {
			return err
		}
	}
}

func pumpFrames(stream grpc.BidiStreamingServer[pluginpb.SendRequest, pluginpb.Ack], fs FrameSender) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return handlerStatus(fs.CloseSend())
		}
		if err != nil {
			return err
		}
		f := m.GetFrame()
		if f == nil {
			return status.Error(codes.InvalidArgument, "a Send stream may be opened only once")
		}
		if err := fs.Send(Frame{Seq: f.GetSeq(), Payload: f.GetPayload()}); err != nil {
			return handlerStatus(err)
		}
	}
}

func (s *transportServer) Receive(stream grpc.BidiStreamingServer[pluginpb.ReceiveRequest, pluginpb.Frame]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return errNoOpen
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	fr, err := s.impl.Receive(ctx, open.GetSession(), open.GetPeer())
	if err != nil {
		return handlerStatus(err)
	}
	var f Frame
	return relay(cancel, func() error { return pumpAcks(stream, fr) },
		func() (err error) { f, err = fr.Recv(); return err },
		func() error { return stream.Send(&pluginpb.Frame{Seq: f.Seq, Payload: f.Payload, Peer: f.Peer}) })
}

func pumpAcks(stream grpc.BidiStreamingServer[pluginpb.ReceiveRequest, pluginpb.Frame], fr FrameReceiver) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return handlerStatus(fr.Close())
		}
		if err != nil {
			return err
		}
		a := m.GetAck()
		if a == nil {
			return status.Error(codes.InvalidArgument, "a Receive stream may be opened only once")
		}
		if err := fr.Ack(Ack{Seq: a.GetSeq(), Payload: a.GetPayload()}); err != nil {
			return handlerStatus(err)
		}
	}
}

// transportClient runs in the host and implements Transport over gRPC.
type transportClient struct {
	c pluginpb.TransportClient
}

func (c *transportClient) Describe(ctx context.Context) (TransportInfo, error) {
	resp, err := c.c.Describe(ctx, &pluginpb.DescribeTransportRequest{}, replyLimit)
	if err != nil {
		return TransportInfo{}, clientError("Describe", err)
	}
	return transportInfoFromPB(resp), nil
}

func (c *transportClient) Configure(ctx context.Context, settings map[string]string) error {
	_, err := c.c.Configure(ctx, &pluginpb.ConfigureTransportRequest{Settings: settings}, replyLimit)
	return clientError("Configure", err)
}

func (c *transportClient) Send(ctx context.Context, peer, session string) (FrameSender, error) {
	stream, err := c.c.Send(ctx, replyLimit)
	if err != nil {
		return nil, clientError("Send", err)
	}
	open := &pluginpb.SendRequest{Msg: &pluginpb.SendRequest_Open{Open: &pluginpb.SendOpen{Peer: peer, Session: session}}}
	if err := stream.Send(open); err != nil {
		return nil, clientError("Send", err)
	}
	return &senderClient{s: stream}, nil
}

func (c *transportClient) Receive(ctx context.Context, session, peer string) (FrameReceiver, error) {
	stream, err := c.c.Receive(ctx, replyLimit)
	if err != nil {
		return nil, clientError("Receive", err)
	}
	open := &pluginpb.ReceiveRequest{Msg: &pluginpb.ReceiveRequest_Open{Open: &pluginpb.ReceiveOpen{Session: session, Peer: peer}}}
	if err := stream.Send(open); err != nil {
		return nil, clientError("Receive", err)
	}
	return &receiverClient{s: stream}, nil
}

// senderClient is the host's end of a Send stream. As with any gRPC stream,
// an error from Send (wrapping io.EOF) only says the stream is over; Recv
// returns the reason.
type senderClient struct {
	s grpc.BidiStreamingClient[pluginpb.SendRequest, pluginpb.Ack]
}

func (c *senderClient) Send(f Frame) error {
	m := &pluginpb.SendRequest{Msg: &pluginpb.SendRequest_Frame{Frame: &pluginpb.Frame{Seq: f.Seq, Payload: f.Payload}}}
	return clientError("Send", c.s.Send(m))
}

func (c *senderClient) Recv() (Ack, error) {
	a, err := c.s.Recv()
	if errors.Is(err, io.EOF) {
		return Ack{}, io.EOF
	}
	if err != nil {
		return Ack{}, clientError("Send", err)
	}
	return Ack{Seq: a.GetSeq(), Payload: a.GetPayload()}, nil
}

func (c *senderClient) CloseSend() error { return clientError("Send", c.s.CloseSend()) }

// receiverClient is the host's end of a Receive stream.
type receiverClient struct {
	s grpc.BidiStreamingClient[pluginpb.ReceiveRequest, pluginpb.Frame]
}

func (c *receiverClient) Recv() (Frame, error) {
	f, err := c.s.Recv()
	if errors.Is(err, io.EOF) {
		return Frame{}, io.EOF
	}
	if err != nil {
		return Frame{}, clientError("Receive", err)
	}
	return frameFromPB(f), nil
}

func (c *receiverClient) Ack(a Ack) error {
	m := &pluginpb.ReceiveRequest{Msg: &pluginpb.ReceiveRequest_Ack{Ack: &pluginpb.Ack{Seq: a.Seq, Payload: a.Payload}}}
	return clientError("Receive", c.s.Send(m))
}

func (c *receiverClient) Close() error { return clientError("Receive", c.s.CloseSend()) }

func transportInfoFromPB(resp *pluginpb.DescribeTransportResponse) TransportInfo {
	i := resp.GetInfo()
	return TransportInfo{Name: i.GetName(), Version: i.GetVersion(), Features: i.GetFeatures()}
}

func frameFromPB(f *pluginpb.Frame) Frame {
	return Frame{Seq: f.GetSeq(), Payload: f.GetPayload(), Peer: f.GetPeer()}
}
