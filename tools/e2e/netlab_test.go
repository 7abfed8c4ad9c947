package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netLab is a small network of hosts, each a network namespace with one
// veth leg on a bridge that lives in a namespace of its own. Addresses are
// private and exist only inside the namespaces; the host's own network is
// never touched.
type netLab struct {
	t      *testing.T
	prefix string // unique per lab, so parallel or leftover labs never clash
	hosts  map[string]labHost
	order  []string
}

type labHost struct {
	ns   string // namespace name
	leg  string // the veth end inside the host's namespace
	peer string // the veth end on the bridge
	addr string // IPv4 address, no prefix length
}

// needNetLab skips the test, saying why, where namespaces cannot be made.
func needNetLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("multi-host test needs root to create network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("multi-host test needs the ip command (Debian package iproute2; make test installs it)")
	}
	// Root without CAP_SYS_ADMIN (some containers) cannot make namespaces:
	// say so rather than fail on the first command.
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	probe := "hfprobe" + hex.EncodeToString(b)
	out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not permitted") {
			t.Skipf("multi-host test cannot create network namespaces here (%s); it needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN", strings.TrimSpace(string(out)))
		}
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
}

func newNetLab(t *testing.T, hosts ...string) *netLab {
	t.Helper()
	needNetLab(t)
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	l := &netLab{t: t, prefix: "hf" + hex.EncodeToString(b), hosts: map[string]labHost{}}
	t.Cleanup(l.teardown)
	lan := l.prefix + "-lan"
	l.ip("netns", "add", lan)
	l.ip("-n", lan, "link", "add", "br0", "type", "bridge")
	l.ip("-n", lan, "link", "set", "br0", "up")
	for i, h := range hosts {
		ns := l.prefix + "-" + h
		leg, peer := fmt.Sprintf("%sh%d", l.prefix, i), fmt.Sprintf("%sb%d", l.prefix, i)
		addr := fmt.Sprintf("10.213.%d.%d", i/200, 10+i%200)
		l.ip("netns", "add", ns)
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("link", "add", leg, "netns", ns, "type", "veth", "peer", "name", peer, "netns", lan)
		l.ip("-n", lan, "link", "set", peer, "master", "br0")
		l.ip("-n", lan, "link", "set", peer, "up")
		l.ip("-n", ns, "addr", "add", addr+"/16", "dev", leg)
		l.ip("-n", ns, "link", "set", leg, "up")
		l.hosts[h] = labHost{ns: ns, leg: leg, peer: peer, addr: addr}
		l.order = append(l.order, h)
	}
	return l
}

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addr is host's address inside the lab.
func (l *netLab) addr(host string) string { return l.hosts[host].addr }

// command runs name in host's namespace.
func (l *netLab) command(host, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.hosts[host].ns, name}, args...)...)
}

// start runs a program in host's namespace.
func (l *netLab) start(t *testing.T, host, logFile, name string, args ...string) *proc {
	t.Helper()
	return startProc(t, logFile, l.command(host, name, args...))
}

// linkDown cuts host off the lab: its bridge leg goes down, as when a
// cable is pulled or a WAN link drops.
func (l *netLab) linkDown(host string) {
	l.ip("-n", l.prefix+"-lan", "link", "set", l.hosts[host].peer, "down")
}

func (l *netLab) linkUp(host string) {
	l.ip("-n", l.prefix+"-lan", "link", "set", l.hosts[host].peer, "up")
}

// teardown removes the namespaces; deleting one deletes its veth legs.
func (l *netLab) teardown() {
	for _, h := range l.order {
		_ = exec.Command("ip", "netns", "del", l.hosts[h].ns).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.prefix+"-lan").Run()
}
