// Command spire-agent-sim simulates many SPIRE agents against a real
// spire-server, speaking its own APIs (the spire-api-sdk protos over gRPC) as
// spire-agent does, so that signet-bench can measure the server's memory with
// that many agents synced (vs_spire_server_rss_1k_agents).
//
// It runs in three phases:
//
//  1. setup, over the server's admin socket (local callers are admins): a join
//     token per agent (agent/v1 CreateJoinToken) and -entriesPerAgent entries
//     parented to each agent's ID (entry/v1 BatchCreateEntry);
//  2. for each agent, -concurrency at a time: join_token attestation (agent/v1
//     AttestAgent over TLS) for an agent X509-SVID, then, on the agent's own
//     mTLS connection, a first sync as spire-agent's: its authorized entries
//     (entry/v1 SyncAuthorizedEntries), the bundle (bundle/v1 GetBundle) and
//     an X509-SVID per entry (svid/v1 BatchNewX509SVID);
//  3. one JSON line on stdout, then every agent's connection held open (as
//     idle agents between syncs hold theirs) until stdin reaches EOF.
//
// A failing agent counts as an error in the JSON line (the first few say why
// on stderr); anything else that fails exits 1 with the reason on stderr, and
// bad flags exit 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type config struct {
	serverAddr      string
	adminSocket     string
	td              spiffeid.TrustDomain
	bundlePath      string
	bundle          *x509bundle.Bundle
	agents          int
	entriesPerAgent int
	concurrency     int
	batchSize       int
	tokenTTL        time.Duration
	rpcTimeout      time.Duration
	entriesPatience time.Duration
}

// synced is the line printed once every agent has had its turn.
type synced struct {
	Event string `json:"event"`
	// Agents that attested, got all their entries and an SVID for each.
	Agents int `json:"agents"`
	// Entries and SVIDs received, over all agents.
	Entries int `json:"entries"`
	SVIDs   int `json:"svids"`
	// Failed agents, plus refused SVIDs and entry counts off the mark.
	Errors int `json:"errors"`
	// Syncs repeated because the server's entry cache had not yet caught
	// up with the entries just created (as the agent's next sync would).
	Resyncs int `json:"resyncs"`
	// From the first attestation to the last agent synced.
	Seconds float64 `json:"seconds"`
	// Join tokens and entries.
	SetupSeconds float64 `json:"setup_seconds"`
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spire-agent-sim: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "spire-agent-sim: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags() (*config, error) {
	var (
		cfg    config
		tdName string
	)
	flag.StringVar(&cfg.serverAddr, "serverAddr", "", "spire-server's agent API, host:port (required)")
	flag.StringVar(&cfg.adminSocket, "adminSocket", "", "spire-server's socket_path, its local admin API (required)")
	flag.StringVar(&tdName, "trustDomain", "", "the server's trust domain (required)")
	flag.StringVar(&cfg.bundlePath, "bundle", "", "PEM file of the trust bundle, as `spire-server bundle show -format pem` prints it (required)")
	flag.IntVar(&cfg.agents, "agents", 1000, "agents to simulate")
	flag.IntVar(&cfg.entriesPerAgent, "entriesPerAgent", 10, "entries parented to each agent")
	flag.IntVar(&cfg.concurrency, "concurrency", 16, "agents attesting and syncing at once (and join tokens created at once)")
	flag.IntVar(&cfg.batchSize, "batchSize", 500, "entries per BatchCreateEntry call")
	flag.DurationVar(&cfg.tokenTTL, "tokenTTL", time.Hour, "lifetime of the join tokens")
	flag.DurationVar(&cfg.rpcTimeout, "rpcTimeout", 30*time.Second, "limit on each agent's attestation, and on each sync (spire-agent's own limit)")
	flag.DurationVar(&cfg.entriesPatience, "entriesPatience", 30*time.Second, "how long an agent re-syncs while it has fewer entries than expected")
	flag.Parse()

	switch {
	case flag.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments %q", flag.Args())
	case cfg.serverAddr == "" || cfg.adminSocket == "" || tdName == "" || cfg.bundlePath == "":
		return nil, errors.New("-serverAddr, -adminSocket, -trustDomain and -bundle are required")
	case cfg.agents < 1 || cfg.entriesPerAgent < 0 || cfg.concurrency < 1 || cfg.batchSize < 1:
		return nil, errors.New("-agents, -concurrency and -batchSize must be positive, -entriesPerAgent not negative")
	case cfg.tokenTTL < time.Second:
		return nil, errors.New("-tokenTTL must be at least 1s")
	}
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return nil, fmt.Errorf("-trustDomain: %w", err)
	}
	cfg.td = td
	return &cfg, nil
}

func run(cfg *config) error {
	var err error
	cfg.bundle, err = x509bundle.Load(cfg.td, cfg.bundlePath)
	if err != nil {
		return fmt.Errorf("-bundle: %w", err)
	}
	socket, err := filepath.Abs(cfg.adminSocket)
	if err != nil {
		return err
	}
	admin, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer admin.Close()

	ctx := context.Background()
	setupStart := time.Now()
	tokens, err := createJoinTokens(ctx, admin, cfg)
	if err != nil {
		return err
	}
	tokensTook := time.Since(setupStart)
	if err := createEntries(ctx, admin, cfg, tokens); err != nil {
		return err
	}
	setup := time.Since(setupStart)
	fmt.Fprintf(os.Stderr, "spire-agent-sim: %d join tokens in %.1f s, %d entries in %.1f s\n",
		len(tokens), tokensTook.Seconds(), len(tokens)*cfg.entriesPerAgent, (setup - tokensTook).Seconds())

	out := synced{Event: "synced", SetupSeconds: setup.Seconds()}
	agents := make([]*agent, len(tokens))
	var (
		next     atomic.Int64
		mu       sync.Mutex
		reported int
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range min(cfg.concurrency, len(tokens)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tokens) {
					return
				}
				a, res := simulate(ctx, cfg, i, tokens[i])
				agents[i] = a
				mu.Lock()
				out.Entries += res.entries
				out.SVIDs += res.svids
				out.Errors += res.errors
				out.Resyncs += res.resyncs
				if res.err == nil && res.errors == 0 {
					out.Agents++
				}
				// The first few failures say what went wrong; the count says
				// how often.
				if res.err != nil && reported < 10 {
					reported++
					fmt.Fprintf(os.Stderr, "spire-agent-sim: agent %d: %v\n", i, res.err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out.Seconds = time.Since(start).Seconds()

	line, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if _, err := fmt.Printf("%s\n", line); err != nil {
		return err
	}

	// Hold every connection until told to go.
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, a := range agents {
		if a != nil {
			a.close()
		}
	}
	return nil
}
