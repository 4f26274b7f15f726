"""The dashboard's verdict-token check against the shared vectors (tests/fixtures/
verdict_vectors.json), which src/verdict.rs's unit tests check too: the two cannot drift."""

import datetime as dt
import json

import pytest
from conftest import ROOT

from verdict_tokens import Claim, TokenError, verify_token

VECTORS = json.loads((ROOT / "tests" / "fixtures" / "verdict_vectors.json").read_text())
KEY = VECTORS["key"].encode()
NOW = dt.datetime.fromtimestamp(VECTORS["now"], dt.UTC)


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: f"{c['verdict']}-{c['trans_num'][:12]}")
def test_valid_vectors_verify_to_their_claims(case):
    claim = verify_token(KEY, case["token"], NOW)
    assert claim == Claim(
        case["trans_num"], case["verdict"], dt.datetime.fromtimestamp(case["expires_at"], dt.UTC)
    )


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_vectors_are_refused_as_the_vectors_say(case):
    with pytest.raises(TokenError) as refused:
        verify_token(KEY, case["token"], NOW)
    assert refused.value.code == case["error"]


def test_the_vectors_cover_every_refusal():
    assert {c["error"] for c in VECTORS["invalid"]} == {"malformed", "bad_signature", "expired"}


def test_another_key_is_a_bad_signature():
    with pytest.raises(TokenError) as refused:
        verify_token(b"k" * 32, VECTORS["valid"][0]["token"], NOW)
    assert refused.value.code == "bad_signature"
