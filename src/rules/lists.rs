//! The lists rules read, in PostgreSQL (`list_entries`, V22), and `fraudctl lists`: show, add
//! and remove entries through the functions that keep their audit trail (`list_changes`).

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use postgres::Client;

use crate::db::DbArgs;
use crate::error::Failure;
use crate::pan::PanProtector;

/// The entries of the lists a rule set reads, as they stand when `score` starts.
pub struct ListEntries {
    sets: Vec<HashSet<String>>,
}

impl ListEntries {
    /// The unexpired entries of `names`, in that order (a list without entries is empty).
    pub fn load(client: &mut Client, names: &[String]) -> Result<Self> {
        let mut sets = vec![HashSet::new(); names.len()];
        let rows = client
            .query(
                "SELECT list, value FROM list_entries
                 WHERE list = ANY($1) AND (expires_at IS NULL OR expires_at > now())",
                &[&names],
            )
            .context("reading the rules' lists from list_entries")?;
        for row in rows {
            let list: &str = row.get(0);
            let i = names.iter().position(|n| n == list).expect("asked for");
            sets[i].insert(row.get(1));
        }
        Ok(ListEntries { sets })
    }

    /// No list at all (a rule set that reads none).
    pub fn none() -> Self {
        ListEntries { sets: Vec::new() }
    }
}

impl super::Lists for ListEntries {
    fn holds(&self, list: usize, value: &str) -> bool {
        self.sets.get(list).is_some_and(|s| s.contains(value))
    }
}

/// The lists as they were at any time, from their audit trail (`list_changes`): what a backtest
/// decides each stored payment with (as of the time its decision was stored).
pub struct ListHistory {
    /// Per list, each value's spans of membership, oldest first.
    lists: Vec<HashMap<String, Vec<Span>>>,
}

/// A value's time on a list: from its addition (ms since the epoch) until its removal, its
/// expiry or a renewal, whichever came first (`None`: still on it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    from_ms: i64,
    until_ms: Option<i64>,
}

impl ListHistory {
    /// The changes of `names`, in that order (a list never changed is empty at every time; no
    /// list, no query).
    pub fn load(client: &mut Client, names: &[String]) -> Result<Self> {
        if names.is_empty() {
            return Ok(ListHistory { lists: Vec::new() });
        }
        let rows = client
            .query(
                "SELECT list, value, change = 'add',
                        (extract(epoch FROM changed_at) * 1000)::int8,
                        (extract(epoch FROM expires_at) * 1000)::int8
                 FROM list_changes WHERE list = ANY($1) ORDER BY changed_at, id",
                &[&names],
            )
            .context("reading the rules' lists' history from list_changes")?;
        let mut history = ListHistory {
            lists: vec![HashMap::new(); names.len()],
        };
        for row in rows {
            let list = names.iter().position(|n| n == row.get::<_, &str>(0));
            let spans = history.lists[list.expect("asked for")]
                .entry(row.get(1))
                .or_default();
            apply(spans, row.get(2), row.get(3), row.get(4));
        }
        Ok(history)
    }

    /// The lists as they were at `t_ms`.
    pub fn at(&self, t_ms: i64) -> ListsAt<'_> {
        ListsAt {
            history: self,
            t_ms,
        }
    }
}

/// One change of a value (an addition with its expiry, or a removal, at `at_ms`) applied to its
/// spans: a removal or a renewal ends the span in force.
fn apply(spans: &mut Vec<Span>, add: bool, at_ms: i64, expires_ms: Option<i64>) {
    if let Some(open) = spans.last_mut() {
        open.until_ms = Some(open.until_ms.map_or(at_ms, |u| u.min(at_ms)));
    }
    if add {
        spans.push(Span {
            from_ms: at_ms,
            until_ms: expires_ms,
        });
    }
}

/// [`ListHistory`] at one time.
pub struct ListsAt<'a> {
    history: &'a ListHistory,
    t_ms: i64,
}

impl super::Lists for ListsAt<'_> {
    fn holds(&self, list: usize, value: &str) -> bool {
        let t = self.t_ms;
        let spans = self.history.lists.get(list).and_then(|l| l.get(value));
        spans.is_some_and(|spans| {
            spans
                .iter()
                .any(|s| s.from_ms <= t && s.until_ms.is_none_or(|u| t < u))
        })
    }
}

/// `fraudctl lists`.
#[derive(Debug, Clone, Args)]
pub struct ListsArgs {
    #[command(subcommand)]
    pub command: ListsCommand,

    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ListsCommand {
    /// Print the entries (every list, or one), with who added each, when, why and until when.
    Show {
        #[arg(long)]
        list: Option<String>,
    },
    /// Add an entry (or renew it: its reason, author and expiry replaced).
    Add(Change),
    /// Remove an entry (exit 4 when the list does not hold it).
    Remove(Change),
}

/// An entry to add or remove (one of --value, --card-of, --card-stdin), and who does it why.
#[derive(Debug, Clone, Args)]
pub struct Change {
    /// The list (lowercase letters, digits and underscores), as rules name it: lists.<list>.
    #[arg(long)]
    pub list: String,
    /// The value: a merchant, a category, ... as payments hold it.
    #[arg(long, conflicts_with_all = ["card_of", "card_stdin"],
          required_unless_present_any = ["card_of", "card_stdin"])]
    pub value: Option<String>,
    /// The card of this payment (its keyed hash, from payments_scored).
    #[arg(long, value_name = "TRANS_NUM", conflicts_with = "card_stdin")]
    pub card_of: Option<String>,
    /// A card number read from standard input, hashed at once (FRAUDCTL_PAN_HASH_KEY), never
    /// stored or shown.
    #[arg(long)]
    pub card_stdin: bool,
    /// Why (kept with the entry and in its history; card numbers in it are masked).
    #[arg(long)]
    pub reason: String,
    /// Who (default: the login name).
    #[arg(long, env = "USER", default_value = "unknown")]
    pub by: String,
    /// Add: the entry ends after this many days (default: never).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub expires_in_days: Option<u32>,
}

