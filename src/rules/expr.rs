//! A rule's condition: a CEL expression (parsed by the `cel` crate), checked and compiled once
//! into a tree of typed nodes that reads a payment without allocating.
//!
//! What a condition may use: literals (numbers, strings, `true`, `false`, `null`, lists of
//! literals), `payment.<field>`, `features.<column>` (the model's numeric inputs by name),
//! `model.probability` and `model.threshold`, `lists.<name>` (a list of the lists table, only
//! after `in`); `&&`, `||`, `!`, `? :`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`,
//! unary `-`, `in`, and the string methods `startsWith`, `endsWith` and `contains`. Anything
//! else of CEL (macros, maps, timestamps, …) is refused when the rules are loaded, naming it.
//!
//! Two departures from strict CEL, both for analysts: every number is a number (`payment.amt >
//! 900` and `> 900.0` are the same), and a missing feature value (`null`, e.g. the time since a
//! card's previous payment for its first one) makes an ordering comparison false and arithmetic
//! `null` instead of an error; `features.x == null` tests for it.

use std::borrow::Cow;

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue};

/// A payment as a condition reads it.
pub struct Subject<'a> {
    pub payment: &'a Payment<'a>,
    /// The model's inputs, in the spec's column order (`None`: missing).
    pub features: &'a [Option<f64>],
    pub probability: f64,
    pub threshold: f64,
}

/// The payment fields a condition may name (`payment.<field>`), read from the scored record's
/// transaction (borrowed unless the JSON escapes a character).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Payment<'a> {
    #[serde(borrow)]
    pub trans_num: Cow<'a, str>,
    pub trans_time_ms: i64,
    /// The card's keyed hash (what the lists hold for a card).
    #[serde(borrow, rename = "cc_hash")]
    pub card: Cow<'a, str>,
    #[serde(borrow, rename = "cc_last4")]
    pub card_last4: Cow<'a, str>,
    #[serde(borrow)]
    pub merchant: Cow<'a, str>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    pub amt: f64,
    #[serde(borrow)]
    pub gender: Cow<'a, str>,
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    pub city_pop: f64,
    pub merch_lat: f64,
    pub merch_long: f64,
}

/// The string fields and the numeric fields of [`Payment`], by the name a condition uses.
type Text = for<'p> fn(&'p Payment<'_>) -> &'p str;
const STRINGS: [(&str, Text); 8] = [
    ("trans_num", |p| &p.trans_num),
    ("card", |p| &p.card),
    ("card_last4", |p| &p.card_last4),
    ("merchant", |p| &p.merchant),
    ("category", |p| &p.category),
    ("gender", |p| &p.gender),
    ("city", |p| &p.city),
    ("state", |p| &p.state),
];
type Number = fn(&Payment) -> f64;
const NUMBERS: [(&str, Number); 5] = [
    ("amt", |p| p.amt),
    ("city_pop", |p| p.city_pop),
    ("merch_lat", |p| p.merch_lat),
    ("merch_long", |p| p.merch_long),
    ("time_ms", |p| p.trans_time_ms as f64),
];

/// The names a condition may use: the feature columns (by index), and the lists named so far
/// by the rule set's conditions (a new name is added: a list is whatever entries it has).
pub struct Names<'a> {
    pub features: &'a [String],
    pub lists: &'a mut Vec<String>,
}

/// The lists' entries, by the index [`Names::lists`] gave each name.
pub trait Lists {
    fn holds(&self, list: usize, value: &str) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Bool,
    Num,
    Str,
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Null,
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy)]
enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    root: Node,
    /// Whether it reads a list.
    pub reads_lists: bool,
}

#[derive(Debug)]
enum Node {
    Bool(bool),
    Num(f64),
    Str(String),
    Null,
    PaymentStr(Text),
    PaymentNum(Number),
    Feature(usize),
    Probability,
    Threshold,
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    If(Box<[Node; 3]>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    StrCall(StrFn, Box<Node>, Box<Node>),
    InList(Box<Node>, usize),
    InStrs(Box<Node>, Vec<String>),
    InNums(Box<Node>, Vec<f64>),
}

impl Condition {
    /// Parses and checks `source`; the error says what is wrong in the analyst's terms.
    pub fn compile(source: &str, names: &mut Names) -> Result<Condition, String> {
        let ast = cel::parser::Parser::new()
            .parse(source)
            .map_err(|e| e.to_string())?;
        let mut compiler = Compiler {
            names,
            reads_lists: false,
        };
        let (root, ty) = compiler.node(&ast)?;
        if ty != Ty::Bool {
            return Err(format!("the condition is a {ty:?}, not true or false"));
        }
        Ok(Condition {
            root,
            reads_lists: compiler.reads_lists,
        })
    }

