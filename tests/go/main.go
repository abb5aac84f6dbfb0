// Command signet-go-check drives go-spiffe, the reference SPIFFE library for
// Go, against a Workload API: the end-to-end tests run it against Signet's
// agent as a third independent client, beside the Rust spiffe crate and
// py-spiffe. Each subcommand does what a Go service would do and prints what
// it saw as JSON lines on stdout; a failure exits 1 with the reason on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = []command{
	{"x509", "X509Source: the SVID, verified with x509svid.Verify against the fetched bundle", runX509},
	{"jwt", "JWTSource: a JWT-SVID, validated with jwtsvid.ParseAndValidate against the fetched bundle", runJWT},
	{"validate", "ValidateJWTSVID through the Workload API", runValidate},
	{"watch", "X509Source updates as they come (rotation)", runWatch},
	{"mtls-serve", "an mTLS server (spiffetls) that authorizes one client ID", runServe},
	{"mtls-dial", "an mTLS client (spiffetls) that authorizes one server ID", runDial},
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(os.Args[2:])
		switch {
		case err == nil:
			return
		case errors.Is(err, flag.ErrHelp):
			os.Exit(2)
		case errors.Is(err, errUsage):
			fmt.Fprintf(os.Stderr, "signet-go-check %s: %v\n", name, err)
			os.Exit(2)
		default:
			fmt.Fprintf(os.Stderr, "signet-go-check %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "signet-go-check: unknown subcommand %q\n", name)
	usage()
	os.Exit(2)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: signet-go-check <subcommand> --socket unix:///path [flags]")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-10s  %s\n", c.name, c.summary)
	}
}

// withTimeout bounds a whole subcommand: a Workload API that never answers
// must end in an error, not a hung test.
func withTimeout(c *common) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}
