//! A reader of RFC 4180 CSV: fields separated by commas, records by CRLF or LF,
//! a field in double quotes may hold commas, line breaks and quotes written
//! twice (`"12"" pizza, large"`). Each record comes with the line it starts on,
//! so an operator can find it in the file. Blank lines are skipped, and a
//! leading byte-order mark (as spreadsheets write) is ignored.
//!
//! Small on purpose: a catalog file is the only CSV the store reads, and what
//! it needs (quotes, line numbers, a clear refusal of a broken quote) fits here.

/// A record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvError {
    /// The line the record starts on.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
    /// Whether the rest of the file cannot be read either (a quote never closed).
    pub fatal: bool,
}

/// The records of `text`, each with the line (from 1) it starts on.
pub(crate) fn records(text: &str) -> Records<'_> {
    Records {
        text: text.strip_prefix('\u{feff}').unwrap_or(text),
        pos: 0,
        line: 1,
    }
}

/// Iterator over the records of a CSV text; see [`records`].
#[derive(Debug)]
pub(crate) struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl Records<'_> {
    /// Skip to just past the end of the current line.
    fn skip_line(&mut self) {
        match self.text[self.pos..].find('\n') {
            Some(i) => {
                self.pos += i + 1;
                self.line += 1;
            }
            None => self.pos = self.text.len(),
        }
    }

    /// If a record ends at the current position (line break or end of text),
    /// step past the break and say so.
    fn end_of_record(&mut self) -> bool {
        let rest = &self.text.as_bytes()[self.pos..];
        let brk = match rest {
            [] => 0,
            [b'\n', ..] => 1,
            [b'\r', b'\n', ..] => 2,
            _ => return false,
        };
        if brk > 0 {
            self.pos += brk;
            self.line += 1;
        }
        true
    }

    /// A quoted field starting at the current position (on its opening quote).
    fn quoted(&mut self, start_line: usize) -> Result<String, CsvError> {
        let mut field = String::new();
        self.pos += 1;
        loop {
            let rest = &self.text[self.pos..];
            let Some(q) = rest.find('"') else {
                self.pos = self.text.len();
                return Err(CsvError {
                    line: start_line,
                    reason: "a quoted field is never closed (a quote inside a field is \
                             written as two quotes)"
                        .into(),
                    fatal: true,
                });
            };
            let part = &rest[..q];
            self.line += part.matches('\n').count();
            field.push_str(part);
            self.pos += q + 1;
            if self.text.as_bytes().get(self.pos) == Some(&b'"') {
                field.push('"');
                self.pos += 1;
            } else {
                return Ok(field);
            }
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(usize, Vec<String>), CsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Blank lines separate nothing: skip them.
        while self.pos < self.text.len() {
            let rest = &self.text[self.pos..];
            if rest.starts_with('\n') || rest.starts_with("\r\n") {
                self.end_of_record();
            } else {
                break;
            }
        }
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.line;
        let mut fields = Vec::new();
        loop {
            if self.text.as_bytes()[self.pos..].starts_with(b"\"") {
                match self.quoted(start) {
                    Ok(f) => fields.push(f),
                    Err(e) => return Some(Err(e)),
                }
                if self.text.as_bytes().get(self.pos) == Some(&b',') {
                    self.pos += 1;
                    continue;
                }
                if self.end_of_record() {
                    return Some(Ok((start, fields)));
                }
                self.skip_line();
                return Some(Err(CsvError {
                    line: start,
                    reason: "text after the closing quote of a field (a quote inside a \
                             field is written as two quotes)"
                        .into(),
                    fatal: false,
                }));
            }
            let rest = &self.text[self.pos..];
            let end = rest.find([',', '\n']).unwrap_or(rest.len());
            let mut value = &rest[..end];
            if rest[end..].starts_with('\n') {
                value = value.strip_suffix('\r').unwrap_or(value);
            }
            if value.contains('"') {
                let reason = format!(
                    "field {value:?} holds a quote but is not in quotes (write it as \"{}\")",
                    value.replace('"', "\"\"")
                );
                self.skip_line();
                return Some(Err(CsvError {
                    line: start,
                    reason,
                    fatal: false,
                }));
            }
            fields.push(value.to_string());
            self.pos += end;
            if self.text.as_bytes().get(self.pos) == Some(&b',') {
                self.pos += 1;
            } else {
                self.end_of_record();
                return Some(Ok((start, fields)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<(usize, Vec<String>), CsvError>> {
        records(text).collect()
    }

    fn ok(line: usize, fields: &[&str]) -> Result<(usize, Vec<String>), CsvError> {
        Ok((line, fields.iter().map(|f| f.to_string()).collect()))
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(
            read("a,b,c\n1,,3\r\n\"x, y\",\"say \"\"hi\"\"\",\"\"\n"),
            vec![
                ok(1, &["a", "b", "c"]),
                ok(2, &["1", "", "3"]),
                ok(3, &["x, y", "say \"hi\"", ""]),
            ]
        );
        // No final line break, a trailing empty field, a byte-order mark.
        assert_eq!(
            read("\u{feff}a,b,\nc,d,e"),
            vec![ok(1, &["a", "b", ""]), ok(2, &["c", "d", "e"])]
        );
    }

    #[test]
    fn line_breaks_inside_quotes_count_towards_the_next_record() {
        assert_eq!(
            read("a,\"two\nlines\"\n\nb,c\n"),
            vec![ok(1, &["a", "two\nlines"]), ok(4, &["b", "c"])]
        );
    }

    #[test]
    fn broken_quotes_are_refused_by_line() {
        let got = read("a,\"b\"x,c\nd,e\nf,g\"h\ni,j\n");
        assert_eq!(got.len(), 4);
        assert!(
            matches!(&got[0], Err(e) if e.line == 1 && !e.fatal),
            "{got:?}"
        );
        assert_eq!(got[1], ok(2, &["d", "e"]));
        assert!(matches!(&got[2], Err(e) if e.line == 3 && e.reason.contains("not in quotes")));
        assert_eq!(got[3], ok(4, &["i", "j"]));

        let got = read("a,b\nc,\"never closed\nd,e\n");
        assert_eq!(got[0], ok(1, &["a", "b"]));
        assert!(
            matches!(&got[1], Err(e) if e.line == 2 && e.fatal),
            "{got:?}"
        );
        assert_eq!(got.len(), 2);
    }
}
