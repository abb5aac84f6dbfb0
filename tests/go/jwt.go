// jwt and validate: JWT-SVIDs from workloadapi.NewJWTSource, validated
// locally with jwtsvid.ParseAndValidate and remotely with the Workload API's
// ValidateJWTSVID.
package main

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

type jwtReport struct {
	SpiffeID          string   `json:"spiffe_id"`
	Audience          []string `json:"audience"`
	Expiry            int64    `json:"expiry"`
	Token             string   `json:"token"`
	JWTAuthorities    int      `json:"jwt_authorities"`
	ValidatedID       string   `json:"validated_id"`
	ValidatedAudience []string `json:"validated_audience"`
	// What ParseAndValidate said of the same token for an audience it was
	// not minted for ("" if it accepted it).
	WrongAudienceError string `json:"wrong_audience_error"`
}

func runJWT(args []string) (err error) {
	var c common
	var audiences stringList
	fs := newFlags("jwt", &c)
	fs.Var(&audiences, "audience", "an audience of the JWT-SVID (repeatable; at least one)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if len(audiences) == 0 {
		return fmt.Errorf("%w: --audience is required", errUsage)
	}
	subject, err := c.wantedID()
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(&c)
	defer cancel()

	source, err := workloadapi.NewJWTSource(ctx, c.sourceOptions())
	if err != nil {
		return fmt.Errorf("NewJWTSource: %w", err)
	}
	defer func() { err = errors.Join(err, source.Close()) }()
	svid, err := source.FetchJWTSVID(ctx, jwtsvid.Params{
		Audience:       audiences[0],
		ExtraAudiences: audiences[1:],
		Subject:        subject,
	})
	if err != nil {
		return fmt.Errorf("FetchJWTSVID: %w", err)
	}
	token := svid.Marshal()
	bundle, err := source.GetJWTBundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return err
	}
	validated, err := jwtsvid.ParseAndValidate(token, source, audiences)
	if err != nil {
		return fmt.Errorf("jwtsvid.ParseAndValidate of %s's token: %w", svid.ID, err)
	}
	wrongAudience := ""
	if _, err := jwtsvid.ParseAndValidate(token, source, []string{"not-" + audiences[0]}); err != nil {
		wrongAudience = err.Error()
	}
	return emit(jwtReport{
		SpiffeID:           svid.ID.String(),
		Audience:           svid.Audience,
		Expiry:             svid.Expiry.Unix(),
		Token:              token,
		JWTAuthorities:     len(bundle.JWTAuthorities()),
		ValidatedID:        validated.ID.String(),
		ValidatedAudience:  validated.Audience,
		WrongAudienceError: wrongAudience,
	})
}

type validateReport struct {
	SpiffeID string   `json:"spiffe_id"`
	Audience []string `json:"audience"`
	Expiry   int64    `json:"expiry"`
	Subject  any      `json:"sub"`
}

func runValidate(args []string) error {
	var c common
	var audience, token string
	fs := newFlags("validate", &c)
	fs.StringVar(&audience, "audience", "", "the audience the token must hold")
	fs.StringVar(&token, "token", "", "the JWT-SVID (JWS compact)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if audience == "" || token == "" {
		return fmt.Errorf("%w: --audience and --token are required", errUsage)
	}
	ctx, cancel := withTimeout(&c)
	defer cancel()
	svid, err := workloadapi.ValidateJWTSVID(ctx, token, audience, c.clientOptions()...)
	if err != nil {
		return fmt.Errorf("ValidateJWTSVID: %w", err)
	}
	return emit(validateReport{
		SpiffeID: svid.ID.String(),
		Audience: svid.Audience,
		Expiry:   svid.Expiry.Unix(),
		Subject:  svid.Claims["sub"],
	})
}
