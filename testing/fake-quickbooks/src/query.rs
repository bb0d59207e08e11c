//! The subset of QBO's SQL-like query language that the sync uses, parsed strictly.
//!
//! Grammar (keywords case-insensitive):
//!
//! ```text
//! SELECT (* | COUNT(*)) FROM Customer
//!   [WHERE cond [AND cond]*]
//!   [ORDERBY field [ASC|DESC] [, field [ASC|DESC]]*]
//!   [STARTPOSITION n] [MAXRESULTS m]            -- in either order
//! cond := field (= | < | > | <= | >= | LIKE) literal | field IN (literal, ...)
//! ```
//!
//! Anything else is refused the way QBO refuses it: a parse problem is code 4000
//! ("Error parsing query"), a well-formed query asking for something invalid (an
//! unknown property, `MAXRESULTS 1001`, a value of the wrong type) is 4001
//! ("Invalid query"). QBO has no `OR`; it is a parse error there and here.

use std::cell::OnceCell;
use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::store::{parse_timestamp, Store, Stored};

/// QBO refuses `MAXRESULTS` above this.
pub const MAX_RESULTS_LIMIT: u64 = 1000;
/// QBO's page size when `MAXRESULTS` is absent.
pub const DEFAULT_MAX_RESULTS: u64 = 100;

/// A refused query, rendered by the server as a 400 `ValidationFault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: &'static str,
    pub detail: String,
}

impl QueryError {
    fn parse(detail: impl Into<String>) -> Self {
        QueryError { code: "4000", message: "Error parsing query", detail: detail.into() }
    }
    fn invalid(detail: impl Into<String>) -> Self {
        QueryError { code: "4001", message: "Invalid query", detail: detail.into() }
    }
}

/// How a property's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Ids are strings in JSON but compare as numbers.
    Id,
    Text,
    Bool,
    Number,
    Time,
}

/// A queryable Customer property: its canonical name and where it lives in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    path: &'static [&'static str],
    kind: Kind,
}

const FIELDS: &[Field] = &[
    Field { name: "Id", path: &["Id"], kind: Kind::Id },
    Field { name: "Active", path: &["Active"], kind: Kind::Bool },
    Field { name: "DisplayName", path: &["DisplayName"], kind: Kind::Text },
    Field { name: "GivenName", path: &["GivenName"], kind: Kind::Text },
    Field { name: "MiddleName", path: &["MiddleName"], kind: Kind::Text },
    Field { name: "FamilyName", path: &["FamilyName"], kind: Kind::Text },
    Field { name: "CompanyName", path: &["CompanyName"], kind: Kind::Text },
    Field { name: "FullyQualifiedName", path: &["FullyQualifiedName"], kind: Kind::Text },
    Field { name: "PrintOnCheckName", path: &["PrintOnCheckName"], kind: Kind::Text },
    Field { name: "PrimaryEmailAddr", path: &["PrimaryEmailAddr", "Address"], kind: Kind::Text },
    Field { name: "Balance", path: &["Balance"], kind: Kind::Number },
    Field { name: "BalanceWithJobs", path: &["BalanceWithJobs"], kind: Kind::Number },
    Field { name: "Job", path: &["Job"], kind: Kind::Bool },
    Field { name: "SyncToken", path: &["SyncToken"], kind: Kind::Id },
    Field { name: "MetaData.CreateTime", path: &["MetaData", "CreateTime"], kind: Kind::Time },
    Field { name: "MetaData.LastUpdatedTime", path: &["MetaData", "LastUpdatedTime"], kind: Kind::Time },
];

/// Property names are matched case-insensitively (QBO is lenient about them too).
fn lookup_field(name: &str) -> Option<Field> {
    FIELDS.iter().copied().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// A typed value, either from a literal or from a customer.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Number(f64),
    /// Lower-cased: QBO string comparisons are case-insensitive.
    Text(String),
    Bool(bool),
    Time(DateTime<FixedOffset>),
}

