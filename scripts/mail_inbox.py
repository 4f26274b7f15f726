"""The local stack's web inbox: the messages the SMTP sink kept (a maildir of `<n>.eml` files),
read in a browser, as compose's Mailpit offers them.

    GET /                the messages, newest first: received, from, to, subject
    GET /message/<name>  one message: its headers, and its HTML part (in a sandboxed frame: no
                         script runs, no link opens in the inbox) or its text
    GET /api/messages    the list as JSON, for scripts

Read only, and on 127.0.0.1 by default: it shows what the pipeline emailed, card numbers
masked as in the emails themselves. Started by `smtp_sink.py serve --web-listen HOST:PORT`.
"""

import datetime as dt
import email
import email.policy
import html
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NAME = re.compile(r"^[0-9]{1,12}\.eml$")
STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}"
    "td,th{text-align:left;padding:.4em .8em;border-bottom:1px solid #ddd}"
    "iframe{width:100%;height:70vh;border:1px solid #ccc}pre{white-space:pre-wrap}"
)


def read(path: Path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def summaries(maildir: Path) -> list[dict]:
    """Every message's file name, when the sink received it (UTC) and headers, newest first."""
    out = []
    for path in sorted(maildir.glob("*.eml"), reverse=True):
        msg = read(path)
        received = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        out.append(
            {
                "name": path.name,
                "received": received.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "from": str(msg["From"] or ""),
                "to": str(msg["To"] or ""),
                "subject": str(msg["Subject"] or ""),
            }
        )
    return out


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def index_page(maildir: Path) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m['received'])}</td><td>{html.escape(m['from'])}</td>"
        f"<td>{html.escape(m['to'])}</td><td><a href='/message/{m['name']}'>"
        f"{html.escape(m['subject']) or '(no subject)'}</a></td></tr>"
        for m in summaries(maildir)
    )
    table = (
        f"<table><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr>{rows}</table>"
        if rows
        else "<p>No message yet.</p>"
    )
    return page("Inbox", f"<h1>Inbox</h1><p>{html.escape(str(maildir))}</p>{table}")


def message_page(path: Path) -> str:
    msg = read(path)
    headers = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in msg.items()
        if k in ("Date", "From", "To", "Cc", "Subject", "Message-ID")
    )
    body = msg.get_body(preferencelist=("html", "plain"))
    if body is None:
        shown = "<p>(no text or HTML body)</p>"
    elif body.get_content_subtype() == "html":
        # srcdoc in a sandbox: the email's own page, without scripts or navigation of the inbox.
        shown = f'<iframe sandbox srcdoc="{html.escape(body.get_content(), quote=True)}"></iframe>'
    else:
        shown = f"<pre>{html.escape(body.get_content())}</pre>"
    subject = str(msg["Subject"] or "(no subject)")
    return page(
        subject,
        f"<p><a href='/'>&larr; Inbox</a></p><h1>{html.escape(subject)}</h1><table>{headers}</table>{shown}",
    )


def handler(maildir: Path):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                return self.reply(200, index_page(maildir), "text/html")
            if path == "/api/messages":
                return self.reply(200, json.dumps(summaries(maildir)), "application/json")
            name = path.removeprefix("/message/")
            if path.startswith("/message/") and NAME.match(name) and (maildir / name).is_file():
                return self.reply(200, message_page(maildir / name), "text/html")
            return self.reply(
                404, page("Not found", "<p>No such page or message. <a href='/'>Inbox</a></p>"), "text/html"
            )

        def reply(self, status: int, text: str, content_type: str):
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            # The inbox's own page runs no script either.
            self.send_header(
                "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'"
            )
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def start(listen: str, maildir: Path) -> ThreadingHTTPServer:
    """Serves the inbox of `maildir` on `listen` (HOST:PORT) from a background thread."""
    host, port = listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(maildir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
