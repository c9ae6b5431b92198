//! Typed identifiers: tills, stores, documents, SKUs, barcodes and receipts.
//!
//! Every id has a `Display` that `FromStr` parses back, so ids round-trip through
//! document keys, JSON and the command line, and a `fmt_short()` for logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct ParseIdError {
    kind: &'static str,
    input: String,
    reason: &'static str,
}

impl ParseIdError {
    fn new(kind: &'static str, input: &str, reason: &'static str) -> Self {
        Self {
            kind,
            input: input.chars().take(80).collect(),
            reason,
        }
    }
}

fn parse_hex<const N: usize>(kind: &'static str, s: &str) -> Result<[u8; N], ParseIdError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| ParseIdError::new(kind, s, "expected lowercase hex of the right length"))?;
    Ok(out)
}

/// A till: the ed25519 public key that is also its iroh node id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TillId([u8; 32]);

impl TillId {
    /// The till id of a raw public key.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The raw public key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The first ten hex digits, for logs and tables.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.0[..5])
    }
}

impl fmt::Display for TillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for TillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TillId({})", self.fmt_short())
    }
}
impl FromStr for TillId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>("till id", s).map(Self)
    }
}

/// A store (one shop's mesh): 16 random bytes made at `init`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreId([u8; 16]);

impl StoreId {
    /// A fresh random store id.
    pub fn random() -> Self {
        Self(rand::random())
    }
    /// The store id of raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// The first eight hex digits, for logs.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}
impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreId({})", self.fmt_short())
    }
}
impl FromStr for StoreId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<16>("store id", s).map(Self)
    }
}

/// A calendar day (UTC), the unit of the per-till sales and stock documents.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Day {
    /// Days since 1970-01-01.
    days: i64,
}

impl Day {
    /// The day holding a unix time in milliseconds.
    pub fn from_unix_ms(ms: u64) -> Self {
        Self {
            days: (ms / 86_400_000) as i64,
        }
    }
    /// Days since 1970-01-01.
    pub fn days_since_epoch(&self) -> i64 {
        self.days
    }
    /// The day `n` days later (or earlier when negative).
    pub fn add_days(&self, n: i64) -> Self {
        Self {
            days: self.days + n,
        }
    }
    /// Year, month and day of month.
    pub fn ymd(&self) -> (i64, u32, u32) {
        // Howard Hinnant's civil_from_days.
        let z = self.days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }
    fn from_ymd(y: i64, m: u32, d: u32) -> Self {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Self {
            days: era * 146_097 + doe - 719_468,
        }
    }
    /// The month holding this day.
    pub fn month(&self) -> Month {
        let (y, m, _) = self.ymd();
        Month { year: y, month: m }
    }
}
impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}
impl FromStr for Day {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError::new("day", s, "expected YYYY-MM-DD");
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(err());
        }
        let y: i64 = y.parse().map_err(|_| err())?;
        let m: u32 = m.parse().map_err(|_| err())?;
        let d: u32 = d.parse().map_err(|_| err())?;
        if !(1..=12).contains(&m) || d == 0 {
            return Err(err());
        }
        let day = Self::from_ymd(y, m, d);
        // Reject 2026-02-30 and friends: they would not round-trip.
        if day.ymd() != (y, m, d) {
            return Err(err());
        }
        Ok(day)
    }
}

/// A calendar month (UTC), the unit of the per-till audit documents.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Month {
    year: i64,
    month: u32,
}
impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}
impl FromStr for Month {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let day: Day = format!("{s}-01")
            .parse()
            .map_err(|_| ParseIdError::new("month", s, "expected YYYY-MM"))?;
        Ok(day.month())
    }
}

/// One Automerge document of the store.
///
/// `catalog`, `config` and `membership` have many writers; the day and month
/// documents belong to one till, which alone may write them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum DocId {
    /// Products by SKU.
    Catalog,
    /// Store settings: conflict policies, tax rates.
    Config,
    /// The tills of the store.
    Membership,
    /// One till's sales, voids and refunds of one day.
    Sales(TillId, Day),
    /// One till's stock movements other than sales of one day.
    Stock(TillId, Day),
    /// One till's hash-chained audit entries of one month.
    Audit(TillId, Month),
}