    /// Whether the condition holds for `s`.
    pub fn matches(&self, s: &Subject, lists: &impl Lists) -> bool {
        self.root.eval(s, lists) == Value::Bool(true)
    }
}

struct Compiler<'n, 'a> {
    names: &'n mut Names<'a>,
    reads_lists: bool,
}

type Compiled = Result<(Node, Ty), String>;

impl Compiler<'_, '_> {
    fn node(&mut self, e: &IdedExpr) -> Compiled {
        match &e.expr {
            Expr::Literal(l) => literal(l),
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(root) if !s.test => self.variable(root, &s.field),
                _ => Err(format!("`{}` is not a field fraudctl knows", describe(e))),
            },
            Expr::Ident(name) => Err(format!(
                "`{name}` alone: name a field, as `payment.amt`, `features.hour`, `model.probability`"
            )),
            Expr::Call(call) => self.call(call),
            Expr::List(_) => Err("a list literal is allowed only after `in`".into()),
            other => Err(format!("{} is not supported in fraudctl's rules", kind(other))),
        }
    }

    fn variable(&mut self, root: &str, field: &str) -> Compiled {
        let unknown = |what: &str, known: Vec<&str>| {
            Err(format!(
                "{root}.{field}: no such {what} (known: {})",
                known.join(", ")
            ))
        };
        match root {
            "payment" => {
                if let Some((_, get)) = STRINGS.iter().find(|(n, _)| *n == field) {
                    return Ok((Node::PaymentStr(*get), Ty::Str));
                }
                if let Some((_, get)) = NUMBERS.iter().find(|(n, _)| *n == field) {
                    return Ok((Node::PaymentNum(*get), Ty::Num));
                }
                let known = STRINGS
                    .iter()
                    .map(|s| s.0)
                    .chain(NUMBERS.iter().map(|n| n.0));
                unknown("payment field", known.collect())
            }
            "features" => match self.names.features.iter().position(|c| c == field) {
                Some(i) => Ok((Node::Feature(i), Ty::Num)),
                None => unknown(
                    "feature of the model",
                    self.names
                        .features
                        .iter()
                        .map(String::as_str)
                        .filter(|c| is_identifier(c))
                        .collect(),
                ),
            },
            "model" => match field {
                "probability" => Ok((Node::Probability, Ty::Num)),
                "threshold" => Ok((Node::Threshold, Ty::Num)),
                _ => unknown("model value", vec!["probability", "threshold"]),
            },
            "lists" => Err(format!(
                "lists.{field} can only follow `in`, as `payment.card in lists.{field}`"
            )),
            _ => Err(format!(
                "`{root}` is not known: use payment, features, model or lists"
            )),
        }
    }

    fn call(&mut self, c: &CallExpr) -> Compiled {
        use cel::common::ast::operators as op;
        if let Some(target) = &c.target {
            return self.method(&c.func_name, target, &c.args);
        }
        let name = c.func_name.as_str();
        match (name, c.args.as_slice()) {
            (op::LOGICAL_AND | op::LOGICAL_OR, [first, rest @ ..]) if !rest.is_empty() => {
                let mut acc = self.typed(first, Ty::Bool)?;
                for next in rest {
                    let next = Box::new(self.typed(next, Ty::Bool)?);
                    acc = match name {
                        op::LOGICAL_AND => Node::And(Box::new(acc), next),
                        _ => Node::Or(Box::new(acc), next),
                    };
                }
                Ok((acc, Ty::Bool))
            }
            (op::LOGICAL_NOT, [x]) => Ok((Node::Not(Box::new(self.typed(x, Ty::Bool)?)), Ty::Bool)),
            (op::NEGATE, [x]) => Ok((Node::Neg(Box::new(self.typed(x, Ty::Num)?)), Ty::Num)),
            (op::CONDITIONAL, [cond, yes, no]) => {
                let cond = self.typed(cond, Ty::Bool)?;
                let ((yes, a), (no, b)) = (self.node(yes)?, self.node(no)?);
                if a != b && a != Ty::Null && b != Ty::Null {
                    return Err(format!(
                        "`? :` gives a {a:?} or a {b:?}: both sides must agree"
                    ));
                }
                Ok((
                    Node::If(Box::new([cond, yes, no])),
                    if a == Ty::Null { b } else { a },
                ))
            }
            (op::IN, [item, set]) => self.membership(item, set),
            (_, [a, b]) => match (comparison(name), arithmetic(name)) {
                (Some(cmp), _) => self.compare(cmp, a, b),
                (_, Some(arith)) => {
                    let (a, b) = (self.typed(a, Ty::Num)?, self.typed(b, Ty::Num)?);
                    Ok((Node::Arith(arith, Box::new(a), Box::new(b)), Ty::Num))
                }
                _ => Err(format!(
                    "`{}` is not supported in fraudctl's rules",
                    shown(name)
                )),
            },
            _ => Err(format!(
                "`{}` is not supported in fraudctl's rules",
                shown(name)
            )),
        }
    }

