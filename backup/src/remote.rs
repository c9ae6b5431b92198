//! What a remote store's HTTP answers mean for a sink, and when to ask again.
//!
//! Google's APIs (Drive among them) answer an error with a status and a body
//! `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}],
//! "status"}}`; the pair (status, first reason) says what happened. [`ApiError`]
//! reads such an answer (tolerating missing fields and bodies that are not
//! JSON at all, as a proxy may send), classifies it into a [`SinkErrorKind`]
//! and turns it into the [`SinkError`] a sink reports. [`retry_delay`] is the
//! request retry rule: throttled and transient failures are tried again after a
//! truncated exponential backoff with jitter (1 s doubling to 32 s, at most
//! [`MAX_TRIES`] tries in all), never sooner than a `Retry-After` asked; nothing
//! else is retried at the request level (a full Drive, a refused token and a
//! bad request need someone to act). No IO here: the client feeds it answers.

use std::time::{Duration, SystemTime};

use crate::schedule::Backoff;
use crate::sink::{SinkError, SinkErrorKind};

/// The pace of request retries: 1 s doubling to 32 s, with jitter.
pub const REQUEST_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    multiplier: 2,
    cap: Duration::from_secs(32),
};

/// Tries of one request in all, the first included.
pub const MAX_TRIES: u32 = 8;

