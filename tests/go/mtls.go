// mtls-serve and mtls-dial: two go-spiffe workloads talking over mTLS with
// spiffetls, each authorizing exactly one peer ID with tlsconfig.AuthorizeID.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// How long one connection may take, handshake and exchange together.
const connDeadline = 5 * time.Second

type listening struct {
	Event    string `json:"event"`
	Addr     string `json:"addr"`
	SpiffeID string `json:"spiffe_id"`
}

type connEvent struct {
	Event   string `json:"event"`
	PeerID  string `json:"peer_id,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

type serveDone struct {
	Event    string `json:"event"`
	Accepted int    `json:"accepted"`
	Refused  int    `json:"refused"`
}

func authorizeFlag(raw string) (spiffeid.ID, error) {
	if raw == "" {
		return spiffeid.ID{}, fmt.Errorf("%w: --authorize is required", errUsage)
	}
	id, err := spiffeid.FromString(raw)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: --authorize: %v", errUsage, err)
	}
	return id, nil
}

func runServe(args []string) (err error) {
	var c common
	var authorize, listen string
	var connections int
	fs := newFlags("mtls-serve", &c)
	fs.StringVar(&authorize, "authorize", "", "the only client SPIFFE ID allowed")
	fs.StringVar(&listen, "listen", "127.0.0.1:0", "TCP address to listen on")
	fs.IntVar(&connections, "connections", 1, "exit after this many connections, accepted or refused")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	peer, err := authorizeFlag(authorize)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(&c)
	defer cancel()
	source, err := c.x509Source(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, source.Close()) }()
	own, err := source.GetX509SVID()
	if err != nil {
		return err
	}
	listener, err := spiffetls.ListenWithMode(ctx, "tcp", listen,
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeID(peer), source))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	defer func() { err = errors.Join(err, listener.Close()) }()
	// The timeout covers the accept loop too: close the listener then.
	stop := context.AfterFunc(ctx, func() { _ = listener.Close() })
	defer stop()
	if err := emit(listening{Event: "listening", Addr: listener.Addr().String(), SpiffeID: own.ID.String()}); err != nil {
		return err
	}

	var done serveDone
	for done.Accepted+done.Refused < connections {
		conn, err := listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%d of %d connection(s) came before giving up: %w",
					done.Accepted+done.Refused, connections, ctx.Err())
			}
			return fmt.Errorf("accept: %w", err)
		}
		event := serveOne(conn)
		if event.Event == "accepted" {
			done.Accepted++
		} else {
			done.Refused++
		}
		if err := emit(event); err != nil {
			return err
		}
	}
	done.Event = "done"
	return emit(done)
}

// serveOne answers one line with "pong" once the client's ID is authorized;
// a refused handshake is a result to report, not a failure of the server.
func serveOne(conn net.Conn) connEvent {
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(connDeadline)); err != nil {
		return connEvent{Event: "refused", Error: err.Error()}
	}
	peer, err := spiffetls.PeerIDFromConn(conn)
	if err != nil {
		return connEvent{Event: "refused", Error: err.Error()}
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return connEvent{Event: "refused", PeerID: peer.String(), Error: fmt.Sprintf("read: %v", err)}
	}
	if _, err := fmt.Fprintf(conn, "pong to %s\n", peer); err != nil {
		return connEvent{Event: "refused", PeerID: peer.String(), Error: fmt.Sprintf("write: %v", err)}
	}
	return connEvent{Event: "accepted", PeerID: peer.String(), Message: strings.TrimSpace(line)}
}

type dialReport struct {
	SpiffeID string `json:"spiffe_id"`
	PeerID   string `json:"peer_id"`
	Reply    string `json:"reply"`
}

func runDial(args []string) (err error) {
	var c common
	var authorize, addr, message string
	fs := newFlags("mtls-dial", &c)
	fs.StringVar(&authorize, "authorize", "", "the only server SPIFFE ID allowed")
	fs.StringVar(&addr, "addr", "", "host:port of the server")
	fs.StringVar(&message, "message", "ping", "the line to send")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	peer, err := authorizeFlag(authorize)
	if err != nil {
		return err
	}
	if addr == "" {
		return fmt.Errorf("%w: --addr is required", errUsage)
	}
	ctx, cancel := withTimeout(&c)
	defer cancel()
	source, err := c.x509Source(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, source.Close()) }()
	own, err := source.GetX509SVID()
	if err != nil {
		return err
	}
	dialer := &net.Dialer{Timeout: connDeadline}
	conn, err := spiffetls.DialWithMode(ctx, "tcp", addr,
		spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(peer), source),
		spiffetls.WithDialer(dialer))
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	if err := conn.SetDeadline(time.Now().Add(connDeadline)); err != nil {
		return err
	}
	server, err := spiffetls.PeerIDFromConn(conn)
	if err != nil {
		return err
	}
	// With TLS 1.3 the server judges the client's certificate after the
	// client's handshake is done: a refusal shows on the first read.
	if _, err := fmt.Fprintf(conn, "%s\n", message); err != nil {
		return fmt.Errorf("write to %s: %w", server, err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read from %s: %w", server, err)
	}
	return emit(dialReport{SpiffeID: own.ID.String(), PeerID: server.String(), Reply: strings.TrimSpace(reply)})
}
