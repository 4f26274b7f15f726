//! The SMTP client: a URL decides the security (`smtp://` plain, `smtp+starttls://`, `smtps://`
//! TLS); credentials come from the environment. Connection failures and 4xx answers are
//! transient (retried, then "unavailable"); 5xx answers are permanent.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use crate::error::Failure;

pub struct Smtp {
    transport: SmtpTransport,
    pub target: String,
}

/// Why a message was not accepted.
pub enum SendError {
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transient(m) | SendError::Permanent(m) => f.write_str(m),
        }
    }
}

impl Smtp {
    pub fn connect(url: &str, username: Option<&str>, timeout: Duration) -> Result<Self, Failure> {
        let bad =
            |why: &str| Failure::Config(format!("--smtp-url / FRAUDCTL_SMTP_URL {url:?} {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("is not smtp://, smtp+starttls:// or smtps://HOST[:PORT]"))?;
        if rest.contains('@') {
            return Err(bad(
                "must not carry credentials: use FRAUDCTL_SMTP_USERNAME and FRAUDCTL_SMTP_PASSWORD",
            ));
        }
        let hostport = rest.trim_end_matches('/');
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| bad("has an invalid port"))?),
            ),
            None => (hostport, None),
        };
        let tls_err = |e: lettre::transport::smtp::Error| bad(&format!("cannot set up TLS: {e}"));
        let mut builder = match scheme {
            "smtp" => SmtpTransport::builder_dangerous(host).port(port.unwrap_or(25)),
            "smtp+starttls" => SmtpTransport::starttls_relay(host)
                .map_err(tls_err)?
                .port(port.unwrap_or(587)),
            "smtps" => SmtpTransport::relay(host)
                .map_err(tls_err)?
                .port(port.unwrap_or(465)),
            _ => return Err(bad("has an unknown scheme (smtp, smtp+starttls, smtps)")),
        };
        if let Some(user) = username {
            let password =
                crate::error::secret_from_env("FRAUDCTL_SMTP_PASSWORD", "the SMTP password")?;
            builder = builder.credentials(Credentials::new(user.to_string(), password));
        }
        Ok(Smtp {
            transport: builder.timeout(Some(timeout)).build(),
            target: url.to_string(),
        })
    }

    pub fn send(&self, message: &Message) -> Result<(), SendError> {
        self.transport.send(message).map(|_| ()).map_err(|e| {
            let text = crate::error::chain(&e);
            if e.is_permanent() {
                SendError::Permanent(text)
            } else {
                SendError::Transient(text)
            }
        })
    }
}
