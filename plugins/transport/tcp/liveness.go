package tcp

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// unackedTimeout bounds how long sent data may stay unacknowledged by the
// peer's kernel before the connection is declared dead. Without it a link
// that drops for 30 s leaves TCP retransmitting on a doubling timer, and
// the stream may sit idle for a long while after the link is back; with it
// the connection fails and is dialled afresh, resuming where it stopped.
const unackedTimeout = 15 * time.Second

// keepAlive finds a dead idle connection: first probe after 10 s of
// silence, then every 5 s, given up after 3.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}

// tuneLiveness applies both to a new connection.
func tuneLiveness(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetKeepAliveConfig(keepAlive); err != nil {
		return fmt.Errorf("set keepalive: %w", err)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return fmt.Errorf("set user timeout: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(unackedTimeout/time.Millisecond))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("set user timeout: %w", err)
	}
	return nil
}