    fn compare(&mut self, cmp: Cmp, a: &IdedExpr, b: &IdedExpr) -> Compiled {
        let ((a, ta), (b, tb)) = (self.node(a)?, self.node(b)?);
        let ordering = !matches!(cmp, Cmp::Eq | Cmp::Ne);
        let fits = match (ta, tb) {
            (Ty::Null, _) | (_, Ty::Null) => !ordering,
            (x, y) => x == y && !(ordering && x == Ty::Bool),
        };
        if !fits {
            return Err(format!("cannot compare a {ta:?} with a {tb:?} that way"));
        }
        Ok((Node::Cmp(cmp, Box::new(a), Box::new(b)), Ty::Bool))
    }

    fn membership(&mut self, item: &IdedExpr, set: &IdedExpr) -> Compiled {
        let (item, ty) = self.node(item)?;
        let node = match (&set.expr, ty) {
            (Expr::Select(s), Ty::Str) if matches!(&s.operand.expr, Expr::Ident(r) if r == "lists") =>
            {
                let lists = &mut *self.names.lists;
                let i = lists.iter().position(|l| *l == s.field).unwrap_or_else(|| {
                    lists.push(s.field.clone());
                    lists.len() - 1
                });
                self.reads_lists = true;
                Node::InList(Box::new(item), i)
            }
            (Expr::List(list), Ty::Str) => {
                let strs = list.elements.iter().map(|e| match &e.expr {
                    Expr::Literal(LiteralValue::String(s)) => Ok(s.inner().to_string()),
                    _ => Err("a list after `in` a string holds strings only".to_string()),
                });
                Node::InStrs(Box::new(item), strs.collect::<Result<_, _>>()?)
            }
            (Expr::List(list), Ty::Num) => {
                let nums = list.elements.iter().map(|e| match literal_num(&e.expr) {
                    Some(n) => Ok(n),
                    None => Err("a list after `in` a number holds numbers only".to_string()),
                });
                Node::InNums(Box::new(item), nums.collect::<Result<_, _>>()?)
            }
            _ => return Err("`in` takes a string or a number, then a list or lists.<name>".into()),
        };
        Ok((node, Ty::Bool))
    }

    fn method(&mut self, name: &str, target: &IdedExpr, args: &[IdedExpr]) -> Compiled {
        let f = match name {
            "startsWith" => StrFn::StartsWith,
            "endsWith" => StrFn::EndsWith,
            "contains" => StrFn::Contains,
            _ => return Err(format!("`.{name}()` is not supported in fraudctl's rules")),
        };
        let [arg] = args else {
            return Err(format!("`.{name}()` takes one string"));
        };
        let (s, arg) = (self.typed(target, Ty::Str)?, self.typed(arg, Ty::Str)?);
        Ok((Node::StrCall(f, Box::new(s), Box::new(arg)), Ty::Bool))
    }

    fn typed(&mut self, e: &IdedExpr, want: Ty) -> Result<Node, String> {
        let (node, ty) = self.node(e)?;
        if ty != want {
            return Err(format!(
                "`{}` is a {ty:?} where a {want:?} is needed",
                describe(e)
            ));
        }
        Ok(node)
    }
}

