"""DSSE envelopes (github.com/secure-systems-lab/dsse, v1.0) over in-toto Statements, signed
with ECDSA P-256 / SHA-256, the keyid being the signing key's id (signing/keys.py)."""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class EnvelopeInvalid(ValueError):
    pass


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_statement(statement: dict, key) -> bytes:
    """The envelope as JSON bytes (the file's content)."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = key.private_key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {"payloadType": IN_TOTO_PAYLOAD_TYPE,
                "payload": base64.b64encode(payload).decode(),
                "signatures": [{"keyid": key.key_id,
                                "sig": base64.b64encode(signature).decode()}]}
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


def open_envelope(data: bytes, public_keys) -> tuple[dict, str]:
    """(the statement, the id of the key whose signature verified). Raises EnvelopeInvalid
    with a sentence when no signature verifies under any of `public_keys`."""
    try:
        envelope = json.loads(data)
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise EnvelopeInvalid("the attestation is not a DSSE envelope (JSON with payloadType, "
                              "payload and signatures)") from None
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise EnvelopeInvalid(f"the envelope's payloadType is {payload_type!r}, not "
                              f"{IN_TOTO_PAYLOAD_TYPE}")
    signed = pae(payload_type, payload)
    for entry in signatures if isinstance(signatures, list) else []:
        try:
            sig = base64.b64decode(entry["sig"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            continue
        for public in public_keys:
            try:
                public.key.verify(sig, signed, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            try:
                statement = json.loads(payload)
            except ValueError:
                raise EnvelopeInvalid("the signed payload is not JSON") from None
            if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
                raise EnvelopeInvalid(f"the signed payload is not an in-toto Statement "
                                      f"({STATEMENT_TYPE})")
            return statement, public.key_id
    raise EnvelopeInvalid("no signature on the attestation verifies with the lab's public "
                          "key(s): it was altered, or signed by another key")
