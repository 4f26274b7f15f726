"""Who may see the dashboard: anyone on the local stack (it listens on loopback only there), else
a user logged in with Streamlit's login (OpenID Connect); and who the user is, as the author of
the changes they make."""

import getpass
import os

import streamlit as st

from settings import SetupError

# The local stack's addresses: there, whoever can open the page has a shell on the machine.
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def login_configured() -> bool:
    """Whether Streamlit's login is set up: an [auth] section in the secrets it reads."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def may_show_data() -> bool:
    """True for the local stack and for a logged-in user; False for a visitor to log in first.
    Listening beyond loopback without a login configured is a SetupError: never silently open."""
    address = st.get_option("server.address")
    if address in LOOPBACK:
        return True
    if not login_configured():
        raise SetupError(
            f"The dashboard listens on {address or 'every interface'} (server.address, "
            "STREAMLIT_SERVER_ADDRESS) and no login is configured, so it shows no data. Add an [auth] "
            "section (OpenID Connect: redirect_uri, cookie_secret, client_id, client_secret, "
            "server_metadata_url) to the secrets file Streamlit reads "
            f"({', '.join(st.get_option('secrets.files'))}), or listen on 127.0.0.1 only; see "
            'dashboard/README.md, "Who can see it".'
        )
    return bool(st.user.get("is_logged_in"))


def show_login(verdict_link: bool) -> None:
    """The login page; for a verdict link, how to get back to it."""
    st.title(":material/lock: Fraud report")
    st.info("Log in to see the fraud report.", icon=":material/lock:")
    if verdict_link:
        st.caption(
            "Then open the verdict link from the alert email again: logging in returns to the home page."
        )
    st.button("Log in", type="primary", key="login", on_click=st.login)


def show_logout() -> None:
    if st.user.get("is_logged_in"):
        st.sidebar.button(f"Log out {st.user.get('email') or ''}".strip(), key="logout", on_click=st.logout)


def identified_user() -> str | None:
    """A logged-in user's email; on the local stack with no login configured, the account the
    dashboard runs as; else None."""
    if st.user.get("is_logged_in"):
        return st.user.get("email") or None
    if st.get_option("server.address") in LOOPBACK and not login_configured():
        return f"local:{local_account()}"
    return None


def local_account() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (a container's --user)
        return f"uid {os.getuid()}"