/// An error answer of a remote API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The first `errors[].reason` (`storageQuotaExceeded`, `authError`, ...).
    pub reason: Option<String>,
    /// What it said (`error.message`, else the body's start, else the status).
    pub message: String,
    /// How long it asked to wait (`Retry-After`), if it did.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Read the answer `status` with `body` and its `Retry-After` header (if
    /// any), received at `now`.
    pub fn parse(status: u16, body: &[u8], retry_after: Option<&str>, now: SystemTime) -> ApiError {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let error = json.as_ref().map(|j| &j["error"]);
        let reason = error
            .and_then(|e| e["errors"][0]["reason"].as_str())
            .map(str::to_string);
        let message = error
            .and_then(|e| e["message"].as_str().or_else(|| e.as_str()))
            .map(str::to_string)
            .or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                (!text.is_empty()).then(|| text.chars().take(200).collect())
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        ApiError {
            status,
            reason,
            message,
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> SinkErrorKind {
        match (self.status, self.reason.as_deref()) {
            (401, _) => SinkErrorKind::Auth,
            (403, Some("storageQuotaExceeded" | "quotaExceeded")) => SinkErrorKind::Quota,
            (
                403,
                Some(
                    "userRateLimitExceeded"
                    | "rateLimitExceeded"
                    | "dailyLimitExceeded"
                    | "sharingRateLimitExceeded",
                ),
            ) => SinkErrorKind::Throttled,
            (403, _) => SinkErrorKind::Auth,
            (404 | 410, _) => SinkErrorKind::NotFound,
            (408, _) => SinkErrorKind::Transient,
            (429, _) => SinkErrorKind::Throttled,
            (500..=599, _) => SinkErrorKind::Transient,
            _ => SinkErrorKind::Invalid,
        }
    }

    /// The error a sink called `sink` reports for it.
    pub fn into_sink_error(self, sink: &str) -> SinkError {
        let sink = sink.to_string();
        let said = match &self.reason {
            Some(r) => format!("{} ({r}, HTTP {})", self.message, self.status),
            None => format!("{} (HTTP {})", self.message, self.status),
        };
        match self.kind() {
            SinkErrorKind::Auth => SinkError::Auth { sink, reason: said },
            SinkErrorKind::Quota => SinkError::Quota { sink, reason: said },
            SinkErrorKind::Throttled => SinkError::Throttled {
                sink,
                retry_after: self.retry_after,
            },
            SinkErrorKind::NotFound => SinkError::NotFound(format!("{sink}: {said}")),
            SinkErrorKind::Transient | SinkErrorKind::Damaged => {
                SinkError::Transient { sink, reason: said }
            }
            SinkErrorKind::Invalid => SinkError::Rejected { sink, reason: said },
        }
    }
}

/// How long to wait before try number `tries + 1` of a request whose try
/// number `tries` failed with `kind` (asking for `retry_after`), or `None`
/// when it is not tried again. `unit` (in `0.0..1.0`) is the jitter.
pub fn retry_delay(
    kind: SinkErrorKind,
    retry_after: Option<Duration>,
    tries: u32,
    unit: f64,
) -> Option<Duration> {
    if tries >= MAX_TRIES || !matches!(kind, SinkErrorKind::Throttled | SinkErrorKind::Transient) {
        return None;
    }
    let wait = REQUEST_BACKOFF.delay(tries, unit);
    Some(retry_after.map_or(wait, |asked| wait.max(asked)))
}

/// A `Retry-After` value: seconds, or an HTTP date (`Wed, 21 Oct 2015
/// 07:28:00 GMT`) turned into the time left from `now` (zero if past).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// An IMF-fixdate (RFC 9110 §5.6.7), the form servers send.
fn parse_http_date(v: &str) -> Option<SystemTime> {
    // "Wed, 21 Oct 2015 07:28:00 GMT"
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == name)? as u64
        + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // Wed, 21 Oct 2015 07:28:00 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    /// Bodies as Drive sends them: storage full, a refused token, the rate
    /// limit, a file it does not show, a bad request.
    #[test]
    fn drive_answers_are_classified_as_their_kind() {
        let quota = br#"{"error":{"code":403,"message":"The user's Drive storage quota has been exceeded.","errors":[{"domain":"usageLimits","reason":"storageQuotaExceeded","message":"The user's Drive storage quota has been exceeded."}]}}"#;
        let e = ApiError::parse(403, quota, None, now());
        assert_eq!(e.reason.as_deref(), Some("storageQuotaExceeded"));
        assert_eq!(e.kind(), SinkErrorKind::Quota);
        let se = e.into_sink_error("drive");
        assert_eq!(se.kind(), SinkErrorKind::Quota);
        assert!(
            se.to_string().contains("storage quota has been exceeded"),
            "{se}"
        );

        let auth = br#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","errors":[{"message":"Invalid Credentials","domain":"global","reason":"authError","location":"Authorization","locationType":"header"}],"status":"UNAUTHENTICATED"}}"#;
        assert_eq!(
            ApiError::parse(401, auth, None, now()).kind(),
            SinkErrorKind::Auth
        );

        let rate = br#"{"error":{"code":403,"message":"User Rate Limit Exceeded","errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"User Rate Limit Exceeded"}]}}"#;
        let e = ApiError::parse(403, rate, Some("7"), now());
        assert_eq!(e.kind(), SinkErrorKind::Throttled);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert!(matches!(
            e.into_sink_error("drive"),
            SinkError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));

        let denied = br#"{"error":{"code":403,"message":"The user does not have sufficient permissions for this file.","errors":[{"domain":"global","reason":"insufficientFilePermissions"}]}}"#;
        assert_eq!(
            ApiError::parse(403, denied, None, now()).kind(),
            SinkErrorKind::Auth
        );
        let missing = br#"{"error":{"code":404,"message":"File not found: abc.","errors":[{"domain":"global","reason":"notFound","location":"fileId","locationType":"parameter"}]}}"#;
        assert_eq!(
            ApiError::parse(404, missing, None, now()).kind(),
            SinkErrorKind::NotFound
        );
        assert_eq!(
            ApiError::parse(429, b"", None, now()).kind(),
            SinkErrorKind::Throttled
        );
        assert_eq!(
            ApiError::parse(503, b"", None, now()).kind(),
            SinkErrorKind::Transient
        );
        let bad = ApiError::parse(
            400,
            br#"{"error":{"code":400,"message":"Invalid Value","errors":[{"reason":"invalid"}]}}"#,
            None,
            now(),
        );
        assert_eq!(bad.kind(), SinkErrorKind::Invalid);
        assert_eq!(bad.into_sink_error("drive").kind(), SinkErrorKind::Invalid);
    }

    #[test]
    fn bodies_that_are_not_googles_still_say_something() {
        let proxy = ApiError::parse(502, b"<html>Bad Gateway</html>", None, now());
        assert_eq!(proxy.reason, None);
        assert_eq!(proxy.message, "<html>Bad Gateway</html>");
        assert_eq!(proxy.kind(), SinkErrorKind::Transient);
        assert_eq!(ApiError::parse(500, b"", None, now()).message, "HTTP 500");
        // An `error` that is a bare string (OAuth endpoints answer so).
        let oauth = ApiError::parse(400, br#"{"error":"invalid_grant"}"#, None, now());
        assert_eq!(oauth.message, "invalid_grant");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now()),
            Some(Duration::ZERO),
            "a date already past"
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_835_438_400))
        );
        for bad in [
            "soon",
            "",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:00:00 GMT",
            "-5",
        ] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn only_throttled_and_transient_failures_are_retried_and_never_sooner_than_asked() {
        // Truncated exponential backoff: ceilings 1, 2, 4, ... 32 s.
        let waits: Vec<u64> = (1..MAX_TRIES)
            .map(|n| {
                retry_delay(SinkErrorKind::Transient, None, n, 1.0)
                    .expect("retried")
                    .as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32]);
        assert_eq!(
            retry_delay(SinkErrorKind::Transient, None, MAX_TRIES, 0.5),
            None
        );
        assert_eq!(
            retry_delay(
                SinkErrorKind::Throttled,
                Some(Duration::from_secs(90)),
                1,
                0.0
            ),
            Some(Duration::from_secs(90))
        );
        for never in [
            SinkErrorKind::Auth,
            SinkErrorKind::Quota,
            SinkErrorKind::Invalid,
            SinkErrorKind::NotFound,
            SinkErrorKind::Damaged,
        ] {
            assert_eq!(retry_delay(never, None, 1, 0.5), None, "{never:?}");
        }
    }
}
