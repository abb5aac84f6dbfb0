// x509: what a Go service gets from workloadapi.NewX509Source, verified the
// way its peers would verify it.
package main

import "errors"

func runX509(args []string) (err error) {
	var c common
	fs := newFlags("x509", &c)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := withTimeout(&c)
	defer cancel()
	source, err := c.x509Source(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, source.Close()) }()
	report, err := describeX509(source)
	if err != nil {
		return err
	}
	return emit(report)
}
