"""The digest cache's text for a manifest's facts: written by hand for speed, it must
stay the text ``dataclasses.asdict`` gave (rows already cached are compared and
decoded by it) and decode back to equal facts."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given
from hypothesis import strategies as st

from regprune.models import Blob, ManifestFacts

digests = st.text("0123456789abcdef", min_size=1, max_size=8).map(lambda h: f"sha256:{h}")
text = st.text(max_size=12)
facts = st.builds(
    ManifestFacts,
    digest=digests,
    media_type=text,
    size=st.integers(min_value=0, max_value=2**40),
    config_digest=st.none() | digests,
    created=st.none() | text,
    labels=st.dictionaries(text, text, max_size=3),
    blobs=st.lists(st.builds(Blob, digest=digests, size=st.integers(0, 2**40)), max_size=4).map(
        tuple
    ),
    children=st.lists(digests, max_size=3).map(tuple),
    subject=st.none() | digests,
    artifact_type=st.none() | text,
)


@given(facts)
def test_facts_text_is_what_asdict_gave(value: ManifestFacts) -> None:
    assert value.to_json() == json.dumps(dataclasses.asdict(value), sort_keys=True)


@given(facts)
def test_facts_text_decodes_to_equal_facts(value: ManifestFacts) -> None:
    assert ManifestFacts.from_json(value.to_json()) == value
