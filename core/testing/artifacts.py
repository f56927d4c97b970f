"""The payloads of cosign-style artifacts: signatures, attestations and SBOMs.

Pure functions (no HTTP): :meth:`~regprune.testing.ImagePusher.push_signature` puts
what they build into a manifest tagged ``sha256-<hex>.<kind>``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Final, Literal

__all__ = ["COSIGN_LAYER_TYPES", "cosign_payload"]

COSIGN_LAYER_TYPES: Final = {
    "sig": "application/vnd.dev.cosign.simplesigning.v1+json",
    "att": "application/vnd.dsse.envelope.v1+json",
    "sbom": "text/spdx+json",
}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def cosign_payload(
    kind: Literal["sig", "att", "sbom"], reference: str, subject_digest: str
) -> tuple[bytes, dict[str, str]]:
    """The layer of a cosign artifact for ``subject_digest`` and the layer's annotations.

    ``reference`` is ``host:port/repository``, as cosign writes it in a signature.
    The payloads have the shape cosign gives them, with random signature bytes.
    """
    algorithm, _, hex_part = subject_digest.partition(":")
    annotations: dict[str, str] = {}
    if kind == "sig":
        payload = _dumps(
            {
                "critical": {
                    "identity": {"docker-reference": reference},
                    "image": {"docker-manifest-digest": subject_digest},
                    "type": "cosign container image signature",
                },
                "optional": None,
            }
        )
        annotations["dev.cosignproject.cosign/signature"] = base64.b64encode(
            os.urandom(64)
        ).decode()
    elif kind == "att":
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": reference, "digest": {algorithm: hex_part}}],
            "predicate": {},
        }
        payload = _dumps(
            {
                "payloadType": "application/vnd.in-toto+json",
                "payload": base64.b64encode(_dumps(statement)).decode(),
                "signatures": [{"sig": base64.b64encode(os.urandom(64)).decode()}],
            }
        )
    else:
        payload = _dumps(
            {
                "spdxVersion": "SPDX-2.3",
                "name": f"{reference}@{subject_digest}",
                "documentNamespace": f"https://regprune.invalid/{os.urandom(8).hex()}",
                "packages": [],
            }
        )
    return payload, annotations
