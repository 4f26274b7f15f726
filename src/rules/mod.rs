//! Rules: the fraud team's own decisions beside the model, in a file an analyst edits and
//! reviews like code (docs/rules.md).
//!
//! ```toml
//! [[rule]]
//! id = "night-shopping-net"
//! description = "online shopping over $900 between midnight and 5 am"
//! owner = "fraud-team@example.com"
//! when = 'payment.category == "shopping_net" && payment.amt > 900 && features.hour < 5'
//! action = "alert"
//! ```
//!
//! `score` evaluates every rule on every payment after the model, on the same features (so at
//! the same point in time), and decides with a fixed precedence ([`RuleSet::decide`]): an `alert`
//! rule (a block list is one: `payment.card in lists.blocked_cards`) over an `allow` rule, an
//! `allow` rule over the model, the model over a `review` rule. The rule set is versioned by its
//! file's hash, as the model is; each scored payment records the version, the rules it matched
//! and what decided.

pub mod expr;
#[cfg(feature = "services")]
pub mod lists;

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Failure;
use expr::{Condition, Names};
pub use expr::{Lists, Payment, Subject};

/// At most this many rules in a file: each costs every payment an evaluation.
pub const MAX_RULES: usize = 1000;

/// What a rule does when its condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A fraud, whatever the model says (emailed as one).
    Alert,
    /// Never an alert (a trusted merchant), unless an `alert` rule matches too.
    Allow,
    /// Not a fraud; for an analyst to look at.
    Review,
}

/// A rule as its file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    id: String,
    description: String,
    owner: String,
    when: String,
    action: Action,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default, rename = "rule")]
    rules: Vec<RuleText>,
}

pub struct Rule {
    pub id: String,
    pub description: String,
    pub owner: String,
    pub action: Action,
    condition: Condition,
}

/// The rules of a file, compiled against a model's feature columns.
pub struct RuleSet {
    /// `<file stem>@<first 12 hex digits of the file's SHA-256>`, as a model's version.
    pub version: String,
    pub rules: Vec<Rule>,
    /// The lists the conditions read, by name (a condition's `lists.<name>`).
    pub lists: Vec<String>,
}

/// What decided a payment, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Outcome,
    /// The deciding rule (index in [`RuleSet::rules`]); `None`: the model decided.
    pub rule: Option<usize>,
    /// Every rule that matched, in the file's order.
    pub matched: Vec<usize>,
}

/// The decision's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Alert,
    Allow,
    Review,
    /// Nothing: the model did not predict a fraud and no rule matched that changes it.
    None,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Alert => "alert",
            Outcome::Allow => "allow",
            Outcome::Review => "review",
            Outcome::None => "none",
        }
    }
}

impl RuleSet {
    /// Reads and compiles `path` for a model whose inputs are `features` (its spec's columns).
    /// Every error names the file and the rule.
    pub fn load(path: &Path, features: &[String]) -> Result<RuleSet> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the rules file {}", path.display()))?;
        let bad = |why: String| Failure::BadInput(format!("rules file {}: {why}", path.display()));
        let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        let file: RulesFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.rules.len() > MAX_RULES {
            return Err(bad(format!("{} rules, at most {MAX_RULES}", file.rules.len())).into());
        }
        let stem = path
            .file_stem()
            .map_or("rules".into(), |s| s.to_string_lossy());
        let mut set = RuleSet {
            version: format!("{stem}@{}", &hex::encode(Sha256::digest(&bytes))[..12]),
            rules: Vec::with_capacity(file.rules.len()),
            lists: Vec::new(),
        };
        for text in file.rules {
            let rule = set.compile(text, features).map_err(bad)?;
            set.rules.push(rule);
        }
        Ok(set)
    }

    fn compile(&mut self, text: RuleText, features: &[String]) -> Result<Rule, String> {
        let id = text.id;
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if id.is_empty() || id.len() > 64 || !id.chars().all(valid) {
            return Err(format!(
                "rule id {id:?}: 1 to 64 lowercase letters, digits and dashes"
            ));
        }
        if self.rules.iter().any(|r| r.id == id) {
            return Err(format!("rule {id} is defined twice"));
        }
        for (name, value) in [("description", &text.description), ("owner", &text.owner)] {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return Err(format!("rule {id}: {name} must be a line of text"));
            }
        }
        let mut names = Names {
            features,
            lists: &mut self.lists,
        };
        let condition = Condition::compile(&text.when, &mut names)
            .map_err(|e| format!("rule {id}: `when`: {e}"))?;
        Ok(Rule {
            id,
            description: text.description,
            owner: text.owner,
            action: text.action,
            condition,
        })
    }

    /// Whether a condition reads a list (then `score` needs the lists from the database).
    pub fn reads_lists(&self) -> bool {
        self.rules.iter().any(|r| r.condition.reads_lists)
    }

    /// The decision on `s`, the model having predicted a fraud or not: the first matching
    /// `alert` rule, else the first `allow` rule, else the model's fraud, else the first
    /// `review` rule, else nothing.
    pub fn decide(&self, s: &Subject, lists: &impl Lists, model_fraud: bool) -> Decision {
        let matched: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].condition.matches(s, lists))
            .collect();
        let first = |action| {
            matched
                .iter()
                .copied()
                .find(|&i| self.rules[i].action == action)
        };
        let (action, rule) = match (first(Action::Alert), first(Action::Allow)) {
            (Some(i), _) => (Outcome::Alert, Some(i)),
            (None, Some(i)) => (Outcome::Allow, Some(i)),
            (None, None) if model_fraud => (Outcome::Alert, None),
            (None, None) => match first(Action::Review) {
                Some(i) => (Outcome::Review, Some(i)),
                None => (Outcome::None, None),
            },
        };
        Decision {
            action,
            rule,
            matched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blocked;
    impl Lists for Blocked {
        fn holds(&self, _: usize, value: &str) -> bool {
            value == "stolen"
        }
    }

    fn rules(text: &str) -> Result<RuleSet> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team.toml");
        std::fs::write(&path, text).unwrap();
        RuleSet::load(&path, &["hour".to_string()])
    }

    const FILE: &str = r#"
