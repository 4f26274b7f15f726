"""The pages an alert email links to: the alerted payment (`?payment=TRANS_NUM`) and an analyst's
verdict (`?verdict=TOKEN`, docs/verdict-links.md): the token verified, the payment shown, the
verdict recorded through record_alert_verdict only when the analyst confirms."""

import datetime as dt
import hashlib

import pandas as pd
import streamlit as st

from database import execute, query
from settings import verdict_key
from verdict_tokens import Claim, TokenError, verify_token

NOTE_MAX_CHARS = 500
VERDICT_LABELS = {"fraud": "Confirmed fraud", "not_fraud": "Not fraud"}


def payment_page(trans_num: str) -> None:
    """What an alert's "Open the payment in the dashboard" link opens: the alerted payment, why
    the model flagged it, the verdict in force, a link to its day's report."""
    st.title(":material/receipt_long: Alerted payment")
    found = query("SELECT * FROM v_verdict_payments WHERE trans_num = :trans_num", trans_num=trans_num)
    if found.empty:
        st.warning("No alert was sent for a payment with this transaction id.", icon=":material/search_off:")
        return
    payment = found.iloc[0]
    show_payment(payment)
    if not isinstance(payment.current_verdict, str):
        st.caption("No verdict yet: give it with the links of the alert email.")
    day = pd.Timestamp(payment.local_time).date()
    st.markdown(f"[The report of {day:%A %d %B %Y}](?day={day.isoformat()})")


def verdict_page(token: str) -> None:
    """What an alert's verdict link opens: the payment and the proposed verdict, recorded only
    on the confirming click (a prefetch of the link records nothing)."""
    st.title(":material/gavel: Analyst verdict")
    try:
        claim = verify_token(verdict_key(), token, dt.datetime.now(dt.UTC))
    except TokenError as e:
        detail = f"{e.expires_at:%Y-%m-%d %H:%M} UTC" if e.expires_at else ""
        return show_refusal(e.code, detail=detail)
    found = query("SELECT * FROM v_verdict_payments WHERE trans_num = :trans_num", trans_num=claim.trans_num)
    if found.empty:
        return show_refusal("not_alerted", claim)
    used = token_use(token)
    if not used.empty:
        return show_refusal("already_used", claim, f"at {stamp(used.recorded_at.iloc[0])} UTC")
    label = VERDICT_LABELS[claim.verdict]
    st.subheader(f"Proposed verdict: {label}")
    show_payment(found.iloc[0], claim)
    note = st.text_area("Note (optional)", max_chars=NOTE_MAX_CHARS, key="verdict_note")
    if st.button(f"Confirm: {label}", type="primary", key="confirm_verdict"):
        status = record_verdict(token, note.strip())
        if status != "recorded":
            return show_refusal(status, claim)
        st.cache_data.clear()  # the report's verdict figures change
        st.success(
            f"Recorded: {label} for payment {claim.trans_num}. Thank you.", icon=":material/check_circle:"
        )


def show_payment(payment, claim: Claim | None = None) -> None:
    """A payment as stored (card masked), the model's reasons, the verdict in force (and, for a
    verdict link, until when the link is valid)."""
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Time (local)": stamp(payment.local_time),
                    "Amount": float(payment.amt),
                    "Merchant": payment.merchant,
                    "Category": payment.category,
                    "Card": payment.card,
                    "Score": float(payment.fraud_probability),
                    "Transaction": payment.trans_num,
                }
            ]
        ),
        hide_index=True,
        column_config={
            "Amount": st.column_config.NumberColumn(format="dollar"),
            "Score": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    reasons = payment.reasons if isinstance(payment.reasons, list) else []
    texts = [str(r["text"]) for r in reasons if isinstance(r, dict) and r.get("text")]
    if texts:
        st.markdown("**Why the model flagged it**")
        for text in texts:
            st.text(f"• {text}")
    if isinstance(payment.current_verdict, str):
        st.caption(
            f"Verdict in force: {VERDICT_LABELS[payment.current_verdict]}, given "
            f"{stamp(payment.current_verdict_at)} UTC; a new one supersedes it."
        )
    if claim is not None:
        st.caption(f"The link is valid until {claim.expires_at:%Y-%m-%d %H:%M} UTC.")


def stamp(ts) -> str:
    """A time for the page: a naive one as it is (a local time), an aware one in UTC."""
    ts = pd.Timestamp(ts)
    return (ts.tz_convert(dt.UTC) if ts.tzinfo else ts).strftime("%Y-%m-%d %H:%M:%S")


def token_use(token: str) -> pd.DataFrame:
    """The verdict this token recorded, if any (never cached: it changes on the click)."""
    digest = hashlib.sha256(token.encode()).digest()
    return execute(
        "SELECT recorded_at FROM v_alert_verdict_history WHERE token_sha256 = :digest", digest=digest
    )


def record_verdict(token: str, note: str) -> str:
    """Records the token's verdict (record_alert_verdict); its status."""
    status = execute(
        "SELECT record_alert_verdict(:token, :note) AS status", write=True, token=token, note=note or None
    )
    return status.status.iloc[0]


def refusal(code: str, claim: Claim | None = None, detail: str = "") -> tuple[str, str]:
    """(title, explanation) of a verdict the page refuses to record."""
    payment = f"payment {claim.trans_num}" if claim else "this payment"
    pages = {
        "malformed": (
            "This is not a valid verdict link",
            "The link is damaged or incomplete. Open it again from the alert email, whole.",
        ),
        "bad_signature": (
            "This verdict link has been tampered with",
            "Its signature does not match what it says: it was changed after it was "
            "sent, or signed with another key.",
        ),
        "expired": ("This verdict link has expired", f"It was valid until {detail}."),
        "not_alerted": (
            "Unknown payment",
            f"No alert was sent for {payment}: there is nothing to give a verdict on.",
        ),
        "already_used": (
            "This verdict link has already been used",
            f"It recorded a verdict on {payment} {detail}; a link records once.",
        ),
        "note_too_long": ("The note is too long", f"Notes hold at most {NOTE_MAX_CHARS} characters."),
        "unknown_token": (
            "This link was not issued by fraudctl",
            "No alert email carried it (or its alert was never sent).",
        ),
    }
    title, text = pages.get(code, ("The verdict was not recorded", f"The database answered {code!r}."))
    return title, f"{text} Nothing was recorded."


def show_refusal(code: str, claim: Claim | None = None, detail: str = "") -> None:
    title, text = refusal(code, claim, detail)
    st.error(f"**{title}.** {text}", icon=":material/block:")
