"""Validates a JWT-SVID as a cloud does: OpenID Connect discovery from the
issuer URL, the key from the JWKS it names (PyJWT's PyJWKClient), then
signature, audience and issuer (jwt.decode). Prints what it found as JSON;
a refusal is {"ok": false, "error": ...}, not an exit status."""

import json
import sys
import urllib.request

import jwt


def main():
    issuer, token, audience = sys.argv[1:4]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=10) as r:
        discovery = json.load(r)
    out = {"discovery": discovery, "alg": jwt.get_unverified_header(token)["alg"]}
    try:
        client = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False, cache_jwk_set=False)
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=discovery["id_token_signing_alg_values_supported"],
            audience=audience,
            issuer=discovery["issuer"],
        )
        out.update(ok=True, sub=claims["sub"], iss=claims["iss"], kid=key.key_id)
    except jwt.PyJWTError as e:
        out.update(ok=False, error=f"{type(e).__name__}: {e}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
