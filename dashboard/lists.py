"""The rules' lists (list_entries, list_changes): shown to everyone who sees the report, changed
through the audited functions list_add, list_add_card_of and list_remove by an identified user
when the dashboard's role is a member of fraud_list_editor."""

import re

import pandas as pd
import psycopg
import sqlalchemy
import streamlit as st

from auth import identified_user
from database import execute, query
from settings import SetupError

CARD_HASH = re.compile(r"[0-9a-f]{64}")  # a card's keyed hash: what a card entry of a list holds
CARD_HASH_SHOWN = 12  # hex digits of it on screen: too few to read as a card number
LIST_CHANGES_SHOWN = 50
MAX_EXPIRY_DAYS = 3650
LIST_NAME_HELP = (
    "Lowercase letters, digits and _, not starting with a digit (as the rules name it: lists.NAME)"
)


def show_lists() -> None:
    """Every entry of the rules' lists and their last changes; the forms that change them, to an
    identified user whose database role may."""
    st.subheader("Lists", divider="gray")
    entries = query(
        """SELECT list, value, added_by, added_at AT TIME ZONE business_time_zone() AS added_at, reason,
                  coalesce(to_char(expires_at AT TIME ZONE business_time_zone(), 'YYYY-MM-DD HH24:MI'),
                           'never') AS expires,
                  expires_at IS NULL OR expires_at > now() AS in_force
           FROM list_entries ORDER BY list, value"""
    )
    changes = query(
        """SELECT changed_at AT TIME ZONE business_time_zone() AS changed_at, list, value, change, changed_by,
                  reason, CASE change WHEN 'add' THEN coalesce(to_char(expires_at AT TIME ZONE
                      business_time_zone(), 'YYYY-MM-DD HH24:MI'), 'never') ELSE '' END AS expires
           FROM list_changes ORDER BY changed_at DESC, id DESC LIMIT :shown""",
        shown=LIST_CHANGES_SHOWN,
    )
    author, why = list_editor()
    st.caption(why)
    show_list_table(
        entries,
        "No list has an entry.",
        {
            "added_at": st.column_config.DatetimeColumn("Added", format="YYYY-MM-DD HH:mm"),
            "expires": "Expires",
            "in_force": st.column_config.CheckboxColumn("In force", help="Not expired: the rules read it"),
        },
    )
    st.markdown(f"**Last changes** (the latest {LIST_CHANGES_SHOWN})")
    show_list_table(
        changes,
        "No list was ever changed.",
        {
            "changed_at": st.column_config.DatetimeColumn("Changed", format="YYYY-MM-DD HH:mm"),
            "change": "Change",
            "changed_by": "By",
            "expires": "Expires",
        },
    )
    if author is not None:
        show_list_forms(entries, author)
    outcome = st.session_state.pop("list_outcome", None)  # of a form just submitted (list_change)
    if outcome is not None:
        kind, message = outcome
        getattr(st, kind)(message)


def show_list_table(rows: pd.DataFrame, empty: str, columns: dict) -> None:
    if rows.empty:
        st.info(empty, icon=":material/info:")
        return
    st.dataframe(
        rows.assign(value=rows.value.map(shown_value)),
        hide_index=True,
        column_config={
            "list": "List",
            "value": "Value",
            "added_by": "Added by",
            "reason": "Reason",
            **columns,
        },
    )


def shown_value(value: str) -> str:
    """A list value for the screen: a card's keyed hash shortened (never anything card-like)."""
    return f"{value[:CARD_HASH_SHOWN]}…" if CARD_HASH.fullmatch(value) else value


def list_editor() -> tuple[str | None, str]:
    """Who changes the lists here, recorded as the changes' author, and a line saying so; None
    and why not when the lists are read-only: the role may not, or the user is not identified."""
    role = query(
        "SELECT current_user AS role, has_function_privilege("
        "'list_add(text,text,text,text,timestamptz)', 'EXECUTE') AS may_edit"
    ).iloc[0]
    if not role.may_edit:
        return None, (
            f"Read only: the dashboard's database role {role.role} is not a member of "
            f"fraud_list_editor. To change the lists here: `GRANT fraud_list_editor TO "
            f"{role.role};` (dashboard/README.md)."
        )
    author = identified_user()
    if author is None and st.user.get("is_logged_in"):
        return None, "Read only: your login gives no email to record as the author of your changes."
    if author is None:
        return None, "Read only: log in to change the lists (every change records who made it)."
    return author, f"Changes you make here are recorded as made by {author}."


def show_list_forms(entries: pd.DataFrame, author: str) -> None:
    """The three changes, each written by list_change when its form is submitted."""
    add_value, add_card, remove = st.tabs(["Add a value", "Add a payment's card", "Remove an entry"])
    with add_value, st.form("list_add_value"):
        st.text_input(
            "List", key="list_add_value_list_name", placeholder="trusted_merchants", help=LIST_NAME_HELP
        )
        st.text_input(
            "Value",
            key="list_add_value_value",
            max_chars=200,
            help="A merchant, a category, … as the payments hold it. Never a card number: add a "
            "card through one of its payments.",
        )
        list_form_end("list_add_value", "Add the value", author)
    with add_card, st.form("list_add_card"):
        st.text_input("List", "blocked_cards", key="list_add_card_list_name", help=LIST_NAME_HELP)
        st.text_input(
            "Transaction",
            key="list_add_card_trans_num",
            help="The trans_num of a stored payment: its card is added by its keyed hash",
        )
        list_form_end("list_add_card", "Add the payment's card", author)
    with remove:
        if entries.empty:
            st.caption("No entry to remove.")
        else:
            with st.form("list_remove"):
                st.selectbox(
                    "Entry",
                    list(zip(entries.list, entries.value)),
                    key="list_remove_entry",
                    format_func=lambda entry: f"{entry[0]}: {shown_value(entry[1])}",
                )
                list_form_end("list_remove", "Remove the entry", author)


