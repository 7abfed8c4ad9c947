// Command holdfast-fileserver is the File Server scenario plugin. holdfastd
// starts it; run by hand it only says that it is a plugin. See
// docs/plugins.md for how plugins are installed and sealed.
package main

import (
	"github.com/holdfast/holdfast/plugins/scenario/fileserver"
	"github.com/holdfast/holdfast/plugins/sdk"
)

func main() {
	sdk.ServeScenario(fileserver.New())
}
