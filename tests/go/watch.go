// watch: an X509Source held open while its SVID rotates, each update seen
// through the source's Updated() channel (go-spiffe v2's notification that
// the source swapped in a new X.509 context).
package main

import (
	"errors"
	"fmt"
)

type watchEvent struct {
	Event string `json:"event"`
	N     int    `json:"n"`
	x509Report
}

type watchDone struct {
	Event   string `json:"event"`
	Updates int    `json:"updates"`
	Rotated bool   `json:"rotated"`
}

func runWatch(args []string) (err error) {
	var c common
	var updates int
	var untilRotated bool
	fs := newFlags("watch", &c)
	fs.IntVar(&updates, "updates", 0, "stop after this many updates")
	fs.BoolVar(&untilRotated, "until-rotated", false, "stop at the first update whose SVID serial differs from the first one")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if updates <= 0 && !untilRotated {
		return fmt.Errorf("%w: --updates N or --until-rotated is required", errUsage)
	}
	ctx, cancel := withTimeout(&c)
	defer cancel()
	source, err := c.x509Source(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, source.Close()) }()

	first, err := describeX509(source)
	if err != nil {
		return err
	}
	// The test acts (rotates the CA, ...) once it has read this line.
	if err := emit(watchEvent{Event: "initial", x509Report: first}); err != nil {
		return err
	}
	seen := 0
	for {
		select {
		case <-source.Updated():
		case <-ctx.Done():
			return fmt.Errorf("%d update(s) seen before giving up: %w", seen, ctx.Err())
		}
		seen++
		report, err := describeX509(source)
		if err != nil {
			return fmt.Errorf("update %d: %w", seen, err)
		}
		if err := emit(watchEvent{Event: "update", N: seen, x509Report: report}); err != nil {
			return err
		}
		rotated := report.Serial != first.Serial
		if (untilRotated && rotated) || (updates > 0 && seen >= updates) {
			return emit(watchDone{Event: "done", Updates: seen, Rotated: rotated})
		}
	}
}
