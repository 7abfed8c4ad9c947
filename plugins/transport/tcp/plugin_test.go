package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// pluginBin is the holdfast-tcp binary TestMain builds.
var pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-tcp-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// go test puts its own go command first in PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "building the plugin:", err)
			return 1
		}
		pluginBin = filepath.Join(dir, "holdfast-tcp")
		cmd := exec.Command(goTool, "build", "-ldflags=-s -w", "-o", pluginBin,
			"github.com/holdfast/holdfast/plugins/transport/tcp/cmd/holdfast-tcp")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the plugin:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startPlugin starts the built binary the way holdfastd does and returns
// the transport it serves.
func startPlugin(t *testing.T) sdk.Transport {
	t.Helper()
	out := io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(sdk.TransportPluginName, &sdk.TransportPlugin{}, sdk.ProtocolVersions),
		Cmd:              exec.Command(pluginBin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Info}),
		Stderr:           out,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(sdk.TransportPluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(sdk.Transport)
}

func TestPluginBinaryEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := newCA(t)
	recv, send, foreign := startPlugin(t), startPlugin(t), startPlugin(t)

	info, err := recv.Describe(ctx)
	if err != nil || info.Name != "tcp" {
		t.Fatalf("Describe = %+v, %v", info, err)
	}
	err = recv.Configure(ctx, map[string]string{"identity_dir": enroll(t, ca, "replica.test"), "window_bytes": "many"})
	if !sdk.IsHandlerError(err) || !strings.Contains(err.Error(), "window_bytes") {
		t.Fatalf("Configure with a bad window_bytes = %v, want a handler error naming it", err)
	}
	addrFile := filepath.Join(t.TempDir(), "listen.addr")
	if err := recv.Configure(ctx, map[string]string{
		"identity_dir":     enroll(t, ca, "replica.test"),
		"listen":           "127.0.0.1:0",
		"listen_addr_file": addrFile,
	}); err != nil {
		t.Fatal(err)
	}
	addr, err := os.ReadFile(addrFile)
	if err != nil {
		t.Fatal(err)
	}
	peer := "replica.test@" + strings.TrimSpace(string(addr))
	if err := send.Configure(ctx, map[string]string{"identity_dir": enroll(t, ca, "master.test")}); err != nil {
		t.Fatal(err)
	}
	if err := foreign.Configure(ctx, map[string]string{"identity_dir": enroll(t, newCA(t), "master.test")}); err != nil {
		t.Fatal(err)
	}

	host := startReceivingHost(t, ctx, recv, "e2e")
	_, err = sendAll(ctx, foreign, peer, "e2e", makeFrames(1, 2, func(int) []byte { return []byte("intruder") }))
	if !errors.Is(err, sdk.ErrNotAuthorized) {
		t.Fatalf("sending with a foreign certificate: %v, want ErrNotAuthorized across the plugin boundary", err)
	}
	frames := makeFrames(1, 50, func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("frame %d ", i), 1+i*100)) })
	acks, err := sendAll(ctx, send, peer, "e2e", frames)
	if err != nil {
		t.Fatal(err)
	}
	checkAcks(t, frames, acks)
	checkDelivered(t, frames, host.received())
}
