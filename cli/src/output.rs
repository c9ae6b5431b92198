//! Formatting for people: money, quantities, times, aligned tables.

use tillmesh_store::{Day, Hlc};

/// Cents as `12.34` (`-0.50` when negative).
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// A quantity: `3` (pieces) or `350g` (grams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qty {
    /// Pieces.
    Pieces(i64),
    /// Grams.
    Grams(i64),
}

impl Qty {
    /// The number, whatever the unit.
    pub fn value(self) -> i64 {
        match self {
            Qty::Pieces(n) | Qty::Grams(n) => n,
        }
    }
}

/// Parse `3`, `-3`, `350g`, `-250g`.
pub fn parse_qty(s: &str) -> Result<Qty, String> {
    let err = || format!("{s:?} is not a quantity like 3 or 350g");
    if let Some(g) = s.strip_suffix('g') {
        return g.parse().map(Qty::Grams).map_err(|_| err());
    }
    s.parse().map(Qty::Pieces).map_err(|_| err())
}

/// A quantity in base units for a product sold `each` or by `kg`.
pub fn qty_text(n: i64, unit: tillmesh_store::Unit) -> String {
    match unit {
        tillmesh_store::Unit::Each => n.to_string(),
        tillmesh_store::Unit::Kg => format!("{n}g"),
    }
}

/// The name under which a command's caller says whether its output goes to
/// a terminal that shows colour (`1`) or not (`0`), so that a command the
/// daemon runs colours as the caller's terminal wants.
pub const COLOUR_KEY: &str = "TILLMESH_COLOUR";

/// Whether this process's standard output is a terminal that should show
/// colour: a terminal, `NO_COLOR` unset (no-color.org), `TERM` not `dumb`.
pub fn wants_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// How a verdict or alert line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warn,
    Bad,
}

/// `text` in `tone` when `on`, plain otherwise.
pub fn paint(text: &str, tone: Tone, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let sgr = match tone {
        Tone::Good => "32",
        Tone::Warn => "33",
        Tone::Bad => "1;31",
    };
    format!("\x1b[{sgr}m{text}\x1b[0m")
}

/// The tone of a verdict line (`OK: …`, `CHECK: …`, `ACTION NEEDED: …`).
pub fn verdict_tone(verdict: &str) -> Tone {
    if verdict.starts_with("OK") {
        Tone::Good
    } else if verdict.starts_with("CHECK") {
        Tone::Warn
    } else {
        Tone::Bad
    }
}

/// `2026-11-24 15:10:22` (UTC) from unix milliseconds.
pub fn time(ms: u64) -> String {
    let day = Day::from_unix_ms(ms);
    let secs = (ms / 1000) % 86_400;
    format!(
        "{day} {:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// The wall time of a hybrid logical timestamp.
pub fn hlc_time(h: Hlc) -> String {
    time(h.ms())
}

/// A table printed with aligned columns; numbers align right.
#[derive(Debug)]
pub struct Table {
    head: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles; a title starting with '>' aligns right.
    pub fn new(head: &[&'static str]) -> Self {
        Self {
            right: head.iter().map(|h| h.starts_with('>')).collect(),
            head: head.iter().map(|h| h.trim_start_matches('>')).collect(),
            rows: Vec::new(),
        }
    }
    /// Add a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// Render with two spaces between columns.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                let w = widths[i];
                let last = i + 1 == cells.len();
                if self.right[i] {
                    out.push_str(&format!("{c:>w$}"));
                } else if last {
                    out.push_str(c);
                } else {
                    out.push_str(&format!("{c:<w$}"));
                }
                if !last {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(self.head.clone());
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_prints_with_two_decimals() {
        assert_eq!(money(119), "1.19");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(1200), "12.00");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_qty("3"), Ok(Qty::Pieces(3)));
        assert_eq!(parse_qty("350g"), Ok(Qty::Grams(350)));
        assert_eq!(parse_qty("-250g"), Ok(Qty::Grams(-250)));
        assert!(parse_qty("3kg").is_err());
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["SKU", ">PRICE", "NAME"]);
        t.row(vec!["A".into(), "1.19".into(), "Milk".into()]);
        t.row(vec!["LONGER".into(), "12.00".into(), "Bread".into()]);
        assert_eq!(
            t.render(),
            "SKU     PRICE  NAME\nA        1.19  Milk\nLONGER  12.00  Bread\n"
        );
    }
}
