//! The SMTP client: a URL decides the security (`smtp://` plain, `smtp+starttls://`, `smtps://`
//! TLS); credentials come from the environment. One connection serves the whole run.
//!
//! Failures are told apart by the step of the SMTP exchange that failed, because that decides
//! what the others can expect:
//! * unreachable, timed out, or a 4xx answer anywhere: [`SendError::Transient`] (retried, then
//!   "unavailable": every alert waits for the next attempt);
//! * a 5xx to the login, the sender (`MAIL FROM`), a recipient (`RCPT TO`) or `DATA`:
//!   [`SendError::RefusedAll`]: the same refusal awaits every message, the run fails;
//! * a 5xx to the message itself (after its content was sent): [`SendError::RefusedMessage`]:
//!   that alert is refused for good, the others can still go.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Message;

use super::AlertArgs;
use crate::error::Failure;
use crate::setting;

/// The SMTP password's variable (environment only: never a flag).
pub const PASSWORD_VAR: &str = "FRAUDCTL_SMTP_PASSWORD";

/// How the connection is secured.
enum Security {
    Plain,
    StartTls(TlsParameters),
    Tls(TlsParameters),
}

pub struct Smtp {
    pub target: String,
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    timeout: Duration,
    connection: Option<SmtpConnection>,
}

/// Why a message was not accepted.
#[derive(Debug)]
pub enum SendError {
    /// The server could not be reached or asked to try later.
    Transient(String),
    /// A refusal that concerns every message: the login, the sender or the recipients.
    RefusedAll(String),
    /// This message was refused for good; the server's reply.
    RefusedMessage(String),
}

impl crate::retry::Transient for SendError {
    fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transient(m) | SendError::RefusedAll(m) | SendError::RefusedMessage(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The step of the exchange a failure happened at.
#[derive(Clone, Copy)]
enum Step {
    Login,
    Envelope,
    Content,
}

fn failed(step: Step, e: lettre::transport::smtp::Error) -> SendError {
    let text = crate::error::chain(&e);
    match (e.is_permanent(), step) {
        (false, _) => SendError::Transient(text),
        (true, Step::Content) => SendError::RefusedMessage(text),
        (true, Step::Login) => SendError::RefusedAll(format!("login refused: {text}")),
        (true, Step::Envelope) => SendError::RefusedAll(text),
    }
}

impl Smtp {
    /// The server of `url` (checked now; connected to at the first send).
    pub fn new(url: &str, username: Option<&str>, timeout: Duration) -> Result<Self, Failure> {
        let bad = |why: &str| {
            Failure::Config(format!(
                "{} {url:?} {why}",
                setting::name::<AlertArgs>("smtp_url")
            ))
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("is not smtp://, smtp+starttls:// or smtps://HOST[:PORT]"))?;
        if rest.contains('@') {
            return Err(bad(&format!(
                "must not carry credentials: use {} and {PASSWORD_VAR}",
                setting::var::<AlertArgs>("smtp_username")
            )));
        }
        let hostport = rest.trim_end_matches('/');
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| bad("has an invalid port"))?),
            ),
            None => (hostport, None),
        };
        let tls = || {
            TlsParameters::new(host.to_string())
                .map_err(|e| bad(&format!("cannot set up TLS: {e}")))
        };
        let (security, default_port) = match scheme {
            "smtp" => (Security::Plain, 25),
            "smtp+starttls" => (Security::StartTls(tls()?), 587),
            "smtps" => (Security::Tls(tls()?), 465),
            _ => return Err(bad("has an unknown scheme (smtp, smtp+starttls, smtps)")),
        };
        let credentials = match username {
            Some(user) => Some(Credentials::new(
                user.to_string(),
                crate::error::secret_from_env(PASSWORD_VAR, "the SMTP password")?,
            )),
            None => None,
        };
        Ok(Smtp {
            target: url.to_string(),
            host: host.to_string(),
            port: port.unwrap_or(default_port),
            security,
            credentials,
            timeout,
            connection: None,
        })
    }

    /// Sends one message on the run's connection (opened, secured and logged in first if
    /// needed). After any failure the connection is dropped; the next send opens a new one.
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        let result = self.try_send(message);
        if result.is_err() {
            if let Some(mut connection) = self.connection.take() {
                connection.abort();
            }
        }
        result
    }

    fn try_send(&mut self, message: &Message) -> Result<(), SendError> {
        let connection = match &mut self.connection {
            Some(c) => c,
            None => self.connection.insert(self.open()?),
        };
        let bytes = message.formatted();
        let options = mail_options(connection, message.envelope(), &bytes)?;
        let envelope = message.envelope();
        let step = |step, r: Result<_, _>| r.map(|_| ()).map_err(|e| failed(step, e));
        step(
            Step::Envelope,
            connection.command(Mail::new(envelope.from().cloned(), options)),
        )?;
        for to in envelope.to() {
            step(
                Step::Envelope,
                connection.command(Rcpt::new(to.clone(), vec![])),
            )?;
        }
        step(Step::Envelope, connection.command(Data))?;
        match Content::of(&bytes) {
            Some(content) => step(Step::Content, connection.command(content)),
            None => step(Step::Content, connection.message(&bytes)),
        }
    }

    fn open(&self) -> Result<SmtpConnection, SendError> {
        let hello = ClientId::default();
        let wrapper = match &self.security {
            Security::Tls(tls) => Some(tls),
            _ => None,
        };
        let mut connection = SmtpConnection::connect(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &hello,
            wrapper,
            None,
        )
        .map_err(|e| failed(Step::Login, e))?;
        if let Security::StartTls(tls) = &self.security {
            connection
                .starttls(tls, &hello)
                .map_err(|e| failed(Step::Login, e))?;
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .map_err(|e| failed(Step::Login, e))?;
        }
        Ok(connection)
    }

    /// Says goodbye to the server (at the end of a run; a failure here changes nothing).
    pub fn quit(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            connection.quit().ok();
        }
    }
}

