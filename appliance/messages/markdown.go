package messages

import (
	"fmt"
	"strings"
)

// Markdown renders the whole catalog as the reference page docs/messages.md.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Message codes\n\n")
	b.WriteString("Generated from `appliance/messages` by `go test ./appliance/messages -update`; do not edit by hand.\n\n")
	b.WriteString("A code is `HF-` + severity (I information, W warning, E error) + four digits; the first digit is the area: ")
	b.WriteString("1 daemon and API, 2 catalog, 3 plugins, 4 scenarios and replication, 5 backup, 6 restore, 7 tape, 8 appliance. ")
	b.WriteString("`holdfast messages CODE` prints an entry on the appliance. In message texts, `%s`, `%d` and `%v` stand for values filled in at run time.\n\n")
	b.WriteString("| code | module | message | replaces |\n| --- | --- | --- | --- |\n")
	for _, m := range All() {
		fmt.Fprintf(&b, "| [%s](#%s) | %s | %s | %s |\n", m.Code, strings.ToLower(string(m.Code)), m.Module, escape(m.Text), m.Legacy)
	}
	for _, m := range All() {
		fmt.Fprintf(&b, "\n## %s\n\n%s — module **%s**", m.Code, escape(m.Text), m.Module)
		if m.Legacy != "" {
			fmt.Fprintf(&b, " — same meaning as the integration message %s of the product it replaces", m.Legacy)
		}
		b.WriteString("\n")
		if m.Reason != "" {
			fmt.Fprintf(&b, "\n- Reason: %s\n", m.Reason)
		}
		if m.Action != "" {
			fmt.Fprintf(&b, "- Action: %s\n", m.Action)
		}
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