impl DocId {
    /// The till that alone may write this document, if it has a single writer.
    pub fn owner(&self) -> Option<TillId> {
        match self {
            DocId::Catalog | DocId::Config | DocId::Membership => None,
            DocId::Sales(t, _) | DocId::Stock(t, _) | DocId::Audit(t, _) => Some(*t),
        }
    }
    /// The document kind: `catalog`, `config`, `membership`, `sales`, `stock`, `audit`.
    pub fn kind(&self) -> &'static str {
        match self {
            DocId::Catalog => "catalog",
            DocId::Config => "config",
            DocId::Membership => "membership",
            DocId::Sales(..) => "sales",
            DocId::Stock(..) => "stock",
            DocId::Audit(..) => "audit",
        }
    }
    /// A short form for logs: `sales/3f2a9c01d4/2026-11-24`.
    pub fn fmt_short(&self) -> String {
        match self {
            DocId::Sales(t, d) | DocId::Stock(t, d) => {
                format!("{}/{}/{d}", self.kind(), t.fmt_short())
            }
            DocId::Audit(t, m) => format!("audit/{}/{m}", t.fmt_short()),
            _ => self.kind().to_string(),
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocId::Sales(t, d) | DocId::Stock(t, d) => write!(f, "{}/{t}/{d}", self.kind()),
            DocId::Audit(t, m) => write!(f, "audit/{t}/{m}"),
            _ => f.write_str(self.kind()),
        }
    }
}

impl FromStr for DocId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError::new("document id", s, "unknown document");
        match s {
            "catalog" => return Ok(DocId::Catalog),
            "config" => return Ok(DocId::Config),
            "membership" => return Ok(DocId::Membership),
            _ => {}
        }
        let mut parts = s.split('/');
        let (Some(kind), Some(till), Some(period), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        let till: TillId = till.parse()?;
        match kind {
            "sales" => Ok(DocId::Sales(till, period.parse()?)),
            "stock" => Ok(DocId::Stock(till, period.parse()?)),
            "audit" => Ok(DocId::Audit(till, period.parse()?)),
            _ => Err(err()),
        }
    }
}

/// A stock keeping unit: 1 to 32 of `A-Z a-z 0-9 - _ .`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// The SKU text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl FromStr for Sku {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 32 {
            return Err(ParseIdError::new("SKU", s, "must be 1 to 32 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ParseIdError::new(
                "SKU",
                s,
                "may hold only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Sku(s.to_string()))
    }
}
impl TryFrom<String> for Sku {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<Sku> for String {
    fn from(s: Sku) -> String {
        s.0
    }
}

/// A product barcode: EAN-13, or UPC-A (stored as EAN-13 with a leading zero).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Barcode(String);

impl Barcode {
    /// The 13 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The EAN-13 whose first 12 digits are `first12`, with its check digit added.
    pub fn with_check_digit(first12: &str) -> Result<Self, ParseIdError> {
        if first12.len() != 12 || !first12.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseIdError::new("barcode", first12, "expected 12 digits"));
        }
        let digits: Vec<u8> = first12.bytes().map(|b| b - b'0').collect();
        Ok(Barcode(format!("{first12}{}", gs1_check_digit(&digits))))
    }

    /// Whether `s` has the shape of a barcode (12 or 13 digits), valid or not.
    pub fn looks_like(s: &str) -> bool {
        matches!(s.len(), 12 | 13) && s.bytes().all(|b| b.is_ascii_digit())
    }
}

