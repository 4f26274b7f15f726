"""The dashboard's verdict-token check against the shared vectors (tests/fixtures/
verdict_vectors.json), which src/verdict.rs's unit tests check too: the two cannot drift."""

import datetime as dt
import importlib.util
import json

import pytest
from conftest import APP, ROOT

VECTORS = json.loads((ROOT / "tests" / "fixtures" / "verdict_vectors.json").read_text())
KEY = VECTORS["key"].encode()
NOW = dt.datetime.fromtimestamp(VECTORS["now"], dt.UTC)


@pytest.fixture(scope="module")
def app():
    """dashboard/app.py as a module (its page runs only under Streamlit)."""
    spec = importlib.util.spec_from_file_location("fraud_dashboard_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: f"{c['verdict']}-{c['trans_num'][:12]}")
def test_valid_vectors_verify_to_their_claims(app, case):
    claim = app.verify_token(KEY, case["token"], NOW)
    assert claim == app.Claim(
        case["trans_num"], case["verdict"], dt.datetime.fromtimestamp(case["expires_at"], dt.UTC)
    )


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_vectors_are_refused_as_the_vectors_say(app, case):
    with pytest.raises(app.TokenError) as refused:
        app.verify_token(KEY, case["token"], NOW)
    assert refused.value.code == case["error"]


def test_the_vectors_cover_every_refusal():
    assert {c["error"] for c in VECTORS["invalid"]} == {"malformed", "bad_signature", "expired"}


def test_another_key_is_a_bad_signature(app):
    with pytest.raises(app.TokenError) as refused:
        app.verify_token(b"k" * 32, VECTORS["valid"][0]["token"], NOW)
    assert refused.value.code == "bad_signature"
