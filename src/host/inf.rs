//! A small parser for Windows INF files: enough to check `inf/nbshm.inx` against what the code
//! registers, and to give the host model the names NDIS would read from the installed INF.
//!
//! Syntax handled (the subset of the documented INF grammar this project's INF uses, reported as
//! an error when violated rather than guessed): `[section]` headers; `key = v1, v2, ...` and
//! value-only lines; `;` comments outside quotes; double-quoted values (`""` is a literal quote);
//! a trailing `\` continues a line; `%token%` substitution from `[Strings]`, where `%%` is a
//! literal percent and numeric tokens (`%13%`, DIRIDs) stay as they are. Section and key names
//! compare case-insensitively, as Windows does.

use std::fmt;

/// One line of a section: an optional key and its comma-separated values (quotes removed,
/// `%tokens%` not yet expanded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfLine {
    /// Line number (1-based) where the entry starts.
    pub line_no: usize,
    /// The part before `=`, if any.
    pub key: Option<String>,
    /// The values, trimmed.
    pub values: Vec<String>,
}

/// A `[section]` and its lines, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfSection {
    /// The name between the brackets.
    pub name: String,
    /// Its entries.
    pub lines: Vec<InfLine>,
}

/// A parse or lookup error, with the line it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfError {
    /// Line number (1-based), 0 when not tied to a line.
    pub line_no: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line_no, self.message)
    }
}

impl std::error::Error for InfError {}

/// A parsed INF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inf {
    /// Sections in file order (a repeated header appends to the first one, as Windows merges).
    pub sections: Vec<InfSection>,
}

fn err(line_no: usize, message: impl Into<String>) -> InfError {
    InfError { line_no, message: message.into() }
}

/// Splits one logical line into its fields: strips the comment, honours quotes.
/// Returns `(key, values)`; the key is the text before the first unquoted `=`.
fn split_line(text: &str, line_no: usize) -> Result<(Option<String>, Vec<String>), InfError> {
    let mut key = None;
    let mut values = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => break,
            '=' if !in_quotes && key.is_none() && values.is_empty() => {
                key = Some(field.trim().to_owned());
                field.clear();
            }
            ',' if !in_quotes => {
                values.push(field.trim().to_owned());
                field.clear();
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(err(line_no, "unterminated quoted string"));
    }
    let last = field.trim().to_owned();
    if !last.is_empty() || !values.is_empty() || key.is_some() {
        values.push(last);
    }
    Ok((key, values))
}

