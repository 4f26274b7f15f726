//! How messages name a setting: its flag and environment variable, taken from the clap
//! definitions of the options that hold it (`--threshold / FRAUDCTL_THRESHOLD`), so a renamed
//! flag or variable can never leave a message naming the old one. And the parsers of settings
//! that more than one command reads.

use clap::Args;

/// "--FLAG / VARIABLE" of the field `id` of the options `A` (either part alone when the setting
/// has only one). Panics on an `id` that `A` does not have: a programming error, which the unit
/// tests below and every error path's test would meet.
pub fn name<A: Args>(id: &str) -> String {
    let cmd = A::augment_args(clap::Command::new("fraudctl"));
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("no setting {id:?} in {}", std::any::type_name::<A>()));
    let flag = arg.get_long().map(|l| format!("--{l}"));
    let var = arg.get_env().map(|e| e.to_string_lossy().into_owned());
    [flag, var]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The environment variable of the field `id` of the options `A`.
pub fn var<A: Args>(id: &str) -> String {
    let cmd = A::augment_args(clap::Command::new("fraudctl"));
    let var = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_env())
        .unwrap_or_else(|| panic!("no environment variable for {id:?}"))
        .to_string_lossy()
        .into_owned();
    var
}

/// A setting that is a web address: http or https, with a host (never `javascript:`, `data:`
/// or a bare `host:port`, which no request could reach): refused when read, exit 5.
pub fn web_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(text.to_string()),
        _ => Err("not an http:// or https:// URL with a host".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args)]
    struct Example {
        /// A setting with both.
        #[arg(long, env = "FRAUDCTL_EXAMPLE_LIMIT")]
        limit: u32,
        /// A flag only.
        #[arg(long = "dry-run")]
        dry_run: bool,
    }

    #[test]
    fn a_setting_is_named_by_its_flag_and_variable() {
        assert_eq!(name::<Example>("limit"), "--limit / FRAUDCTL_EXAMPLE_LIMIT");
        assert_eq!(name::<Example>("dry_run"), "--dry-run");
        assert_eq!(var::<Example>("limit"), "FRAUDCTL_EXAMPLE_LIMIT");
    }

    #[test]
    #[should_panic(expected = "no setting")]
    fn an_unknown_setting_is_a_programming_error() {
        name::<Example>("limits");
    }
}
