package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// spire-agent's options for its server connections: round robin over the
// addresses the name resolves to, which also reconnects on its own when the
// server ends a connection (it does after 3 minutes, MaxConnectionAge).
const roundRobin = `{ "loadBalancingConfig": [ { "round_robin": {} } ] }`

// What spire-agent asks of each entry when it syncs.
var entryMask = &types.EntryMask{
	SpiffeId:       true,
	Selectors:      true,
	FederatesWith:  true,
	Admin:          true,
	Downstream:     true,
	RevisionNumber: true,
	StoreSvid:      true,
	Hint:           true,
	CreatedAt:      true,
}

// How long an agent waits before syncing again while the server's entry
// cache has not yet caught up with the entries created.
const resyncDelay = 250 * time.Millisecond

// agent is one simulated agent after its first sync: its mTLS connection to
// the server, held open.
type agent struct {
	conn *grpc.ClientConn
}

func (a *agent) close() { _ = a.conn.Close() }

// result is what one agent's attestation and first sync came to.
type result struct {
	entries, svids, errors, resyncs int
	// Why the agent failed (it then counts 1 error), or the first refusal.
	err error
}

// simulate attests agent i with token and runs its first sync. The agent is
// nil when it could not get as far as its mTLS connection.
func simulate(ctx context.Context, cfg *config, i int, token string) (*agent, result) {
	svid, err := attest(ctx, cfg, token)
	if err != nil {
		return nil, result{errors: 1, err: fmt.Errorf("attestation: %w", err)}
	}
	conn, err := grpc.NewClient(cfg.serverAddr,
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithDisableServiceConfig(),
		grpc.WithTransportCredentials(credentials.NewTLS(
			tlsconfig.MTLSClientConfig(svid, cfg.bundle, tlsconfig.AuthorizeID(serverID(cfg))))))
	if err != nil {
		return nil, result{errors: 1, err: err}
	}
	a := &agent{conn: conn}
	res := a.firstSync(ctx, cfg)
	if res.err != nil && res.errors == 0 {
		res.errors = 1
	}
	return a, res
}

func serverID(cfg *config) spiffeid.ID {
	return spiffeid.RequireFromSegments(cfg.td, "spire", "server")
}