/// Runs `fraudctl lists`; what it prints on stdout.
pub fn run(args: &ListsArgs) -> Result<String> {
    let mut client = args.db.connect()?;
    match &args.command {
        ListsCommand::Show { list } => show(&mut client, list.as_deref()),
        ListsCommand::Add(change) => {
            let value = entry(&mut client, change)?;
            let days = change.expires_in_days.map(f64::from);
            client
                .execute(
                    "SELECT list_add($1, $2, $3, $4, now() + make_interval(days => $5::float8::int))",
                    &[&change.list, &value, &change.by, &change.reason, &days],
                )
                .map_err(|e| refused(e, "adding the entry"))?;
            Ok(format!("added to {}: {}\n", change.list, shown(&value)))
        }
        ListsCommand::Remove(change) => {
            let value = entry(&mut client, change)?;
            let removed: bool = client
                .query_one(
                    "SELECT list_remove($1, $2, $3, $4)",
                    &[&change.list, &value, &change.by, &change.reason],
                )
                .map_err(|e| refused(e, "removing the entry"))?
                .get(0);
            if !removed {
                return Err(Failure::BadInput(format!(
                    "list {} holds no entry {}",
                    change.list,
                    shown(&value)
                ))
                .into());
            }
            Ok(format!("removed from {}: {}\n", change.list, shown(&value)))
        }
    }
}

/// The value a change names: given, the card of a payment, or a card number from stdin.
fn entry(client: &mut Client, change: &Change) -> Result<String> {
    if let Some(value) = &change.value {
        return Ok(value.clone());
    }
    if let Some(trans_num) = &change.card_of {
        let row = client
            .query_opt(
                "SELECT cc_hash FROM payments_scored WHERE trans_num = $1",
                &[trans_num],
            )
            .context("reading the payment's card from payments_scored")?;
        return match row {
            Some(row) => Ok(row.get(0)),
            None => Err(
                Failure::BadInput(format!("payments_scored holds no payment {trans_num}")).into(),
            ),
        };
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading a card number from standard input")?;
    let digits: String = line.chars().filter(char::is_ascii_digit).collect();
    let separators = line
        .trim()
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if !(11..=19).contains(&digits.len()) || !separators {
        return Err(Failure::BadInput(
            "standard input holds no card number (11 to 19 digits, spaces or dashes between)"
                .into(),
        )
        .into());
    }
    Ok(PanProtector::from_env()?.protect(&digits).hash)
}

/// A value as messages show it: a card's hash shortened.
fn shown(value: &str) -> String {
    if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) {
        format!("card {}…", &value[..12])
    } else {
        format!("{value:?}")
    }
}

/// A change the database refused (a card number in the value, a bad list name, ...) is bad input.
fn refused(e: postgres::Error, doing: &str) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") || db.code().code().starts_with("23") => {
            Failure::BadInput(format!("{doing}: {}", db.message())).into()
        }
        _ => anyhow::Error::new(e).context(doing.to_string()),
    }
}

fn show(client: &mut Client, list: Option<&str>) -> Result<String> {
    let rows = client
        .query(
            "SELECT list, value, added_by, to_char(added_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                    coalesce(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'never'), reason
             FROM list_entries WHERE $1::text IS NULL OR list = $1 ORDER BY list, added_at, value",
            &[&list],
        )
        .context("reading list_entries")?;
    let mut out = String::from("list\tvalue\tadded by\tadded (UTC)\texpires (UTC)\treason\n");
    for r in rows {
        let cells: Vec<String> = (0..6).map(|i| r.get::<_, String>(i)).collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Lists;

    fn history(changes: &[(bool, i64, Option<i64>)]) -> ListHistory {
        let mut spans = Vec::new();
        for &(add, at, expires) in changes {
            apply(&mut spans, add, at, expires);
        }
        ListHistory {
            lists: vec![HashMap::from([("v".to_string(), spans)])],
        }
    }

    #[test]
    fn a_list_holds_a_value_between_its_addition_and_its_removal_or_expiry() {
        // Added at 10, removed at 20, added again at 30 until 40, renewed at 35 for ever.
        let h = history(&[
            (true, 10, None),
            (false, 20, None),
            (true, 30, Some(40)),
            (true, 35, None),
        ]);
        let held: Vec<i64> = (0..60).filter(|&t| h.at(t).holds(0, "v")).collect();
        let expected: Vec<i64> = (10..20).chain(30..60).collect();
        assert_eq!(held, expected);
        assert!(!h.at(15).holds(0, "w") && !h.at(15).holds(1, "v"));
        // An entry that expired before its removal: gone from its expiry.
        let h = history(&[(true, 10, Some(15)), (false, 20, None)]);
        let held: Vec<i64> = (0..30).filter(|&t| h.at(t).holds(0, "v")).collect();
        assert_eq!(held, (10..15).collect::<Vec<_>>());
    }
}
