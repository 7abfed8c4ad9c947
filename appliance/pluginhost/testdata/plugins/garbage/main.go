// Command garbage is a test "plugin" that never performs the handshake: it
// prints junk where the handshake line belongs, and on stderr a JSON log
// line with a wrongly typed field (go-plugin's own log parser panics on it).
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	fmt.Fprintln(os.Stderr, `{"@message": 5, "@level": ["x"], "@timestamp": 7}`)
	fmt.Fprintln(os.Stderr, "\x1b[31mnot a log line\x1b[0m")
	fmt.Println("Hello! I am definitely a plugin \x00\x01\x02")
	time.Sleep(time.Minute)
}
