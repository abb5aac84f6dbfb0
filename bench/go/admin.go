package main

import (
	"context"
	"fmt"
	"sync"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// The selector of every entry: no workload has this uid, so the entries
// exist only to be synced and signed for.
var simSelector = &types.Selector{Type: "unix", Value: "uid:4294967292"}

// createJoinTokens makes a join token per agent, -concurrency calls at once.
func createJoinTokens(ctx context.Context, admin *grpc.ClientConn, cfg *config) ([]string, error) {
	client := agentv1.NewAgentClient(admin)
	tokens := make([]string, cfg.agents)
	errs := make(chan error, cfg.agents)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.concurrency, cfg.agents) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				token, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{
					Ttl: int32(cfg.tokenTTL.Seconds()),
				})
				switch {
				case err != nil:
					errs <- fmt.Errorf("CreateJoinToken: %w", err)
				case token.GetValue() == "":
					errs <- fmt.Errorf("CreateJoinToken returned no token")
				default:
					tokens[i] = token.GetValue()
				}
			}
		}()
	}
	for i := range tokens {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err, failed := <-errs; failed {
		return nil, err
	}
	return tokens, nil
}

// agentID is what join_token attestation names the agent holding token.
func agentID(cfg *config, token string) string {
	return fmt.Sprintf("spiffe://%s/spire/agent/join_token/%s", cfg.td.Name(), token)
}

// createEntries makes -entriesPerAgent entries for each agent,
// spiffe://<td>/sim/<agent>/<i>, in calls of -batchSize entries.
func createEntries(ctx context.Context, admin *grpc.ClientConn, cfg *config, tokens []string) error {
	client := entryv1.NewEntryClient(admin)
	batch := make([]*types.Entry, 0, cfg.batchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: batch})
		if err != nil {
			return fmt.Errorf("BatchCreateEntry: %w", err)
		}
		if len(resp.Results) != len(batch) {
			return fmt.Errorf("BatchCreateEntry: %d results for %d entries", len(resp.Results), len(batch))
		}
		for i, r := range resp.Results {
			if code := codes.Code(r.GetStatus().GetCode()); code != codes.OK {
				return fmt.Errorf("BatchCreateEntry refused %s: %s: %s",
					batch[i].SpiffeId.Path, code, r.GetStatus().GetMessage())
			}
		}
		batch = batch[:0]
		return nil
	}
	td := cfg.td.Name()
	for a, token := range tokens {
		parent := &types.SPIFFEID{TrustDomain: td, Path: "/spire/agent/join_token/" + token}
		for i := range cfg.entriesPerAgent {
			batch = append(batch, &types.Entry{
				ParentId:  parent,
				SpiffeId:  &types.SPIFFEID{TrustDomain: td, Path: fmt.Sprintf("/sim/%d/%d", a, i)},
				Selectors: []*types.Selector{simSelector},
			})
			if len(batch) == cfg.batchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}