impl Typed {
    fn compare(&self, other: &Typed) -> Option<Ordering> {
        match (self, other) {
            (Typed::Number(a), Typed::Number(b)) => a.partial_cmp(b),
            (Typed::Text(a), Typed::Text(b)) => Some(a.cmp(b)),
            (Typed::Bool(a), Typed::Bool(b)) => Some(a.cmp(b)),
            (Typed::Time(a), Typed::Time(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
    In,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    values: Vec<Typed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    All,
    Count,
}

/// A parsed, validated query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    pub conditions: Vec<Condition>,
    /// `(field, descending)`.
    pub order: Vec<(Field, bool)>,
    /// 1-based.
    pub start_position: u64,
    pub max_results: u64,
}

// ---------------------------------------------------------------------------
// Tokenizer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Star,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(n) => n.clone(),
            Tok::Star => "*".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Op(o) => (*o).into(),
        }
    }
}

/// Tokens with their 1-based column, for QBO-like error details.
fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            '*' => Some(Tok::Star),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Op("=")),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push((tok, col));
            i += 1;
        } else if c == '<' || c == '>' {
            let (tok, len) = match (c, chars.get(i + 1)) {
                ('<', Some('=')) => ("<=", 2),
                ('>', Some('=')) => (">=", 2),
                ('<', _) => ("<", 1),
                _ => (">", 1),
            };
            out.push((Tok::Op(tok), col));
            i += len;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(QueryError::parse(format!(
                            "QueryParserError: Lexical error at line 1, column {}. Unterminated string starting at column {col}",
                            chars.len() + 1
                        )))
                    }
                    Some('\\') if chars.get(i + 1) == Some(&'\'') || chars.get(i + 1) == Some(&'\\') => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), col));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            if n.matches('.').count() > 1 || n.ends_with('.') {
                return Err(QueryError::parse(format!(
                    "QueryParserError: Encountered \"{n}\" at line 1, column {col}."
                )));
            }
            out.push((Tok::Num(n), col));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), col));
        } else {
            return Err(QueryError::parse(format!(
                "QueryParserError: Lexical error at line 1, column {col}. Encountered: \"{c}\""
            )));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Parser

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn unexpected(&self) -> QueryError {
        match self.toks.get(self.pos) {
            Some((tok, col)) => {
                let shown = tok.describe();
                if matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case("or")) {
                    QueryError::parse(format!(
                        "QueryParserError: Encountered \" <OR> \"{shown} \"\" at line 1, column {col}. OR is not supported"
                    ))
                } else {
                    QueryError::parse(format!("QueryParserError: Encountered \"{shown}\" at line 1, column {col}."))
                }
            }
            None => QueryError::parse(format!(
                "QueryParserError: Encountered \"<EOF>\" at line 1, column {}.",
                self.end_col
            )),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let yes = self.is_keyword(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), QueryError> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn field(&mut self) -> Result<Field, QueryError> {
        match self.peek() {
            Some(Tok::Word(w)) if !is_reserved(w) => {
                let name = w.clone();
                self.pos += 1;
                lookup_field(&name).ok_or_else(|| {
                    QueryError::invalid(format!("QueryValidationError: property '{name}' is not queryable"))
                })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self) -> Result<Literal, QueryError> {
        let lit = match self.peek() {
            Some(Tok::Str(s)) => Literal::Str(s.clone()),
            Some(Tok::Num(n)) => Literal::Num(n.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn number(&mut self, what: &str) -> Result<u64, QueryError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let n = n.clone();
                let value = n
                    .parse::<u64>()
                    .map_err(|_| QueryError::invalid(format!("QueryValidationError: {what} value {n} is not valid")))?;
                self.pos += 1;
                Ok(value)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn condition(&mut self) -> Result<Condition, QueryError> {
        let field = self.field()?;
        let op = match self.next() {
            Some(Tok::Op("=")) => Op::Eq,
            Some(Tok::Op("<")) => Op::Lt,
            Some(Tok::Op(">")) => Op::Gt,
            Some(Tok::Op("<=")) => Op::Le,
            Some(Tok::Op(">=")) => Op::Ge,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => Op::In,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected());
            }
        };
        let literals = if op == Op::In {
            self.expect(Tok::LParen)?;
            let mut list = vec![self.literal()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                list.push(self.literal()?);
            }
            self.expect(Tok::RParen)?;
            list
        } else {
            vec![self.literal()?]
        };
        if op == Op::Like && field.kind != Kind::Text {
            return Err(QueryError::invalid(format!(
                "QueryValidationError: LIKE is not supported for property '{}'",
                field.name
            )));
        }
        let values = literals.into_iter().map(|l| l.typed(field, op)).collect::<Result<Vec<_>, _>>()?;
        Ok(Condition { field, op, values })
    }
}

const RESERVED: &[&str] = &[
    "select",
    "from",
    "where",
    "and",
    "or",
    "orderby",
    "order",
    "by",
    "asc",
    "desc",
    "startposition",
    "maxresults",
    "in",
    "like",
    "count",
    "true",
    "false",
    "not",
];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

enum Literal {
    Str(String),
    Num(String),
    Bool(bool),
}

impl Literal {
    fn shown(&self) -> String {
        match self {
            Literal::Str(s) => format!("'{s}'"),
            Literal::Num(n) => n.clone(),
            Literal::Bool(b) => b.to_string(),
        }
    }

    /// Converts the literal to the field's type; QBO is lenient about quoting
    /// (`Active = 'true'`, `Id = 5`), strict about meaning (a bad date is refused).
    fn typed(self, field: Field, op: Op) -> Result<Typed, QueryError> {
        let bad = |lit: &Literal| {
            QueryError::invalid(format!(
                "QueryValidationError: value {} is not valid for property '{}'",
                lit.shown(),
                field.name
            ))
        };
        if op == Op::Like {
            return match &self {
                Literal::Str(s) => Ok(Typed::Text(s.to_lowercase())),
                _ => Err(bad(&self)),
            };
        }
        let typed = match (field.kind, &self) {
            (Kind::Id | Kind::Number, Literal::Num(n) | Literal::Str(n)) => {
                n.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Typed::Number)
            }
            (Kind::Text, Literal::Str(s) | Literal::Num(s)) => Some(Typed::Text(s.to_lowercase())),
            (Kind::Bool, Literal::Bool(b)) => Some(Typed::Bool(*b)),
            (Kind::Bool, Literal::Str(s)) => match s.to_ascii_lowercase().as_str() {
                "true" => Some(Typed::Bool(true)),
                "false" => Some(Typed::Bool(false)),
                _ => None,
            },
            (Kind::Time, Literal::Str(s)) => parse_timestamp(s).map(Typed::Time),
            _ => None,
        };
        typed.ok_or_else(|| bad(&self))
    }
}

/// Parses and validates a query text.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let toks = tokenize(text)?;
    let mut p = Parser { toks, pos: 0, end_col: text.chars().count() + 1 };

    p.expect_keyword("select")?;
    let select = if p.peek() == Some(&Tok::Star) {
        p.pos += 1;
        Select::All
    } else if p.eat_keyword("count") {
        p.expect(Tok::LParen)?;
        p.expect(Tok::Star)?;
        p.expect(Tok::RParen)?;
        Select::Count
    } else if matches!(p.peek(), Some(Tok::Word(w)) if !is_reserved(w)) {
        return Err(QueryError::invalid("QueryValidationError: this fake only supports SELECT * and SELECT COUNT(*)"));
    } else {
        return Err(p.unexpected());
    };

    p.expect_keyword("from")?;
    match p.next() {
        Some(Tok::Word(entity)) if entity.eq_ignore_ascii_case("customer") => {}
        Some(Tok::Word(entity)) if !is_reserved(&entity) => {
            return Err(QueryError::invalid(format!(
                "QueryValidationError: entity '{entity}' is not supported by this fake"
            )))
        }
        _ => {
            p.pos -= 1;
            return Err(p.unexpected());
        }
    }

    let mut conditions = Vec::new();
    if p.eat_keyword("where") {
        conditions.push(p.condition()?);
        while p.eat_keyword("and") {
            conditions.push(p.condition()?);
        }
    }

    let mut order = Vec::new();
    let orderby = if p.eat_keyword("orderby") {
        true
    } else if p.is_keyword("order") {
        p.pos += 1;
        p.expect_keyword("by")?;
        true
    } else {
        false
    };
    if orderby {
        loop {
            let field = p.field()?;
            let desc = if p.eat_keyword("desc") {
                true
            } else {
                p.eat_keyword("asc");
                false
            };
            order.push((field, desc));
            if p.peek() == Some(&Tok::Comma) {
                p.pos += 1;
            } else {
                break;
            }
        }
    }

    let mut start_position = None;
    let mut max_results = None;
    loop {
        if start_position.is_none() && p.eat_keyword("startposition") {
            let n = p.number("STARTPOSITION")?;
            if n == 0 {
                return Err(QueryError::invalid("QueryValidationError: STARTPOSITION must be at least 1"));
            }
            start_position = Some(n);
        } else if max_results.is_none() && p.eat_keyword("maxresults") {
            let n = p.number("MAXRESULTS")?;
            if n > MAX_RESULTS_LIMIT {
                return Err(QueryError::invalid(format!(
                    "QueryValidationError: value {n} is too large. Max allowed value is {MAX_RESULTS_LIMIT}"
                )));
            }
            if n == 0 {
                return Err(QueryError::invalid("QueryValidationError: MAXRESULTS must be at least 1"));
            }
            max_results = Some(n);
        } else {
            break;
        }
    }

    if p.peek().is_some() {
        return Err(p.unexpected());
    }

    Ok(Query {
        select,
        conditions,
        order,
        start_position: start_position.unwrap_or(1),
        max_results: max_results.unwrap_or(DEFAULT_MAX_RESULTS),
    })
}

// ---------------------------------------------------------------------------
// Evaluation

fn value_at<'a>(customer: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = customer.get(*first)?;
    for key in rest {
        v = v.get(key)?;
    }
    Some(v)
}

fn customer_value(customer: &Map<String, Value>, field: Field) -> Option<Typed> {
    let v = value_at(customer, field.path)?;
    match field.kind {
        Kind::Id | Kind::Number => match v {
            Value::Number(n) => n.as_f64().map(Typed::Number),
            Value::String(s) => s.trim().parse::<f64>().ok().map(Typed::Number),
            _ => None,
        },
        Kind::Text => match v {
            Value::String(s) => Some(Typed::Text(s.to_lowercase())),
            Value::Number(n) => Some(Typed::Text(n.to_string())),
            _ => None,
        },
        Kind::Bool => v.as_bool().map(Typed::Bool),
        Kind::Time => v.as_str().and_then(parse_timestamp).map(Typed::Time),
    }
}

/// A stored customer being matched: the indexed fields are read without
/// parsing; the body is parsed once, only if another field is asked for.
struct Row<'a> {
    stored: &'a Stored,
    body: OnceCell<Map<String, Value>>,
}

