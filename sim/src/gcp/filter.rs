//! The `filter` of `images.list`, `instances.list` and `disks.list`, the
//! subset golden uses: comparisons
//! `labels.<key> = "<value>"`, `labels.<key>:*` (the key is set),
//! `family = "<f>"`, `name = "<n>"`, `status = "<s>"`, joined by `AND` or by
//! juxtaposition, each optionally in parentheses as Compute's docs write
//! them: `(labels.golden = "validated") (family = "web")` (images.list
//! `filter`, compute.v1.json). Values quoted or bare.
//!
//! Anything else (`OR`, `NOT`, `!=`, `<`, regex `eq`/`ne`, other fields)
//! is refused with GCE's answer to a filter it cannot read: 400 `invalid`,
//! "Invalid value for field 'filter': '<filter>'. Invalid list filter
//! expression." (quoted from gcloud's error output in public bug reports).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Equals(String, String),
    Has(String),
}

/// The parsed conjunction, or `Err(())` for anything outside the subset.
pub fn parse(filter: &str) -> Result<Vec<Term>, ()> {
    let tokens = lex(filter)?;
    let mut terms = Vec::new();
    let mut i = 0;
    let mut depth = 0i32;
    let mut expect_term = true;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "(" => {
                depth += 1;
                i += 1;
            }
            ")" => {
                depth -= 1;
                if depth < 0 || expect_term {
                    return Err(());
                }
                i += 1;
            }
            "AND" => {
                if expect_term {
                    return Err(());
                }
                expect_term = true;
                i += 1;
            }
            field => {
                let field = field.to_owned();
                if !field_ok(&field) {
                    return Err(());
                }
                let op = tokens.get(i + 1).ok_or(())?;
                let value = tokens.get(i + 2).ok_or(())?;
                match op.as_str() {
                    "=" => terms.push(Term::Equals(field, unquote(value)?)),
                    ":" if value == "*" && field.starts_with("labels.") => {
                        terms.push(Term::Has(field))
                    }
                    _ => return Err(()),
                }
                i += 3;
                expect_term = false;
            }
        }
    }
    if depth != 0 || (expect_term && !terms.is_empty()) {
        return Err(());
    }
    Ok(terms)
}

fn field_ok(f: &str) -> bool {
    match f.strip_prefix("labels.") {
        Some(k) => {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        }
        None => matches!(f, "name" | "family" | "status"),
    }
}

fn unquote(v: &str) -> Result<String, ()> {
    if let Some(inner) = v.strip_prefix('"') {
        return inner.strip_suffix('"').map(str::to_owned).ok_or(());
    }
    if matches!(v, "(" | ")" | "=" | ":" | "AND" | "OR" | "NOT") || v.contains('*') {
        return Err(());
    }
    Ok(v.to_owned())
}

fn lex(s: &str) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '=' | ':' => {
                chars.next();
                out.push(c.to_string());
            }
            '"' => {
                chars.next();
                let mut v = String::from('"');
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => v.push(chars.next().ok_or(())?),
                        Some(c) => v.push(c),
                        None => return Err(()),
                    }
                }
                v.push('"');
                out.push(v);
            }
            '!' | '<' | '>' | '~' | '\'' => return Err(()),
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()=:\"!<>".contains(c) {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                if matches!(w.as_str(), "OR" | "NOT" | "eq" | "ne") || w.starts_with('-') {
                    return Err(());
                }
                out.push(w);
            }
        }
    }
    Ok(out)
}

/// Whether a resource with these fields and labels matches every term.
pub fn matches(
    terms: &[Term],
    fields: &BTreeMap<&str, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    terms.iter().all(|t| match t {
        Term::Equals(f, v) => match f.strip_prefix("labels.") {
            Some(k) => labels.get(k) == Some(v),
            None => fields.get(f.as_str()) == Some(v),
        },
        Term::Has(f) => labels.contains_key(f.trim_start_matches("labels.")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_parses() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(
            parse(r#"labels.golden = "validated""#).unwrap(),
            vec![Term::Equals("labels.golden".into(), "validated".into())]
        );
        assert_eq!(
            parse(r#"(labels.golden = "validated") (family = "web") AND labels.run:*"#).unwrap(),
            vec![
                Term::Equals("labels.golden".into(), "validated".into()),
                Term::Equals("family".into(), "web".into()),
                Term::Has("labels.run".into()),
            ]
        );
        assert_eq!(
            parse("name = foo").unwrap(),
            vec![Term::Equals("name".into(), "foo".into())]
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "name != foo",
            "(a = b) OR (c = d)",
            "NOT labels.x:*",
            "name eq foo.*",
            "creationTimestamp > 2020",
            "labels.x:y",
            "(name = a",
            "name = a)",
            "name =",
            "AND name = a",
            "name = a AND",
            "labels.X = a",
            "diskSizeGb = 10",
            "name = \"a",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