/// `MAIL FROM` parameters the message needs: SMTPUTF8 for non-ASCII addresses, 8BITMIME for a
/// non-ASCII body (refused, as every message would be, when the server lacks them).
fn mail_options(
    connection: &SmtpConnection,
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<Vec<MailParameter>, SendError> {
    let server = connection.server_info();
    let mut options = Vec::new();
    let non_ascii = |a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii();
    if envelope.from().is_some_and(non_ascii) || envelope.to().iter().any(non_ascii) {
        if !server.supports_feature(Extension::SmtpUtfEight) {
            return Err(SendError::RefusedAll(
                "the addresses are not ASCII and the server does not support SMTPUTF8".into(),
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() {
        if !server.supports_feature(Extension::EightBitMime) {
            return Err(SendError::RefusedMessage(
                "the message is not ASCII and the server does not support 8BITMIME".into(),
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(options)
}
/// A message's content and its end (`CRLF . CRLF`), to be written at once. lettre's own
/// `message` writes them in two writes, and with Nagle's algorithm on (lettre sets no
/// TCP_NODELAY) the second waits for the server's delayed ACK of the first: 40 ms a message on
/// Linux, most of an alert's time. Dot-stuffed as RFC 5321 (4.5.2) says, as lettre does it: a
/// line (after CR LF, or the first) that starts with `.` gets one more.
struct Content(String);

impl Content {
    /// `None` for content that is not UTF-8 (lettre's encodings make ASCII: never, in practice);
    /// then lettre's own `message` sends it.
    fn of(message: &[u8]) -> Option<Content> {
        let text = std::str::from_utf8(message).ok()?;
        let mut out = String::with_capacity(text.len() + 16);
        let mut line_start = true;
        let mut after_cr = false;
        for c in text.chars() {
            if c == '.' && line_start {
                out.push('.');
            }
            line_start = c == '\n' && after_cr;
            after_cr = c == '\r';
            out.push(c);
        }
        out.push_str("\r\n.\r\n");
        Some(Content(out))
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod content_tests {
    use super::Content;

    #[test]
    fn a_line_that_starts_with_a_dot_gets_another_and_the_end_follows_in_the_same_write() {
        let sent =
            Content::of(b".first\r\nplain\r\n.hidden\r\nmid.dot\n.lf only\r\n..two").unwrap();
        assert_eq!(
            sent.to_string(),
            "..first\r\nplain\r\n..hidden\r\nmid.dot\n.lf only\r\n...two\r\n.\r\n"
        );
        assert!(Content::of(&[0xff, b'.']).is_none());
    }
}