impl<'a> Row<'a> {
    fn new(stored: &'a Stored) -> Self {
        Row { stored, body: OnceCell::new() }
    }

    fn value(&self, field: Field) -> Option<Typed> {
        match field.name {
            "Active" => Some(Typed::Bool(self.stored.active)),
            "MetaData.LastUpdatedTime" => {
                chrono::DateTime::from_timestamp(self.stored.updated, 0).map(|t| Typed::Time(t.fixed_offset()))
            }
            _ => customer_value(self.body.get_or_init(|| self.stored.body()), field),
        }
    }
}

/// `%` matches any run of characters; everything else literally.
fn like(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

impl Condition {
    fn matches(&self, row: &Row<'_>) -> bool {
        let Some(actual) = row.value(self.field) else {
            return false;
        };
        let cmp = |v: &Typed| actual.compare(v);
        match self.op {
            Op::Eq => cmp(&self.values[0]) == Some(Ordering::Equal),
            Op::Lt => cmp(&self.values[0]) == Some(Ordering::Less),
            Op::Gt => cmp(&self.values[0]) == Some(Ordering::Greater),
            Op::Le => matches!(cmp(&self.values[0]), Some(Ordering::Less | Ordering::Equal)),
            Op::Ge => matches!(cmp(&self.values[0]), Some(Ordering::Greater | Ordering::Equal)),
            Op::In => self.values.iter().any(|v| cmp(v) == Some(Ordering::Equal)),
            Op::Like => match (&actual, &self.values[0]) {
                (Typed::Text(t), Typed::Text(p)) => like(t, p),
                _ => false,
            },
        }
    }
}

/// What a query answers.
pub(crate) enum Answer {
    Count(usize),
    /// The page's customers, as JSON texts.
    Page(Vec<String>),
}

impl Query {
    /// QBO hides inactive customers unless the query says something about `Active`.
    fn mentions_active(&self) -> bool {
        self.conditions.iter().any(|c| c.field.name == "Active")
    }

    fn keeps(&self, row: &Row<'_>) -> bool {
        (self.mentions_active() || row.stored.active) && self.conditions.iter().all(|c| c.matches(row))
    }

    /// The tightest lower bound the conditions put on LastUpdatedTime.
    fn updated_lower_bound(&self) -> Option<chrono::DateTime<FixedOffset>> {
        self.conditions
            .iter()
            .filter(|c| c.field.name == "MetaData.LastUpdatedTime" && matches!(c.op, Op::Ge | Op::Gt | Op::Eq))
            .filter_map(|c| match &c.values[0] {
                Typed::Time(t) => Some(*t),
                _ => None,
            })
            .max()
    }

    fn skip_take<'a>(&self, rows: impl Iterator<Item = &'a Stored>) -> Vec<String> {
        let start = usize::try_from(self.start_position.saturating_sub(1)).unwrap_or(usize::MAX);
        let len = usize::try_from(self.max_results).unwrap_or(usize::MAX);
        rows.filter(|s| self.keeps(&Row::new(s))).skip(start).take(len).map(|s| s.json.clone()).collect()
    }

    /// Answers the query. The sync's own queries (ordered by LastUpdatedTime,
    /// or not ordered) walk an index; any other order sorts the matches.
    pub(crate) fn execute(&self, store: &Store) -> Answer {
        let by_updated = matches!(self.order.as_slice(), [(f, false)] if f.name == "MetaData.LastUpdatedTime");
        match self.select {
            Select::Count => Answer::Count(store.in_internal_order().filter(|s| self.keeps(&Row::new(s))).count()),
            Select::All if by_updated => Answer::Page(self.skip_take(store.updated_since(self.updated_lower_bound()))),
            Select::All if self.order.is_empty() => Answer::Page(self.skip_take(store.in_internal_order())),
            Select::All => {
                let mut rows: Vec<Row<'_>> =
                    store.in_internal_order().map(Row::new).filter(|row| self.keeps(row)).collect();
                // Stable: ties keep the internal order.
                rows.sort_by(|a, b| {
                    for (field, desc) in &self.order {
                        let (va, vb) = (a.value(*field), b.value(*field));
                        // Missing values sort first, like NULLs.
                        let ord = match (&va, &vb) {
                            (None, None) => Ordering::Equal,
                            (None, Some(_)) => Ordering::Less,
                            (Some(_), None) => Ordering::Greater,
                            (Some(x), Some(y)) => x.compare(y).unwrap_or(Ordering::Equal),
                        };
                        let ord = if *desc { ord.reverse() } else { ord };
                        if ord != Ordering::Equal {
                            return ord;
                        }
                    }
                    Ordering::Equal
                });
                let start = usize::try_from(self.start_position.saturating_sub(1)).unwrap_or(usize::MAX);
                let len = usize::try_from(self.max_results).unwrap_or(usize::MAX);
                Answer::Page(rows.into_iter().skip(start).take(len).map(|r| r.stored.json.clone()).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(q: &str) -> Query {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e:?}"))
    }
    fn code(q: &str) -> &'static str {
        match parse(q) {
            Ok(parsed) => panic!("{q} parsed: {parsed:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn parses_the_supported_subset() {
        let q = ok("select * from Customer");
        assert_eq!((q.select, q.start_position, q.max_results), (Select::All, 1, 100));
        let q = ok("SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '2026-03-31T16:49:28-07:00' \
                    AND Active IN (true, false) ORDERBY MetaData.LastUpdatedTime, Id DESC \
                    STARTPOSITION 101 MAXRESULTS 1000");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[1].op, Op::In);
        assert_eq!(q.order.len(), 2);
        assert!(!q.order[0].1 && q.order[1].1);
        assert_eq!((q.start_position, q.max_results), (101, 1000));
        let q = ok("Select Count(*) From customer Where DisplayName LIKE '%O\\'Brien%'");
        assert_eq!(q.select, Select::Count);
        assert_eq!(q.conditions[0].values, vec![Typed::Text("%o'brien%".into())]);
        ok("SELECT * FROM Customer MAXRESULTS 5 STARTPOSITION 2");
        ok("SELECT * FROM Customer WHERE Balance < -0.5 AND Id = '5' AND Active = false");
        ok("SELECT * FROM Customer WHERE MetaData.CreateTime > '2026-03-31' ORDER BY Id ASC");
        ok("SELECT * FROM Customer WHERE MetaData.CreateTime > '2026-03-31T23:49:28Z'");
    }

    #[test]
    fn refuses_what_qbo_refuses() {
        assert_eq!(code("SELECT * FROM Customer WHERE Id = '1' OR Id = '2'"), "4000");
        assert_eq!(code("SELECT * FROM Customer WHERE Nickname = 'x'"), "4001");
        assert_eq!(code("SELECT * FROM Customer ORDERBY Nickname"), "4001");
        assert_eq!(code("SELECT * FROM Customer MAXRESULTS 1001"), "4001");
        assert_eq!(code("SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > 'yesterday'"), "4001");
        assert_eq!(code("SELECT * FROM Customer WHERE Balance LIKE '1%'"), "4001");
        assert_eq!(code("SELECT * FROM Invoice"), "4001");
        for garbage in [
            "",
            "   ",
            "SELECT",
            "SELECT * FROM",
            "DROP TABLE Customer",
            "SELECT * FROM Customer;",
            "SELECT * FROM Customer WHERE",
            "SELECT * FROM Customer WHERE Id =",
            "SELECT * FROM Customer WHERE Id = 'x",
            "SELECT * FROM Customer WHERE Id IN ()",
            "SELECT * FROM Customer WHERE Id IN ('1'",
            "SELECT * FROM Customer MAXRESULTS",
            "SELECT * FROM Customer MAXRESULTS -1",
            "SELECT * FROM Customer MAXRESULTS 1.5",
            "SELECT * FROM Customer STARTPOSITION 99999999999999999999999",
            "SELECT * FROM Customer MAXRESULTS 5 MAXRESULTS 5",
            "SELECT * FROM Customer WHERE Id != '1'",
            "SELECT * FROM Customer WHERE Id = 1..2",
            "SELECT * FROM Customer ORDERBY",
            "SELECT ** FROM Customer",
            "SELECT * FROM Customer WHERE 'a' = Id",
            "\u{0}\u{ffff}💥",
            "SELECT * FROM Customer WHERE Id = '1' AND",
        ] {
            let err = parse(garbage).expect_err(garbage);
            assert!(err.code == "4000" || err.code == "4001", "{garbage}: {err:?}");
        }
    }

    #[test]
    fn evaluates_conditions() {
        let c = json!({"Id": "12", "Active": true, "DisplayName": "Renée O'Brien", "Balance": 314.28,
                        "MetaData": {"LastUpdatedTime": "2026-03-31T16:49:28-07:00"}});
        let mut store = Store::new();
        store.insert(c, None);
        let hits = |q: &str| matches!(ok(q).execute(&store), Answer::Page(page) if page.len() == 1);
        assert!(hits("SELECT * FROM Customer WHERE Id > '9'"), "Ids compare as numbers");
        assert!(hits("SELECT * FROM Customer WHERE DisplayName LIKE 'renée%'"));
        assert!(hits("SELECT * FROM Customer WHERE DisplayName = 'RENÉE O\\'BRIEN'"));
        assert!(!hits("SELECT * FROM Customer WHERE DisplayName LIKE '%Smith%'"));
        assert!(hits("SELECT * FROM Customer WHERE Balance >= 314.28 AND Balance < 314.29"));
        assert!(hits("SELECT * FROM Customer WHERE MetaData.LastUpdatedTime = '2026-03-31T23:49:28Z'"));
        assert!(hits("SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '2026-03-31'"));
        assert!(!hits("SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > '2026-03-31T16:49:28-07:00'"));
        assert!(!hits("SELECT * FROM Customer WHERE CompanyName = 'x'"), "missing field never matches");
    }

    /// Random token soup must give a fault or a query, never a panic, and any query
    /// that parses must evaluate and page without panicking.
    #[test]
    fn fuzzed_queries_never_panic() {
        const PIECES: &[&str] = &[
            "SELECT",
            "*",
            "COUNT(*)",
            "FROM",
            "Customer",
            "WHERE",
            "AND",
            "OR",
            "IN",
            "(",
            ")",
            ",",
            "LIKE",
            "=",
            "<",
            ">=",
            "ORDERBY",
            "DESC",
            "STARTPOSITION",
            "MAXRESULTS",
            "Id",
            "Active",
            "Balance",
            "MetaData.LastUpdatedTime",
            "DisplayName",
            "'%a%'",
            "'2026-03-31'",
            "'x\\'",
            "0",
            "1",
            "-0.5",
            "1000",
            "99999999999999999999",
            "true",
            "'",
            "\u{0}",
            "é",
            "💥",
            ";",
            "..",
        ];
        let mut state = 0x1234_5678_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^ (z >> 27)
        };
        let mut store = Store::new();
        store.insert(json!({"Id": "1", "Active": true, "Balance": 1.5, "DisplayName": "a"}), None);
        store.insert(json!({"Id": "x"}), None);
        for i in 0..20_000 {
            let len = (next() % 14) as usize;
            let mut words: Vec<&str> = if i % 2 == 0 { vec!["SELECT", "*", "FROM", "Customer"] } else { vec![] };
            for _ in 0..len {
                words.push(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let text = words.join(if i % 3 == 0 { "" } else { " " });
            if let Ok(q) = parse(&text) {
                let _ = q.execute(&store);
            }
        }
    }

    #[test]
    fn like_wildcards() {
        assert!(like("abc", "abc"));
        assert!(like("abc", "%"));
        assert!(like("abc", "a%c"));
        assert!(like("abc", "%b%"));
        assert!(!like("abc", "%d%"));
        assert!(!like("ab", "ab%b"));
        assert!(like("aXbXc", "a%b%c"));
    }
}