impl Node {
    fn eval<'a>(&'a self, s: &Subject<'a>, lists: &impl Lists) -> Value<'a> {
        match self {
            Node::Bool(b) => Value::Bool(*b),
            Node::Num(n) => Value::Num(*n),
            Node::Str(t) => Value::Str(t),
            Node::Null => Value::Null,
            Node::PaymentStr(get) => Value::Str(get(s.payment)),
            Node::PaymentNum(get) => Value::Num(get(s.payment)),
            Node::Feature(i) => s
                .features
                .get(*i)
                .copied()
                .flatten()
                .map_or(Value::Null, Value::Num),
            Node::Probability => Value::Num(s.probability),
            Node::Threshold => Value::Num(s.threshold),
            Node::Not(x) => Value::Bool(!x.truth(s, lists)),
            Node::Neg(x) => match x.eval(s, lists) {
                Value::Num(n) => Value::Num(-n),
                _ => Value::Null,
            },
            Node::And(a, b) => Value::Bool(a.truth(s, lists) && b.truth(s, lists)),
            Node::Or(a, b) => Value::Bool(a.truth(s, lists) || b.truth(s, lists)),
            Node::If(parts) => {
                let [cond, yes, no] = &**parts;
                if cond.truth(s, lists) {
                    yes.eval(s, lists)
                } else {
                    no.eval(s, lists)
                }
            }
            Node::Cmp(cmp, a, b) => {
                Value::Bool(compare(*cmp, &a.eval(s, lists), &b.eval(s, lists)))
            }
            Node::Arith(op, a, b) => match (a.eval(s, lists), b.eval(s, lists)) {
                (Value::Num(x), Value::Num(y)) => Value::Num(match op {
                    Arith::Add => x + y,
                    Arith::Sub => x - y,
                    Arith::Mul => x * y,
                    Arith::Div => x / y,
                }),
                _ => Value::Null,
            },
            Node::StrCall(f, a, b) => match (a.eval(s, lists), b.eval(s, lists)) {
                (Value::Str(x), Value::Str(y)) => Value::Bool(match f {
                    StrFn::StartsWith => x.starts_with(y),
                    StrFn::EndsWith => x.ends_with(y),
                    StrFn::Contains => x.contains(y),
                }),
                _ => Value::Bool(false),
            },
            Node::InList(x, list) => match x.eval(s, lists) {
                Value::Str(v) => Value::Bool(lists.holds(*list, v)),
                _ => Value::Bool(false),
            },
            Node::InStrs(x, set) => match x.eval(s, lists) {
                Value::Str(v) => Value::Bool(set.iter().any(|e| e == v)),
                _ => Value::Bool(false),
            },
            Node::InNums(x, set) => match x.eval(s, lists) {
                Value::Num(v) => Value::Bool(set.contains(&v)),
                _ => Value::Bool(false),
            },
        }
    }

    fn truth(&self, s: &Subject, lists: &impl Lists) -> bool {
        self.eval(s, lists) == Value::Bool(true)
    }
}

/// A comparison; a missing value (`null`) is equal only to `null`, and never ordered.
fn compare(cmp: Cmp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let order = match (a, b) {
        (Value::Num(x), Value::Num(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (cmp, order) {
        (Cmp::Eq, o) => o == Some(Ordering::Equal),
        (Cmp::Ne, o) => o != Some(Ordering::Equal),
        (_, _) if matches!(a, Value::Null) || matches!(b, Value::Null) => false,
        (Cmp::Lt, Some(o)) => o == Ordering::Less,
        (Cmp::Le, Some(o)) => o != Ordering::Greater,
        (Cmp::Gt, Some(o)) => o == Ordering::Greater,
        (Cmp::Ge, Some(o)) => o != Ordering::Less,
        (_, None) => false,
    }
}

fn literal(l: &LiteralValue) -> Compiled {
    Ok(match l {
        LiteralValue::Boolean(b) => (Node::Bool(*b.inner()), Ty::Bool),
        LiteralValue::String(s) => (Node::Str(s.inner().to_string()), Ty::Str),
        LiteralValue::Null => (Node::Null, Ty::Null),
        LiteralValue::Bytes(_) => return Err("bytes literals are not supported".into()),
        _ => (
            Node::Num(literal_num(&Expr::Literal(l.clone())).expect("a number")),
            Ty::Num,
        ),
    })
}

fn literal_num(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(LiteralValue::Int(i)) => Some(*i.inner() as f64),
        Expr::Literal(LiteralValue::UInt(u)) => Some(*u.inner() as f64),
        Expr::Literal(LiteralValue::Double(d)) => Some(*d.inner()),
        _ => None,
    }
}

fn comparison(name: &str) -> Option<Cmp> {
    use cel::common::ast::operators as op;
    Some(match name {
        op::EQUALS => Cmp::Eq,
        op::NOT_EQUALS => Cmp::Ne,
        op::LESS => Cmp::Lt,
        op::LESS_EQUALS => Cmp::Le,
        op::GREATER => Cmp::Gt,
        op::GREATER_EQUALS => Cmp::Ge,
        _ => return None,
    })
}

fn arithmetic(name: &str) -> Option<Arith> {
    use cel::common::ast::operators as op;
    Some(match name {
        op::ADD => Arith::Add,
        op::SUBSTRACT => Arith::Sub,
        op::MULTIPLY => Arith::Mul,
        op::DIVIDE => Arith::Div,
        _ => return None,
    })
}

/// An operator's name as written (`_%_` → `%`), else the function's.
fn shown(name: &str) -> &str {
    name.trim_matches('_').trim_start_matches('@')
}

fn kind(e: &Expr) -> &'static str {
    match e {
        Expr::Comprehension(_) => "a macro (all, exists, map, filter, has)",
        Expr::Map(_) => "a map literal",
        Expr::Struct(_) => "a message literal",
        _ => "this expression",
    }
}

/// A short text of an expression for messages: its dotted name when it has one.
fn describe(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Ident(n) => n.clone(),
        Expr::Select(s) => format!("{}.{}", describe(&s.operand), s.field),
        Expr::Literal(LiteralValue::String(s)) => format!("{:?}", s.inner()),
        Expr::Literal(l) => {
            literal_num(&Expr::Literal(l.clone())).map_or("a literal".into(), |n| n.to_string())
        }
        Expr::Call(c) => format!("the `{}` expression", shown(&c.func_name)),
        _ => "an expression".into(),
    }
}