[[rule]]
id = "block-list"
description = "cards reported stolen"
owner = "ops"
when = "payment.card in lists.blocked_cards"
action = "alert"

[[rule]]
id = "trusted-merchant"
description = "our own shop"
owner = "ops"
when = 'payment.merchant == "fraud_Trusted"'
action = "allow"

[[rule]]
id = "small-gas"
description = "card testing at gas stations"
owner = "ops"
when = 'payment.category == "gas_transport" && payment.amt < 2'
action = "review"
"#;

    fn decide<'s>(
        set: &'s RuleSet,
        card: &str,
        merchant: &str,
        category: &str,
        amt: f64,
        model: bool,
    ) -> (Outcome, Option<&'s str>) {
        let p = Payment {
            card: card.into(),
            merchant: merchant.into(),
            category: category.into(),
            amt,
            ..Payment::default()
        };
        let s = Subject {
            payment: &p,
            features: &[Some(3.0)],
            probability: 0.5,
            threshold: 0.8,
        };
        let d = set.decide(&s, &Blocked, model);
        (d.action, d.rule.map(|i| set.rules[i].id.as_str()))
    }

    #[test]
    fn alert_rules_beat_allow_rules_which_beat_the_model_which_beats_review_rules() {
        let set = rules(FILE).unwrap();
        assert!(
            set.version.starts_with("team@") && set.version.len() == 17,
            "{}",
            set.version
        );
        assert_eq!(set.lists, ["blocked_cards"]);
        assert!(set.reads_lists());
        assert_eq!(
            decide(&set, "stolen", "fraud_Trusted", "misc", 5.0, false),
            (Outcome::Alert, Some("block-list"))
        );
        assert_eq!(
            decide(&set, "ok", "fraud_Trusted", "misc", 5.0, true),
            (Outcome::Allow, Some("trusted-merchant"))
        );
        assert_eq!(
            decide(&set, "ok", "m", "gas_transport", 1.0, true),
            (Outcome::Alert, None)
        );
        assert_eq!(
            decide(&set, "ok", "m", "gas_transport", 1.0, false),
            (Outcome::Review, Some("small-gas"))
        );
        assert_eq!(
            decide(&set, "ok", "m", "misc", 1.0, false),
            (Outcome::None, None)
        );
    }

    #[test]
    fn the_shipped_rules_files_compile_for_the_default_model() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let spec = std::fs::read(root.join("model/default/feature_spec.json")).unwrap();
        let columns = crate::transform::FeatureSpec::parse(&spec).unwrap().columns;
        for file in ["rules/example.toml", "benches/rules-20.toml"] {
            let set = RuleSet::load(&root.join(file), &columns).expect(file);
            assert!(!set.rules.is_empty(), "{file}");
        }
    }

    #[test]
    fn a_bad_rules_file_is_bad_input_naming_the_file_and_the_rule() {
        let cases: [(String, &str); 7] = [
            ("[[rule]]\nid = \"x\"\n".into(), "missing field"),
            (
                FILE.replace("small-gas", "block-list"),
                "rule block-list is defined twice",
            ),
            (
                FILE.replace("id = \"small-gas\"", "id = \"Small Gas\""),
                "rule id \"Small Gas\"",
            ),
            (
                FILE.replace("payment.amt < 2", "payment.amount < 2"),
                "rule small-gas: `when`: payment.amount: no such payment field",
            ),
            (
                FILE.replace("action = \"review\"", "action = \"block\""),
                "unknown variant `block`",
            ),
            (
                FILE.replace("owner = \"ops\"", "owner = \"\""),
                "owner must be a line of text",
            ),
            (format!("{FILE}\ncolour = 1\n"), "unknown field `colour`"),
        ];
        for (text, says) in cases {
            let err = format!("{:#}", rules(&text).err().expect(says));
            assert!(
                err.contains("rules file") && err.contains("team.toml") && err.contains(says),
                "{says}: {err}"
            );
        }
    }
}
