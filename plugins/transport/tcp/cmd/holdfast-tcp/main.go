// Command holdfast-tcp is the TCP transport plugin. holdfastd starts it; run
// by hand it only says that it is a plugin. See docs/plugins.md for its
// settings and how plugins are installed and sealed.
package main

import (
	"log/slog"
	"os"

	"github.com/holdfast/holdfast/plugins/sdk"
	"github.com/holdfast/holdfast/plugins/transport/tcp"
)

func main() {
	sdk.ServeTransport(tcp.New(slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		// holdfastd reads a plugin's stderr as hclog JSON lines.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 {
				switch a.Key {
				case slog.MessageKey:
					a.Key = "@message"
				case slog.LevelKey:
					a.Key = "@level"
				case slog.TimeKey:
					a.Key = "@timestamp"
				}
			}
			return a
		},
	}))))
}