// attest does join_token attestation as spire-agent does, on a connection
// of its own that authenticates the server only; returns the agent SVID
// with its key.
func attest(ctx context.Context, cfg *config, token string) (*x509svid.SVID, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
	defer cancel()
	conn, err := grpc.NewClient(cfg.serverAddr,
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithDisableServiceConfig(),
		grpc.WithTransportCredentials(credentials.NewTLS(
			tlsconfig.TLSClientConfig(cfg.bundle, tlsconfig.AuthorizeID(serverID(cfg))))))
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// The server takes only the public key from it.
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, key)
	if err != nil {
		return nil, err
	}
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&agentv1.AttestAgentRequest{
		Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
			Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
			Params: &agentv1.AgentX509SVIDParams{Csr: csr},
		}},
	})
	if err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	_ = stream.CloseSend()
	if resp.GetChallenge() != nil {
		return nil, errors.New("join_token attestation does not challenge, but the server did")
	}
	chain := resp.GetResult().GetSvid().GetCertChain()
	if len(chain) == 0 {
		return nil, errors.New("the server's answer has no SVID")
	}
	var der []byte
	for _, c := range chain {
		der = append(der, c...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	svid, err := x509svid.ParseRaw(der, keyDER)
	if err != nil {
		return nil, fmt.Errorf("agent SVID: %w", err)
	}
	if want := agentID(cfg, token); svid.ID.String() != want {
		return nil, fmt.Errorf("agent SVID is %s, expected %s", svid.ID, want)
	}
	return svid, nil
}

// firstSync does what spire-agent's first sync does: its authorized
// entries, the bundle, then an X509-SVID for each entry. Fewer entries than
// expected means the server's entry cache is behind (it reloads every
// cache_reload_interval): the agent syncs again, as its next sync would.
func (a *agent) firstSync(ctx context.Context, cfg *config) result {
	var (
		res      result
		entries  []*types.Entry
		err      error
		deadline = time.Now().Add(cfg.entriesPatience)
	)
	for {
		entries, err = a.syncEntries(ctx, cfg)
		if err != nil {
			return result{err: fmt.Errorf("SyncAuthorizedEntries: %w", err)}
		}
		if len(entries) >= cfg.entriesPerAgent || time.Now().After(deadline) {
			break
		}
		res.resyncs++
		time.Sleep(resyncDelay)
	}
	res.entries = len(entries)
	if len(entries) != cfg.entriesPerAgent {
		res.errors++
		res.err = fmt.Errorf("%d entries, expected %d", len(entries), cfg.entriesPerAgent)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
	defer cancel()
	if _, err := bundlev1.NewBundleClient(a.conn).GetBundle(ctx, &bundlev1.GetBundleRequest{}); err != nil {
		return result{err: fmt.Errorf("GetBundle: %w", err)}
	}
	if len(entries) == 0 {
		return res
	}

	params := make([]*svidv1.NewX509SVIDParams, len(entries))
	for i, e := range entries {
		csr, err := workloadCSR(e.GetSpiffeId())
		if err != nil {
			return result{err: err}
		}
		params[i] = &svidv1.NewX509SVIDParams{EntryId: e.GetId(), Csr: csr}
	}
	resp, err := svidv1.NewSVIDClient(a.conn).BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: params})
	if err != nil {
		return result{err: fmt.Errorf("BatchNewX509SVID: %w", err)}
	}
	if len(resp.Results) != len(params) {
		return result{err: fmt.Errorf("BatchNewX509SVID: %d results for %d CSRs", len(resp.Results), len(params))}
	}
	for i, r := range resp.Results {
		code := codes.Code(r.GetStatus().GetCode())
		got, want := r.GetSvid().GetId(), entries[i].GetSpiffeId()
		switch {
		case code != codes.OK:
			err = fmt.Errorf("BatchNewX509SVID refused %s: %s: %s", want.GetPath(), code, r.GetStatus().GetMessage())
		case len(r.GetSvid().GetCertChain()) == 0:
			err = fmt.Errorf("BatchNewX509SVID: no certificate for %s", want.GetPath())
		case got.GetTrustDomain() != want.GetTrustDomain() || got.GetPath() != want.GetPath():
			err = fmt.Errorf("BatchNewX509SVID: an SVID for %s%s in answer to %s", got.GetTrustDomain(), got.GetPath(), want.GetPath())
		default:
			res.svids++
			continue
		}
		res.errors++
		if res.err == nil {
			res.err = err
		}
	}
	return res
}

// syncEntries is spire-agent's SyncAuthorizedEntries exchange from an empty
// cache: the server sends every entry at once when they fit in a page, else
// pages of revisions, for which the agent then asks the entries in full.
func (a *agent) syncEntries(ctx context.Context, cfg *config) ([]*types.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
	defer cancel()
	stream, err := entryv1.NewEntryClient(a.conn).SyncAuthorizedEntries(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: entryMask}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if len(resp.EntryRevisions) == 0 {
		return resp.Entries, nil
	}

	pageSize := len(resp.EntryRevisions)
	var ids []string
	for {
		for _, r := range resp.EntryRevisions {
			ids = append(ids, r.GetId())
		}
		if !resp.More {
			break
		}
		if resp, err = stream.Recv(); err != nil {
			return nil, err
		}
	}
	var entries []*types.Entry
	for len(ids) > 0 {
		n := min(len(ids), pageSize)
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: ids[:n]}); err != nil {
			return nil, err
		}
		ids = ids[n:]
		for {
			resp, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			entries = append(entries, resp.Entries...)
			if !resp.More {
				break
			}
		}
	}
	return entries, nil
}

// workloadCSR is the CSR spire-agent makes for a workload's X509-SVID: a
// fresh P-256 key, the SPIFFE ID as URI SAN.
func workloadCSR(id *types.SPIFFEID) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		URIs:    []*url.URL{{Scheme: "spiffe", Host: id.GetTrustDomain(), Path: id.GetPath()}},
	}, key)
}
