//! The `q` parameter of `files.list`: the documented subset of Drive's search
//! language that a backup client needs. Terms `name`, `mimeType`, `trashed`,
//! `modifiedTime`, `createdTime`, `'ID' in parents` and
//! `appProperties has { key='K' and value='V' }`; `and`, `or`, `not` and
//! parentheses. Anything else is refused, as Drive refuses what it does not know.

use crate::state::File;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Str(String),
    Word(String),
    Op(String),
    Open,
    Close,
    OpenBrace,
    CloseBrace,
}

fn tokens(q: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '{' | '}' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '{' => Token::OpenBrace,
                    _ => Token::CloseBrace,
                });
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(e) => s.push(e),
                            None => return Err("a string ends in a backslash".into()),
                        },
                        Some('\'') => break,
                        Some(ch) => s.push(ch),
                        None => return Err("a string is not closed".into()),
                    }
                }
                out.push(Token::Str(s));
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let mut op = c.to_string();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    op.push('=');
                }
                if op == "!" {
                    return Err("'!' must be followed by '='".into());
                }
                out.push(Token::Op(op));
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                let mut w = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_alphanumeric() || ch == '_' || ch == '.' {
                        w.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(w));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
    Compare(String, String, Value),
    InParents(String),
    AppProperty(String, String),
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x == w)
    }
    fn expect(&mut self, t: Token) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }
    fn or(&mut self) -> Result<Query, String> {
        let mut left = self.and()?;
        while self.word("or") {
            self.next();
            left = Query::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Query, String> {
        let mut left = self.unary()?;
        while self.word("and") {
            self.next();
            left = Query::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Query, String> {
        if self.word("not") {
            self.next();
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.next();
            let q = self.or()?;
            self.expect(Token::Close)?;
            return Ok(q);
        }
        self.term()
    }
    fn string(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Str(s)) => Ok(s),
            other => Err(format!("expected a quoted string, found {other:?}")),
        }
    }
    fn term(&mut self) -> Result<Query, String> {
        match self.next() {
            Some(Token::Str(id)) => {
                if !self.word("in") {
                    return Err("a string term must be followed by 'in'".into());
                }
                self.next();
                match self.next() {
                    Some(Token::Word(w)) if w == "parents" => Ok(Query::InParents(id)),
                    other => Err(format!("unsupported collection {other:?}")),
                }
            }
            Some(Token::Word(field)) if field == "appProperties" => {
                if !self.word("has") {
                    return Err("appProperties takes 'has'".into());
                }
                self.next();
                self.expect(Token::OpenBrace)?;
                self.expect(Token::Word("key".into()))?;
                self.expect(Token::Op("=".into()))?;
                let key = self.string()?;
                self.expect(Token::Word("and".into()))?;
                self.expect(Token::Word("value".into()))?;
                self.expect(Token::Op("=".into()))?;
                let value = self.string()?;
                self.expect(Token::CloseBrace)?;
                Ok(Query::AppProperty(key, value))
            }
            Some(Token::Word(field)) => {
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    Some(Token::Word(w)) if w == "contains" => w,
                    other => {
                        return Err(format!(
                            "expected an operator after {field}, found {other:?}"
                        ));
                    }
                };
                let value = match self.next() {
                    Some(Token::Str(s)) => Value::Str(s),
                    Some(Token::Word(w)) if w == "true" => Value::Bool(true),
                    Some(Token::Word(w)) if w == "false" => Value::Bool(false),
                    other => return Err(format!("expected a value, found {other:?}")),
                };
                let allowed: &[&str] = match field.as_str() {
                    "name" => &["=", "!=", "contains"],
                    "mimeType" => &["=", "!=", "contains"],
                    "trashed" => &["=", "!="],
                    "modifiedTime" | "createdTime" => &["=", "!=", "<", "<=", ">", ">="],
                    _ => return Err(format!("unsupported term {field}")),
                };
                if !allowed.contains(&op.as_str()) {
                    return Err(format!("operator {op} does not apply to {field}"));
                }
                let boolean = field == "trashed";
                if boolean != matches!(value, Value::Bool(_)) {
                    return Err(format!("wrong type of value for {field}"));
                }
                Ok(Query::Compare(field, op, value))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parse `q`.
pub fn parse(q: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokens(q)?,
        at: 0,
    };
    let query = p.or()?;
    if p.at != p.toks.len() {
        return Err(format!("unexpected {:?}", p.peek()));
    }
    Ok(query)
}

fn compare<T: PartialOrd + ?Sized>(a: &T, op: &str, b: &T) -> bool {
    match op {
        "=" => a == b,
        "!=" => a != b,
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        _ => false,
    }
}

impl Query {
    /// Whether `file` matches.
    pub fn matches(&self, file: &File) -> bool {
        match self {
            Query::And(a, b) => a.matches(file) && b.matches(file),
            Query::Or(a, b) => a.matches(file) || b.matches(file),
            Query::Not(a) => !a.matches(file),
            Query::InParents(id) => {
                file.parents.iter().any(|p| p == id)
                    || (id == crate::state::APP_DATA && file.app_data && file.parents.is_empty())
            }
            Query::AppProperty(k, v) => file.app_properties.get(k) == Some(v),
            Query::Compare(field, op, value) => match (field.as_str(), value) {
                ("trashed", Value::Bool(b)) => compare(&file.trashed, op, b),
                ("name", Value::Str(s)) if op == "contains" => file.name.contains(s.as_str()),
                ("name", Value::Str(s)) => compare(file.name.as_str(), op, s.as_str()),
                ("mimeType", Value::Str(s)) if op == "contains" => file.mime.contains(s.as_str()),
                ("mimeType", Value::Str(s)) => compare(file.mime.as_str(), op, s.as_str()),
                ("modifiedTime", Value::Str(s)) => compare(
                    crate::fields::rfc3339(file.modified_ms).as_str(),
                    op,
                    normal_time(s).as_str(),
                ),
                ("createdTime", Value::Str(s)) => compare(
                    crate::fields::rfc3339(file.created_ms).as_str(),
                    op,
                    normal_time(s).as_str(),
                ),
                _ => false,
            },
        }
    }
}

/// A time as the query gives it, in the form files' times are written
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`), so that the two compare as strings.
fn normal_time(s: &str) -> String {
    let s = s.trim_end_matches('Z');
    let (main, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.to_string();
    frac.truncate(3);
    while frac.len() < 3 {
        frac.push('0');
    }
    format!("{main}.{frac}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, parent: &str) -> File {
        File {
            id: "x".into(),
            name: name.into(),
            mime: "application/octet-stream".into(),
            parents: vec![parent.into()],
            app_data: false,
            content: Vec::new(),
            created_ms: 0,
            modified_ms: 1_700_000_000_000,
            version: 1,
            app_properties: [("kind".to_string(), "snapshot".to_string())].into(),
            trashed: false,
            client: "c".into(),
        }
    }

    #[test]
    fn terms_combine_as_drive_documents_them() {
        let f = file("snap-001.enc", "F1");
        let yes = [
            "name = 'snap-001.enc' and 'F1' in parents and trashed = false",
            "name contains 'snap' and not mimeType = 'application/vnd.google-apps.folder'",
            "(name = 'a' or name = 'snap-001.enc') and trashed != true",
            "appProperties has { key='kind' and value='snapshot' }",
            "modifiedTime > '2023-01-01T00:00:00' and modifiedTime < '2024-01-01T00:00:00Z'",
        ];
        for q in yes {
            assert!(parse(q).expect(q).matches(&f), "{q}");
        }
        let no = [
            "name = 'snap-002.enc'",
            "'F2' in parents",
            "trashed = true",
            "appProperties has { key='kind' and value='bundle' }",
        ];
        for q in no {
            assert!(!parse(q).expect(q).matches(&f), "{q}");
        }
        assert!(
            parse("name = 'it\\'s'")
                .expect("escape")
                .matches(&file("it's", "F1"))
        );
    }

    #[test]
    fn what_drive_does_not_know_is_refused() {
        for q in [
            "size > '3'",
            "name = ",
            "trashed = 'no'",
            "name < 'a'",
            "'F1' in owners2",
            "(name = 'a'",
            "name = 'a' extra",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }
}