def list_form_end(form: str, submit: str, author: str) -> None:
    """A list form's last fields (the reason; an add's expiry) and its submit button."""
    st.text_input(
        "Reason (required)",
        key=f"{form}_reason",
        max_chars=1000,
        help="Why: kept with the entry and in the lists' history",
    )
    if form != "list_remove":
        st.number_input(
            "Expires in days",
            key=f"{form}_days",
            value=None,
            min_value=1,
            max_value=MAX_EXPIRY_DAYS,
            step=1,
            placeholder="never",
            help="Empty: the entry stays until it is removed",
        )
    st.form_submit_button(
        submit, type="primary", key=f"{form}_submit", on_click=list_change, args=(form, author)
    )


REQUIRED_FIELDS = {  # form: its required fields (key suffix: what to call it)
    "list_add_value": {"list_name": "the list", "value": "the value", "reason": "a reason"},
    "list_add_card": {"list_name": "the list", "trans_num": "the transaction", "reason": "a reason"},
    "list_remove": {"entry": "the entry", "reason": "a reason"},
}
EXPIRY = "now() + CAST(:days AS integer) * interval '1 day'"  # NULL days: no expiry


def list_change(form: str, author: str) -> None:
    """A submitted list form's change, written before the page is drawn again (so that it shows
    the change); what happened is kept for the page to say, and a change's fields are emptied."""
    kind, message = list_outcome(form, author)
    st.session_state["list_outcome"] = (kind, message)
    if kind == "success":
        st.cache_data.clear()  # the lists changed
        for name in ("value", "trans_num", "reason", "days", "entry"):
            st.session_state.pop(f"{form}_{name}", None)


def list_outcome(form: str, author: str) -> tuple[str, str]:
    """The form's change made, or why not: nothing is written when a field is missing or the
    database refuses. (kind: an st function, message)."""
    values = {
        name: strip(st.session_state.get(f"{form}_{name}")) for name in [*REQUIRED_FIELDS[form], "days"]
    }
    missing = [what for name, what in REQUIRED_FIELDS[form].items() if not values[name]]
    if missing:
        return "error", f"Give {' and '.join(missing)}. Nothing was changed."
    try:
        return LIST_CHANGES[form](author=author, **values)
    except sqlalchemy.exc.DBAPIError as e:
        return "error", f"The database refused the change: {refusal_text(e.orig)} Nothing was changed."
    except SetupError as e:
        if not isinstance(getattr(e.__cause__, "orig", None), psycopg.errors.InsufficientPrivilege):
            return "error", str(e)
        st.cache_data.clear()  # the page reads the privilege again: read-only from now
        return "error", (
            "The dashboard's database role may no longer change the lists (not a member "
            "of fraud_list_editor). Nothing was changed."
        )


def strip(value):
    return value.strip() if isinstance(value, str) else value


def refusal_text(error) -> str:
    """The database's own words for a refused change (its primary message, no detail that would
    repeat the values), with the list-name rule for a name the CHECK refuses."""
    message = (getattr(error.diag, "message_primary", None) or str(error)).strip().rstrip(".") + "."
    if isinstance(error, psycopg.errors.CheckViolation) and "list_check" in message:
        message += " A list's name is lowercase letters, digits and _, not starting with a digit."
    return message


def expiring(days) -> str:
    return f", expiring in {days} days" if days else ""


def add_value(*, list_name: str, value: str, reason: str, days, author: str) -> tuple[str, str]:
    execute(
        f"SELECT list_add(:list, :value, :author, :reason, {EXPIRY})",
        write=True,
        list=list_name,
        value=value,
        author=author,
        reason=reason,
        days=days,
    )
    return "success", f"Added {shown_value(value)} to {list_name}{expiring(days)}."


def add_card(*, list_name: str, trans_num: str, reason: str, days, author: str) -> tuple[str, str]:
    added = execute(
        f"SELECT list_add_card_of(:list, :trans_num, :author, :reason, {EXPIRY}) AS added",
        write=True,
        list=list_name,
        trans_num=trans_num,
        author=author,
        reason=reason,
        days=days,
    )
    if not added.added.iloc[0]:
        return "error", "No stored payment has this transaction id. Nothing was changed."
    return "success", f"Added the card of payment {trans_num} to {list_name}{expiring(days)}."


def remove_entry(*, entry: tuple[str, str], reason: str, days, author: str) -> tuple[str, str]:
    list_name, value = entry
    removed = execute(
        "SELECT list_remove(:list, :value, :author, :reason) AS removed",
        write=True,
        list=list_name,
        value=value,
        author=author,
        reason=reason,
    )
    if not removed.removed.iloc[0]:
        return "warning", f"{list_name} no longer held {shown_value(value)}: nothing was changed."
    return "success", f"Removed {shown_value(value)} from {list_name}."


LIST_CHANGES = {"list_add_value": add_value, "list_add_card": add_card, "list_remove": remove_entry}
