package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/holdfast/holdfast/agent/enroll"
)

// DefaultStateDir is where the agent keeps its identity unless told
// otherwise.
const DefaultStateDir = "/var/lib/holdfast-agent"

func init() {
	commands["enroll"] = command{summary: "enroll this host with a Holdfast appliance (once, with a token)", run: runEnroll}
}

func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("holdfast-agent enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o enroll.Options
	fs.StringVar(&o.Appliance, "appliance", "", "HOST:PORT of the appliance's agent listener")
	fs.StringVar(&o.ServerName, "server-name", "", "host name in the appliance's certificate (default: HOST of --appliance)")
	fs.StringVar(&o.Token, "token", "", "one-time enrollment token from 'holdfast agent token' (default $HOLDFAST_ENROLL_TOKEN)")
	fs.StringVar(&o.Fingerprint, "fingerprint", "", "SHA-256 fingerprint of the appliance CA, given with the token")
	fs.StringVar(&o.Host, "host", "", "this host's name, as the token was created for (default: the hostname)")
	fs.StringVar(&o.StateDir, "state", DefaultStateDir, "directory for the agent's key, certificate and appliance address")
	fs.BoolVar(&o.Force, "force", false, "replace an identity already in --state")
	fs.DurationVar(&o.Timeout, "timeout", time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: holdfast-agent enroll --appliance HOST:PORT --token T --fingerprint F [--host NAME] [--state DIR] [--force]")
		fmt.Fprintln(stderr, "\n'holdfast agent token HOST' on the appliance prints this command line ready to run.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if o.Token == "" {
		// The environment keeps the token out of the process list.
		o.Token = os.Getenv("HOLDFAST_ENROLL_TOKEN")
	}
	if o.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "holdfast-agent enroll: no --host and the hostname is unknown: %v\n", err)
			return 2
		}
		o.Host = h
	}
	res, err := enroll.Enroll(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "holdfast-agent enroll: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "enrolled %s with appliance %s (%s)\ncertificate serial %s, valid until %s\nidentity saved in %s\n",
		res.Host, res.ApplianceName, res.ApplianceAddr, res.Serial, res.NotAfter.Local().Format(time.DateTime), o.StateDir)
	return 0
}