/// The GS1 check digit of the first digits of an EAN-13 (12 digits).
fn gs1_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for Barcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl FromStr for Barcode {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !Barcode::looks_like(s) {
            return Err(ParseIdError::new(
                "barcode",
                s,
                "expected 13 digits (EAN-13) or 12 digits (UPC-A)",
            ));
        }
        let ean = if s.len() == 12 {
            format!("0{s}")
        } else {
            s.to_string()
        };
        let digits: Vec<u8> = ean.bytes().map(|b| b - b'0').collect();
        if gs1_check_digit(&digits[..12]) != digits[12] {
            return Err(ParseIdError::new("barcode", s, "wrong check digit"));
        }
        Ok(Barcode(ean))
    }
}
impl TryFrom<String> for Barcode {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<Barcode> for String {
    fn from(b: Barcode) -> String {
        b.0
    }
}

/// A till's short name, used in receipt numbers: 1 to 16 of `A-Z a-z 0-9 - _`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TillName(String);

impl TillName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for TillName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl FromStr for TillName {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty()
            || s.len() > 16
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(ParseIdError::new(
                "till name",
                s,
                "must be 1 to 16 letters, digits, '-' or '_'",
            ));
        }
        Ok(TillName(s.to_string()))
    }
}
impl TryFrom<String> for TillName {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<TillName> for String {
    fn from(n: TillName) -> String {
        n.0
    }
}

/// A receipt number, `<till-name>-<n>`, gap-free per till from 1.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Receipt {
    till: TillName,
    number: u64,
}

impl Receipt {
    /// The receipt `number` of till `till`.
    pub fn new(till: TillName, number: u64) -> Self {
        Self { till, number }
    }
    /// The till name part.
    pub fn till(&self) -> &TillName {
        &self.till
    }
    /// The number part.
    pub fn number(&self) -> u64 {
        self.number
    }
}
impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.till, self.number)
    }
}
impl FromStr for Receipt {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError::new("receipt", s, "expected <till>-<number>, like T01-42");
        let (till, n) = s.rsplit_once('-').ok_or_else(err)?;
        let number: u64 = n.parse().map_err(|_| err())?;
        if number == 0 || n.starts_with('0') {
            return Err(err());
        }
        Ok(Receipt {
            till: till.parse().map_err(|_| err())?,
            number,
        })
    }
}
impl TryFrom<String> for Receipt {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<Receipt> for String {
    fn from(r: Receipt) -> String {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcodes_check_digit() {
        assert!("4006381333931".parse::<Barcode>().is_ok());
        assert!("4006381333932".parse::<Barcode>().is_err());
        let upc: Barcode = "036000291452".parse().expect("valid UPC-A");
        assert_eq!(upc.as_str(), "0036000291452");
        assert!("03600029145".parse::<Barcode>().is_err());
        assert!("40063813339x1".parse::<Barcode>().is_err());
        let made = Barcode::with_check_digit("400638133393").expect("12 digits");
        assert_eq!(made.as_str(), "4006381333931");
        assert!(Barcode::with_check_digit("40063813339").is_err());
    }

    #[test]
    fn days_round_trip() {
        for s in ["1970-01-01", "2000-02-29", "2026-11-24", "2100-12-31"] {
            let d: Day = s.parse().expect("valid day");
            assert_eq!(d.to_string(), s);
        }
        assert!("2026-02-30".parse::<Day>().is_err());
        assert!("2026-13-01".parse::<Day>().is_err());
        assert_eq!(
            Day::from_unix_ms(1_764_000_000_000).to_string(),
            "2025-11-24"
        );
    }

    #[test]
    fn doc_ids_round_trip() {
        let till = TillId::from_bytes([7; 32]);
        let day: Day = "2026-11-24".parse().expect("day");
        for id in [
            DocId::Catalog,
            DocId::Config,
            DocId::Membership,
            DocId::Sales(till, day),
            DocId::Stock(till, day),
            DocId::Audit(till, day.month()),
        ] {
            assert_eq!(id.to_string().parse::<DocId>().expect("parses"), id);
        }
        assert!("sales/zz/2026-11-24".parse::<DocId>().is_err());
    }

    #[test]
    fn receipts_round_trip() {
        let r: Receipt = "T-01-42".parse().expect("receipt");
        assert_eq!(r.till().as_str(), "T-01");
        assert_eq!(r.number(), 42);
        assert_eq!(r.to_string(), "T-01-42");
        assert!("T01-0".parse::<Receipt>().is_err());
        assert!("T01-007".parse::<Receipt>().is_err());
        assert!("T01".parse::<Receipt>().is_err());
    }
}
