"""py-spiffe against a running Signet agent (SPIFFE_ENDPOINT_SOCKET).

Fetches an X.509-SVID, a JWT-SVID and the JWT bundles, validates the token
through the agent and locally, and prints what it saw as one JSON object.
Any failure raises, so the process exits non-zero with the reason.
"""
import json
import sys
import time

from spiffe import JwtSvid, WorkloadApiClient


def main() -> None:
    audience = sys.argv[1]
    client = WorkloadApiClient(default_timeout=10)
    deadline = time.time() + 20
    while True:
        try:
            x509 = client.fetch_x509_svid()
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    x509_ctx = client.fetch_x509_context()
    bundle = x509_ctx.x509_bundle_set.get_bundle_for_trust_domain(x509.spiffe_id.trust_domain)
    jwt = client.fetch_jwt_svid(audience={audience})
    validated = client.validate_jwt_svid(jwt.token, audience)
    jwt_bundles = client.fetch_jwt_bundles()
    local = JwtSvid.parse_and_validate(jwt.token, jwt_bundles.get_bundle_for_trust_domain(jwt.spiffe_id.trust_domain), {audience})
    print(json.dumps({
        "x509_spiffe_id": str(x509.spiffe_id),
        "x509_chain_len": len(x509.cert_chain),
        "bundle_authorities": len(bundle.x509_authorities) if bundle else 0,
        "jwt_spiffe_id": str(jwt.spiffe_id),
        "jwt_audience": sorted(jwt.audience),
        "validated_spiffe_id": str(validated.spiffe_id),
        "local_spiffe_id": str(local.spiffe_id),
    }))
    client.close()


if __name__ == "__main__":
    main()