impl Inf {
    /// Parses INF text.
    ///
    /// # Errors
    /// A malformed section header, an unterminated quote, or an entry before the first section.
    pub fn parse(text: &str) -> Result<Self, InfError> {
        let mut inf = Self::default();
        let mut current: Option<usize> = None;
        let mut pending = String::new();
        let mut pending_start = 0;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let raw = raw.trim_end_matches('\r');
            if pending.is_empty() {
                pending_start = line_no;
            }
            // Continuation: a trailing backslash (outside a comment) joins the next line.
            let code_part = raw.split(';').next().unwrap_or("").trim_end();
            if let Some(stripped) = code_part.strip_suffix('\\') {
                pending.push_str(stripped);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let logical = std::mem::take(&mut pending);
            let trimmed = logical.trim_start();
            if trimmed.is_empty() || trimmed.starts_with(';') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err(err(pending_start, "section header without ']'"));
                };
                let (name, after) = rest.split_at(end);
                let after = after.get(1..).unwrap_or("").trim_start();
                if !(after.is_empty() || after.starts_with(';')) {
                    return Err(err(pending_start, "text after a section header"));
                }
                let name = name.trim();
                current = Some(inf.position(name).unwrap_or_else(|| {
                    inf.sections.push(InfSection { name: name.to_owned(), lines: Vec::new() });
                    inf.sections.len() - 1
                }));
                continue;
            }
            let Some(idx) = current else {
                return Err(err(pending_start, "entry outside any section"));
            };
            let (key, values) = split_line(&logical, pending_start)?;
            if key.is_none() && values.iter().all(String::is_empty) {
                continue;
            }
            if let Some(section) = inf.sections.get_mut(idx) {
                section.lines.push(InfLine { line_no: pending_start, key, values });
            }
        }
        if !pending.is_empty() {
            return Err(err(pending_start, "file ends in a line continuation"));
        }
        Ok(inf)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The section called `name` (case-insensitive).
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&InfSection> {
        self.position(name).and_then(|i| self.sections.get(i))
    }

    /// All lines of `section` whose key is `key` (case-insensitive).
    pub fn entries<'a>(&'a self, section: &str, key: &'a str) -> impl Iterator<Item = &'a InfLine> + 'a {
        self.section(section)
            .into_iter()
            .flat_map(|s| s.lines.iter())
            .filter(move |l| l.key.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(key)))
    }

    /// The values of the first `key` line of `section`, expanded.
    ///
    /// # Errors
    /// The key is missing, or a value uses an undefined `%token%`.
    pub fn values(&self, section: &str, key: &str) -> Result<Vec<String>, InfError> {
        let line =
            self.entries(section, key).next().ok_or_else(|| err(0, format!("[{section}] has no {key}")))?;
        line.values.iter().map(|v| self.expand(v, line.line_no)).collect()
    }

    /// The first value of the first `key` line of `section`, expanded.
    ///
    /// # Errors
    /// As [`values`](Self::values).
    pub fn value(&self, section: &str, key: &str) -> Result<String, InfError> {
        Ok(self.values(section, key)?.into_iter().next().unwrap_or_default())
    }

    /// Expands `%token%` references from `[Strings]`.
    ///
    /// # Errors
    /// An unterminated `%`, or a non-numeric token that `[Strings]` does not define.
    pub fn expand(&self, raw: &str, line_no: usize) -> Result<String, InfError> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find('%') {
            out.push_str(rest.get(..start).unwrap_or(""));
            let after = rest.get(start + 1..).unwrap_or("");
            let Some(end) = after.find('%') else {
                return Err(err(line_no, format!("unterminated %token% in {raw:?}")));
            };
            let token = after.get(..end).unwrap_or("");
            if token.is_empty() {
                out.push('%');
            } else if token.bytes().all(|b| b.is_ascii_digit()) {
                out.push('%');
                out.push_str(token);
                out.push('%');
            } else {
                let value = self
                    .entries("Strings", token)
                    .next()
                    .and_then(|l| l.values.first())
                    .ok_or_else(|| err(line_no, format!("%{token}% is not defined in [Strings]")))?;
                out.push_str(value);
            }
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Parses an INF integer (decimal or `0x` hex).
    #[must_use]
    pub fn parse_int(text: &str) -> Option<u64> {
        let t = text.trim();
        match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => t.parse().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_keys_quotes_comments_and_strings() {
        let inf = Inf::parse(
            "; top\n[Version]\nSignature = \"$WINDOWS NT$\" ; c\nProvider=%P%\n\
             [Strings]\nP = \"a, \"\"b\"\"\"\n[X]\nfile.sys,,,2\nHKR, Ndi, Service, 0, svc\n",
        )
        .unwrap();
        assert_eq!(inf.value("version", "signature").unwrap(), "$WINDOWS NT$");
        assert_eq!(inf.value("Version", "Provider").unwrap(), "a, \"b\"");
        let x = inf.section("x").unwrap();
        assert_eq!(x.lines[0].values, ["file.sys", "", "", "2"]);
        assert_eq!(x.lines[1].values, ["HKR", "Ndi", "Service", "0", "svc"]);
    }

    #[test]
    fn dirids_and_percent_escape_stay() {
        let inf = Inf::parse("[S]\nA = %13%\\x.sys, 100%%\n").unwrap();
        assert_eq!(inf.values("S", "A").unwrap(), ["%13%\\x.sys", "100%"]);
    }

    #[test]
    fn errors_are_reported_with_lines() {
        assert_eq!(Inf::parse("x = 1\n").unwrap_err().line_no, 1);
        assert_eq!(Inf::parse("[A]\nx = \"open\n").unwrap_err().line_no, 2);
        assert_eq!(Inf::parse("[A\n").unwrap_err().line_no, 1);
        let inf = Inf::parse("[A]\nx = %nope%\n").unwrap();
        assert!(inf.value("A", "x").is_err());
    }

    #[test]
    fn continuation_joins_lines() {
        let inf = Inf::parse("[A]\nx = 1, \\\n  2\n").unwrap();
        assert_eq!(inf.values("A", "x").unwrap(), ["1", "2"]);
    }
}
