package control

import (
	"net"
	"os"
	"strings"
)

// DataAddress is what masters should dial to reach a host that receives
// replication on listen: advertise when set (NAT, 0.0.0.0), else the
// address its transport wrote to addrFile once it bound, else listen itself
// when its port is fixed. It is "" while unknown, and for a host that does
// not receive (listen empty). Agents and holdfastd both put it in their
// reports.
func DataAddress(listen, advertise, addrFile string) string {
	if listen == "" {
		return ""
	}
	if advertise != "" {
		return advertise
	}
	if b, err := os.ReadFile(addrFile); err == nil {
		if a := strings.TrimSpace(string(b)); validHostPort(a) {
			return a
		}
	}
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "0" {
		return listen
	}
	return ""
}

func validHostPort(a string) bool {
	_, _, err := net.SplitHostPort(a)
	return err == nil
}
