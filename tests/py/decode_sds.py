"""Decodes Envoy SDS DiscoveryResponses (serialized protobuf, one file each)
with the envoy-data-plane package, an implementation independent of the
agent's, and prints what Envoy would read from them as JSON: each secret's
name and kind, its PEM certificate chain and whether a key came with it, a
validation context's trusted CAs or SPIFFE validator trust domains."""

import json
import sys

from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    Secret,
    SpiffeCertValidatorConfig,
)
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
VALIDATOR = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"


def inline(source):
    return source.inline_bytes.decode()


def secret(s):
    out = {"name": s.name}
    if s.is_set("tls_certificate"):
        t = s.tls_certificate
        out["kind"] = "tls_certificate"
        out["chain_pem"] = inline(t.certificate_chain)
        out["key_is_pkcs8"] = inline(t.private_key).startswith("-----BEGIN PRIVATE KEY-----")
    elif s.is_set("validation_context"):
        v = s.validation_context
        out["kind"] = "validation_context"
        if v.is_set("custom_validator_config"):
            c = v.custom_validator_config
            assert c.typed_config.type_url == VALIDATOR, c.typed_config.type_url
            config = SpiffeCertValidatorConfig.parse(c.typed_config.value)
            out["validator"] = c.name
            out["trust_domains"] = {td.name: inline(td.trust_bundle) for td in config.trust_domains}
        else:
            out["trusted_ca_pem"] = inline(v.trusted_ca)
    else:
        out["kind"] = "other"
    return out


def main():
    responses = []
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            r = DiscoveryResponse.parse(f.read())
        for any_ in r.resources:
            assert any_.type_url == SECRET, any_.type_url
        responses.append(
            {
                "version_info": r.version_info,
                "nonce": r.nonce,
                "type_url": r.type_url,
                "secrets": [secret(Secret.parse(a.value)) for a in r.resources],
            }
        )
    json.dump(responses, sys.stdout)


if __name__ == "__main__":
    main()
