#!/usr/bin/env python3
"""A local SMTP sink: a real SMTP server (aiosmtpd) that keeps every message it accepts.

    python scripts/smtp_sink.py serve --listen 127.0.0.1:1025 --maildir .local/mail
    python scripts/smtp_sink.py list --maildir .local/mail          # what it received
    python scripts/smtp_sink.py show --maildir .local/mail FILE     # one message: headers, body as text
    python scripts/smtp_sink.py dump --maildir .local/mail          # every message, decoded

`serve --web-listen 127.0.0.1:8025` also serves the messages as a web inbox
(scripts/mail_inbox.py), as compose's Mailpit does.

Each accepted message is written atomically to MAILDIR/<n>.eml. `--fail-first N` answers
"451 try again later" to the first N messages (a server that refuses, then recovers).
`--refuse-containing TEXT` answers "554" to every message whose content holds TEXT (a message
refused for good); `--refuse-sender ADDR` answers "553" to MAIL FROM:<ADDR> (a sender refused,
so every message is).
`--auth-user USER` requires SMTP AUTH (PLAIN or LOGIN) as USER, with the password in the
environment variable FRAUDCTL_SMTP_SINK_PASSWORD (never on the command line).
"""

import argparse
import asyncio
import email
import email.policy
import html.parser
import itertools
import os
import re
import sys
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(
        self, maildir: Path, fail_first: int, refuse_containing=(), refuse_sender=None, stall_after_store=0.0
    ):
        self.maildir = maildir
        self.stall_after_store = stall_after_store
        self.failures_left = fail_first
        self.refuse_containing = [t.encode() for t in refuse_containing]
        self.refuse_sender = refuse_sender
        self.seq = itertools.count(len(list(maildir.glob("*.eml"))) + 1)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address == self.refuse_sender:
            return "553 5.7.1 sender not allowed (injected)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.failures_left > 0:
            self.failures_left -= 1
            return "451 4.3.0 temporary failure (injected), try again later"
        if any(t in envelope.original_content for t in self.refuse_containing):
            print(f"refused a message from {envelope.mail_from} (content)", flush=True)
            return "554 5.6.0 message content rejected (injected)"
        path = self.maildir / f"{next(self.seq):06d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content)
        os.replace(tmp, path)
        print(f"accepted {path.name} from {envelope.mail_from} to {','.join(envelope.rcpt_tos)}", flush=True)
        await asyncio.sleep(self.stall_after_store)
        return "250 OK"


def authenticator(user: str, password: str):
    """Accepts exactly one account."""

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok)

    return check


def serve(args):
    host, port = args.listen.rsplit(":", 1)
    args.maildir.mkdir(parents=True, exist_ok=True)
    auth = {}
    if args.auth_user:
        password = os.environ.get("FRAUDCTL_SMTP_SINK_PASSWORD")
        if not password:
            sys.exit("--auth-user needs the password in FRAUDCTL_SMTP_SINK_PASSWORD")
        auth = {
            "authenticator": authenticator(args.auth_user, password),
            "auth_required": True,
            "auth_require_tls": False,
        }
    sink = Sink(
        args.maildir, args.fail_first, args.refuse_containing, args.refuse_sender, args.stall_after_store
    )
    controller = Controller(sink, hostname=host, port=int(port), **auth)
    controller.start()
    print(f"SMTP sink listening on {args.listen}, storing messages in {args.maildir}", flush=True)
    if args.web_listen:
        import mail_inbox  # beside this script

        mail_inbox.start(args.web_listen, args.maildir)
        print(f"web inbox on http://{args.web_listen}/", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


def messages(maildir: Path):
    for path in sorted(maildir.glob("*.eml")):
        yield path, email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def list_messages(args):
    found = False
    for path, msg in messages(args.maildir):
        found = True
        print(f"{path.name}  {msg['Date']}  to {msg['To']}  {msg['Subject']}")
    if not found:
        print(f"no message in {args.maildir}")


def show(args):
    path = args.maildir / args.file
    if not path.is_file():
        sys.exit(f"no message {args.file} in {args.maildir}: see `smtp_sink.py list`")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    print("".join(f"{k}: {v}\n" for k, v in msg.items()))
    print(readable(msg))


class _HtmlText(html.parser.HTMLParser):
    """An HTML body's text: a line break after each block, each link's address after its text."""

    BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.links, self.skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "script", "head")
        if tag == "a":
            self.links.append(dict(attrs).get("href"))
        if tag in ("td", "th"):
            self.parts.append("  ")

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "script", "head")
        if tag == "a" and self.links and (href := self.links.pop()):
            self.parts.append(f" <{href}>")
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def readable(msg) -> str:
    """A message's body as text: its text/plain part, else its HTML part as text."""
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "(no text or HTML body)"
    if body.get_content_subtype() == "plain":
        return body.get_content()
    parser = _HtmlText()
    parser.feed(body.get_content())
    return parser.text()


def dump(args):
    for path, msg in messages(args.maildir):
        print(f"== {path.name}")
        print("".join(f"{k}: {v}\n" for k, v in msg.items()))
        for part in msg.walk():
            if not part.is_multipart():
                print(part.get_content())


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the SMTP server")
    p.add_argument("--listen", default=os.environ.get("FRAUDCTL_SMTP_SINK_LISTEN", "127.0.0.1:1025"))
    p.add_argument("--fail-first", type=int, default=0, help="answer 451 to the first N messages")
    p.add_argument(
        "--refuse-containing",
        action="append",
        default=[],
        metavar="TEXT",
        help="answer 554 to messages whose content holds TEXT (repeatable)",
    )
    p.add_argument("--refuse-sender", metavar="ADDR", help="answer 553 to MAIL FROM:<ADDR>")
    p.add_argument(
        "--stall-after-store",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long between storing a message and answering 250 (a client killed "
        "meanwhile had its message accepted without hearing it)",
    )
    p.add_argument("--auth-user", help="require AUTH as this user (password: FRAUDCTL_SMTP_SINK_PASSWORD)")
    p.add_argument(
        "--web-listen",
        metavar="HOST:PORT",
        help="also serve the messages as a web inbox here (scripts/mail_inbox.py)",
    )
    for name in ("serve", "list", "show", "dump"):
        q = p if name == "serve" else sub.add_parser(name, help=f"{name} received messages")
        q.add_argument(
            "--maildir", type=Path, default=Path(os.environ.get("FRAUDCTL_SMTP_SINK_DIR", ".local/mail"))
        )
        if name == "show":
            q.add_argument("file", help="a file name printed by `list`")
    args = parser.parse_args()
    {"serve": serve, "list": list_messages, "show": show, "dump": dump}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
