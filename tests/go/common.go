// The flags every subcommand shares, the X509Source they build from them,
// and the JSON lines they print.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

var errUsage = errors.New("usage")

type common struct {
	socket  string
	timeout time.Duration
	id      string
}

func newFlags(name string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.socket, "socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"),
		"Workload API address, unix:///path (default $SPIFFE_ENDPOINT_SOCKET)")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Second, "give up after this long")
	fs.StringVar(&c.id, "id", "", "the SPIFFE ID to use among the workload's SVIDs (default: the first)")
	return fs
}

func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if c.socket == "" {
		return fmt.Errorf("%w: --socket (or SPIFFE_ENDPOINT_SOCKET) is required", errUsage)
	}
	return nil
}

// wantedID is the --id flag parsed, or the zero ID when it is unset.
func (c *common) wantedID() (spiffeid.ID, error) {
	if c.id == "" {
		return spiffeid.ID{}, nil
	}
	id, err := spiffeid.FromString(c.id)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: --id: %v", errUsage, err)
	}
	return id, nil
}

func (c *common) clientOptions() []workloadapi.ClientOption {
	return []workloadapi.ClientOption{workloadapi.WithAddr(c.socket), workloadapi.WithLogger(stderrLogger{})}
}

func (c *common) sourceOptions() workloadapi.SourceOption {
	return workloadapi.WithClientOptions(c.clientOptions()...)
}

// stderrLogger shows why the Workload API client keeps retrying (it does so
// silently by default): a test that times out then says what went wrong.
type stderrLogger struct{}

func (stderrLogger) Debugf(string, ...any) {}
func (stderrLogger) Infof(string, ...any)  {}
func (stderrLogger) Warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-spiffe: "+format+"\n", args...)
}
func (stderrLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-spiffe: "+format+"\n", args...)
}

// x509Source opens an X509Source whose default SVID is the one --id names,
// the way a workload holding several identities picks one.
func (c *common) x509Source(ctx context.Context) (*workloadapi.X509Source, error) {
	want, err := c.wantedID()
	if err != nil {
		return nil, err
	}
	opts := []workloadapi.X509SourceOption{c.sourceOptions()}
	if !want.IsZero() {
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return nil
		}))
	}
	source, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("NewX509Source: %w", err)
	}
	// A picker that found nothing leaves the source without an SVID.
	if _, err := source.GetX509SVID(); err != nil {
		return nil, errors.Join(fmt.Errorf("no X509-SVID %s among the workload's: %w", c.id, err), source.Close())
	}
	return source, nil
}

// x509Report is what a user checks of an X509-SVID held by a source.
type x509Report struct {
	SpiffeID          string `json:"spiffe_id"`
	Hint              string `json:"hint"`
	Serial            string `json:"serial"`
	ChainLen          int    `json:"chain_len"`
	NotAfter          int64  `json:"not_after"`
	BundleAuthorities int    `json:"bundle_authorities"`
	// The ID x509svid.Verify returned against the source's bundle.
	VerifiedID string `json:"verified_id"`
	// Hex SHA-256 of the root the chain verified to: Signet's authority id.
	IssuerAuthorityID string `json:"issuer_authority_id"`
}

func describeX509(source *workloadapi.X509Source) (x509Report, error) {
	svid, err := source.GetX509SVID()
	if err != nil {
		return x509Report{}, err
	}
	bundle, err := source.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return x509Report{}, err
	}
	verified, chains, err := x509svid.Verify(svid.Certificates, source)
	if err != nil {
		return x509Report{}, fmt.Errorf("x509svid.Verify of %s: %w", svid.ID, err)
	}
	if len(chains) == 0 || len(chains[0]) == 0 {
		return x509Report{}, fmt.Errorf("x509svid.Verify of %s returned no chain", svid.ID)
	}
	chain := chains[0]
	root := sha256.Sum256(chain[len(chain)-1].Raw)
	leaf := svid.Certificates[0]
	return x509Report{
		SpiffeID:          svid.ID.String(),
		Hint:              svid.Hint,
		Serial:            hex.EncodeToString(leaf.SerialNumber.Bytes()),
		ChainLen:          len(svid.Certificates),
		NotAfter:          leaf.NotAfter.Unix(),
		BundleAuthorities: len(bundle.X509Authorities()),
		VerifiedID:        verified.String(),
		IssuerAuthorityID: hex.EncodeToString(root[:]),
	}, nil
}

// emit prints one JSON line; stdout is unbuffered, so a reader sees it now.
func emit(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(os.Stdout, "%s\n", line)
	return err
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