/// Whether a feature column's name can be written `features.<name>`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneList;
    impl Lists for OneList {
        fn holds(&self, list: usize, value: &str) -> bool {
            list == 0 && value == "blocked-card-hash"
        }
    }

    fn check(source: &str, payment: &Payment, features: &[Option<f64>]) -> Result<bool, String> {
        let columns = [
            "hour".to_string(),
            "card_secs_since_prev".to_string(),
            "category=misc_net".to_string(),
        ];
        let mut lists = vec!["blocked_cards".to_string()];
        let mut names = Names {
            features: &columns,
            lists: &mut lists,
        };
        let c = Condition::compile(source, &mut names)?;
        let s = Subject {
            payment,
            features,
            probability: 0.3,
            threshold: 0.8,
        };
        Ok(c.matches(&s, &OneList))
    }

    fn payment() -> Payment<'static> {
        Payment {
            trans_num: "t1".into(),
            card: "blocked-card-hash".into(),
            category: "shopping_net".into(),
            merchant: "fraud_Kilback LLC".into(),
            amt: 950.0,
            ..Payment::default()
        }
    }

    #[test]
    fn conditions_read_the_payment_its_features_the_model_and_the_lists() {
        let p = payment();
        let f = [Some(3.0), None, Some(0.0)];
        for (source, expected) in [
            (
                r#"payment.category == "shopping_net" && payment.amt > 900 && features.hour < 5"#,
                true,
            ),
            (
                r#"payment.category == "shopping_net" && payment.amt > 1000.0"#,
                false,
            ),
            ("payment.card in lists.blocked_cards", true),
            (
                r#"payment.merchant.startsWith("fraud_") && !(payment.category in ["gas_transport", "grocery_pos"])"#,
                true,
            ),
            (
                "model.probability >= model.threshold || payment.amt * 2.0 > 1800",
                true,
            ),
            ("features.card_secs_since_prev < 60", false),
            ("features.card_secs_since_prev == null", true),
            (
                "features.card_secs_since_prev != null && features.card_secs_since_prev < 60",
                false,
            ),
            ("(features.hour < 6 ? payment.amt : 0) > 500", true),
            ("features.hour in [1, 2, 3]", true),
        ] {
            assert_eq!(check(source, &p, &f), Ok(expected), "{source}");
        }
    }

    #[test]
    fn what_cannot_be_evaluated_is_refused_when_compiled_naming_it() {
        let p = payment();
        for (source, says) in [
            (
                "payment.amount > 10",
                "payment.amount: no such payment field (known: trans_num, card",
            ),
            (
                "features.colour > 1",
                "features.colour: no such feature of the model (known: hour, card_secs_since_prev)",
            ),
            ("payment.category > 3", "cannot compare a Str with a Num"),
            ("payment.amt", "the condition is a Num"),
            ("lists.blocked_cards == 1", "can only follow `in`"),
            ("payment.amt % 2 == 0", "`%` is not supported"),
            ("[1, 2].all(x, x > 0)", "a macro"),
            ("payment.amt >", "ERROR"),
            ("amt > 3", "`amt` alone"),
        ] {
            let err = check(source, &p, &[]).unwrap_err();
            assert!(err.contains(says), "{source}: {err}");
        }
    }
}
