package tcp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/agent/throttle"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Settings keys accepted by Configure (documented in docs/plugins.md).
const (
	keyIdentityDir    = "identity_dir"
	keyListen         = "listen"
	keyListenAddrFile = "listen_addr_file"
	keyCompression    = "compression"
	keyBandwidth      = "bandwidth"
	keyWindowBytes    = "window_bytes"
)

const (
	defaultWindow = 64 << 20
	// A window below one payload would make every frame wait alone; above
	// 16 GiB is memory no appliance should spend on one session.
	minWindow = sdk.MaxFramePayload
	maxWindow = 16 << 30
)

// settings is a checked Configure call, identity loaded.
type settings struct {
	identityDir    string
	cert           tls.Certificate
	roots          *x509.CertPool
	listen         string
	listenAddrFile string
	compress       bool
	bandwidth      throttle.Schedule
	limited        bool // bandwidth was set (the zero Schedule is unlimited anyway)
	window         int64
}

func parseSettings(m map[string]string) (*settings, error) {
	known := []string{keyIdentityDir, keyListen, keyListenAddrFile, keyCompression, keyBandwidth, keyWindowBytes}
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("unknown setting %q (known: %s)", unknown[0], strings.Join(known, ", "))
	}
	s := &settings{compress: true, window: defaultWindow}
	s.identityDir = m[keyIdentityDir]
	if s.identityDir == "" {
		return nil, fmt.Errorf("setting %s: required (the directory holding this host's key, certificate and CA)", keyIdentityDir)
	}
	cert, roots, err := pki.LoadIdentity(s.identityDir)
	if err != nil {
		return nil, fmt.Errorf("setting %s: %w", keyIdentityDir, err)
	}
	s.cert, s.roots = cert, roots
	if v, ok := m[keyListen]; ok {
		if err := checkListen(v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", keyListen, err)
		}
		s.listen = v
	}
	if v, ok := m[keyListenAddrFile]; ok {
		if v == "" || s.listen == "" {
			return nil, fmt.Errorf("setting %s: needs a file name and the %s setting", keyListenAddrFile, keyListen)
		}
		s.listenAddrFile = v
	}
	switch v, ok := m[keyCompression]; {
	case !ok, v == "zstd":
	case v == "none":
		s.compress = false
	default:
		return nil, fmt.Errorf("setting %s: %q is neither zstd nor none", keyCompression, v)
	}
	if v, ok := m[keyBandwidth]; ok {
		sched, err := throttle.Parse(v, nil)
		if err != nil {
			return nil, fmt.Errorf("setting %s: %w", keyBandwidth, err)
		}
		s.bandwidth, s.limited = sched, true
	}
	if v, ok := m[keyWindowBytes]; ok {
		n, err := parseBytes(v)
		if err != nil {
			return nil, fmt.Errorf("setting %s: %w", keyWindowBytes, err)
		}
		if n < minWindow || n > maxWindow {
			return nil, fmt.Errorf("setting %s: %d bytes, want %d..%d", keyWindowBytes, n, minWindow, int64(maxWindow))
		}
		s.window = n
	}
	return s, nil
}

func checkListen(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT: %w", v, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", v, port)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: bad host %q", v, host)
	}
	return nil
}

// parseBytes parses a byte count: digits with an optional KiB, MiB or GiB.
func parseBytes(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = s, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a byte count such as 67108864 or 64MiB", v)
	}
	if n > maxWindow/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// parsePeer splits Send's peer "NAME@HOST:PORT".
func parsePeer(peer string) (name, addr string, err error) {
	name, addr, ok := strings.Cut(peer, "@")
	if !ok || name == "" || addr == "" {
		return "", "", fmt.Errorf("peer %q: want NAME@HOST:PORT (the peer's enrolled host name, then where to dial it)", peer)
	}
	// Certificates carry names normalized this way (pki.PeerHost).
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if strings.ContainsAny(name, "@/ ") {
		return "", "", fmt.Errorf("peer %q: bad host name %q", peer, name)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "@/ ") {
		return "", "", fmt.Errorf("peer %q: want NAME@HOST:PORT, bad address %q", peer, addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", "", fmt.Errorf("peer %q: bad port %q", peer, port)
	}
	return name, addr, nil
}
