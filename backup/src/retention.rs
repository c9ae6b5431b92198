//! Which snapshots on a sink to keep and which to delete.
//!
//! A [`Policy`] keeps the newest `keep_last` snapshots, plus the newest
//! snapshot of each of the most recent `daily` UTC days, `weekly` ISO weeks
//! (Monday to Sunday) and `monthly` calendar months that have snapshots: the
//! grandfather-father-son scheme. The rules add up; a snapshot kept by any of
//! them is kept. Two guarantees hold whatever the policy: the newest snapshot
//! is always kept, and a snapshot that holds the only copy of some data is
//! never deleted.
//!
//! [`plan`] only decides; deleting is up to the sink. Planning is idempotent:
//! planning again over the kept snapshots with the same policy deletes nothing.
//! Dates are computed in UTC from unix milliseconds, so every till in a store
//! agrees on them whatever its time zone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many snapshots a sink keeps. See the [module docs](self) for the rules.
///
/// Written compactly as `last=7,daily=7,weekly=4,monthly=12` (see
/// [`FromStr`] and [`Display`](fmt::Display)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Keep this many of the newest snapshots.
    pub keep_last: usize,
    /// Keep the newest snapshot of each of this many most recent UTC days
    /// that have snapshots.
    pub daily: usize,
    /// Keep the newest snapshot of each of this many most recent ISO weeks
    /// (Monday to Sunday, UTC) that have snapshots.
    pub weekly: usize,
    /// Keep the newest snapshot of each of this many most recent calendar
    /// months (UTC) that have snapshots.
    pub monthly: usize,
}

impl Default for Policy {
    /// `last=7,daily=7,weekly=4,monthly=12`: a week of every snapshot, then
    /// roughly a month of weeklies and a year of monthlies.
    fn default() -> Self {
        Self {
            keep_last: 7,
            daily: 7,
            weekly: 4,
            monthly: 12,
        }
    }
}

/// The keys of the compact form, in the order [`Display`](fmt::Display) writes them.
const KEYS: [&str; 4] = ["last", "daily", "weekly", "monthly"];

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "last={},daily={},weekly={},monthly={}",
            self.keep_last, self.daily, self.weekly, self.monthly
        )
    }
}

impl FromStr for Policy {
    type Err = ParsePolicyError;

    /// Parses `last=N,daily=N,weekly=N,monthly=N`: all four keys, each once,
    /// in any order, with optional spaces around keys and values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ParsePolicyError::Empty);
        }
        let mut counts: [Option<usize>; 4] = [None; 4];
        for part in s.split(',') {
            let (slot, count) = parse_pair(part.trim())?;
            if counts[slot].replace(count).is_some() {
                return Err(ParsePolicyError::Repeated(KEYS[slot].to_owned()));
            }
        }
        match counts {
            [Some(keep_last), Some(daily), Some(weekly), Some(monthly)] => Ok(Self {
                keep_last,
                daily,
                weekly,
                monthly,
            }),
            _ => {
                let missing = KEYS
                    .iter()
                    .zip(counts)
                    .filter(|(_, count)| count.is_none())
                    .map(|(key, _)| *key)
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(ParsePolicyError::Missing(missing))
            }
        }
    }
}

/// Parses one `key=count` pair into the key's index in [`KEYS`] and the count.
fn parse_pair(part: &str) -> Result<(usize, usize), ParsePolicyError> {
    let (key, value) = part
        .split_once('=')
        .ok_or_else(|| ParsePolicyError::NotKeyValue(part.to_owned()))?;
    let (key, value) = (key.trim(), value.trim());
    let slot = KEYS
        .iter()
        .position(|k| *k == key)
        .ok_or_else(|| ParsePolicyError::UnknownKey(key.to_owned()))?;
    let count = value.parse().map_err(|_| ParsePolicyError::BadCount {
        key: key.to_owned(),
        value: value.to_owned(),
    })?;
    Ok((slot, count))
}

/// A retention policy in compact form cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePolicyError {
    /// Nothing was written.
    #[error("the retention policy is empty; write e.g. last=7,daily=7,weekly=4,monthly=12")]
    Empty,
    /// A comma-separated part has no `=`.
    #[error(
        "`{0}` in the retention policy is not key=count; write e.g. \
         last=7,daily=7,weekly=4,monthly=12"
    )]
    NotKeyValue(String),
    /// A key other than `last`, `daily`, `weekly` or `monthly`.
    #[error("unknown retention key `{0}`; the keys are last, daily, weekly and monthly")]
    UnknownKey(String),
    /// A count that is not a whole number.
    #[error("retention `{key}={value}` is not a count; use a whole number such as 0 or 7")]
    BadCount {
        /// The key.
        key: String,
        /// What was written for its count.
        value: String,
    },
    /// A key given twice.
    #[error("retention key `{0}` is given twice; give each key once")]
    Repeated(String),
    /// Keys left out, comma-separated.
    #[error(
        "the retention policy does not say {0}; give all four keys, e.g. \
         last=7,daily=7,weekly=4,monthly=12 (0 turns a rule off)"
    )]
    Missing(String),
}

/// A snapshot on a sink, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The snapshot's name on the sink; what [`Plan`] lists.
    pub name: String,
    /// When the snapshot was made, in milliseconds since the unix epoch (UTC).
    pub created_ms: u64,
    /// The snapshot holds data that is not yet anywhere else, so it is never
    /// deleted whatever the policy says.
    pub only_copy: bool,
}

/// What to do with each snapshot: every item's name is in exactly one list,
/// in the order the items were given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Plan {
    /// Names of the snapshots to keep.
    pub keep: Vec<String>,
    /// Names of the snapshots that may be deleted.
    pub delete: Vec<String>,
}

/// Decides which of a sink's snapshots to keep under `policy`.
///
/// Snapshots made in the same millisecond are ordered by name, then by their
/// position in `items` (later counts as newer), so the plan never depends on
/// the order a sink happens to list them in, beyond that final tie-break.
pub fn plan(policy: &Policy, items: &[Item]) -> Plan {
    let order = newest_first(items);
    let mut keep = vec![false; items.len()];
    if let Some(&newest) = order.first() {
        keep[newest] = true;
    }
    for &i in order.iter().take(policy.keep_last) {
        keep[i] = true;
    }
    keep_newest_per_period(items, &order, policy.daily, unix_day, &mut keep);
    keep_newest_per_period(items, &order, policy.weekly, unix_week, &mut keep);
    keep_newest_per_period(items, &order, policy.monthly, unix_month, &mut keep);
    for (i, item) in items.iter().enumerate() {
        keep[i] |= item.only_copy;
    }
    split(items, &keep)
}

/// Indices of `items`, newest first.
fn newest_first(items: &[Item]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let (x, y) = (&items[a], &items[b]);
        (y.created_ms, &y.name, b).cmp(&(x.created_ms, &x.name, a))
    });
    order
}

/// Maps a creation time in unix milliseconds to the number of its day, week
/// or month.
type PeriodOf = fn(u64) -> u64;

/// Marks the newest item of each of the `periods` most recent periods that
/// have items. `order` is newest first, so period numbers never rise along it
/// and the first item seen in a period is its newest.
fn keep_newest_per_period(
    items: &[Item],
    order: &[usize],
    periods: usize,
    period_of: PeriodOf,
    keep: &mut [bool],
) {
    let mut current = None;
    let mut seen = 0;
    for &i in order {
        let period = period_of(items[i].created_ms);
        if current == Some(period) {
            continue;
        }
        if seen == periods {
            break;
        }
        current = Some(period);
        seen += 1;
        keep[i] = true;
    }
}

/// Splits the items' names by the `keep` marks, keeping input order.
fn split(items: &[Item], keep: &[bool]) -> Plan {
    let mut plan = Plan::default();
    for (item, &kept) in items.iter().zip(keep) {
        let list = if kept {
            &mut plan.keep
        } else {
            &mut plan.delete
        };
        list.push(item.name.clone());
    }
    plan
}

const MS_PER_DAY: u64 = 86_400_000;

/// Days since 1970-01-01 (UTC).
fn unix_day(ms: u64) -> u64 {
    ms / MS_PER_DAY
}

/// ISO weeks (Monday to Sunday) since the week of 1970-01-01. That day was
/// a Thursday, so the first week began on day -3, Monday 1969-12-29.
fn unix_week(ms: u64) -> u64 {
    (unix_day(ms) + 3) / 7
}

/// Calendar months since year 0: `year * 12 + month - 1`.
fn unix_month(ms: u64) -> u64 {
    let (year, month, _) = civil_from_days(unix_day(ms));
    year * 12 + month - 1
}

/// The proleptic Gregorian `(year, month, day)` of a day number counted from
/// 1970-01-01, with months and days from 1: the store's own calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let day =
        tillmesh_store::Day::from_unix_ms(0).add_days(i64::try_from(days).unwrap_or(i64::MAX));
    let (year, month, day) = day.ymd();
    (year.unsigned_abs(), u64::from(month), u64::from(day))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    /// Day number of 2024-01-01.
    const JAN_1_2024: u64 = 19_723;

    fn item(name: &str, created_ms: u64) -> Item {
        Item {
            name: name.to_owned(),
            created_ms,
            only_copy: false,
        }
    }

    fn policy(keep_last: usize, daily: usize, weekly: usize, monthly: usize) -> Policy {
        Policy {
            keep_last,
            daily,
            weekly,
            monthly,
        }
    }

    /// One snapshot at 02:00 UTC on each day, named `YYYY-MM-DD`.
    fn daily_snapshots(first_day: u64, count: u64) -> Vec<Item> {
        (first_day..first_day + count)
            .map(|day| {
                let (y, m, d) = civil_from_days(day);
                item(
                    &format!("{y:04}-{m:02}-{d:02}"),
                    day * MS_PER_DAY + 2 * HOUR_MS,
                )
            })
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sixty_daily_snapshots_under_gfs() {
        // 2024-01-06 (a Saturday) to 2024-03-05 (a Tuesday), across a leap day.
        let items = daily_snapshots(JAN_1_2024 + 5, 60);
        assert_eq!(items.first().map(|i| i.name.as_str()), Some("2024-01-06"));
        assert_eq!(items.last().map(|i| i.name.as_str()), Some("2024-03-05"));
        let plan = plan(&policy(0, 7, 4, 3), &items);
        let expected = names(&[
            "2024-01-31", // monthly: January
            "2024-02-18", // weekly: 12-18 Feb
            "2024-02-25", // weekly: 19-25 Feb
            "2024-02-28", // daily
            "2024-02-29", // daily; monthly: February
            "2024-03-01", // daily
            "2024-03-02", // daily
            "2024-03-03", // daily; weekly: 26 Feb-3 Mar
            "2024-03-04", // daily
            "2024-03-05", // daily; weekly: 4-10 Mar; monthly: March; newest
        ]);
        assert_eq!(plan.keep, expected);
        assert_eq!(plan.delete.len(), 50);
        assert!(!plan.delete.iter().any(|n| expected.contains(n)));
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let items = daily_snapshots(JAN_1_2024, 10);
        let plan = plan(&policy(3, 0, 0, 0), &items);
        assert_eq!(
            plan.keep,
            names(&["2024-01-08", "2024-01-09", "2024-01-10"])
        );
        assert_eq!(plan.delete.len(), 7);
    }

    #[test]
    fn all_zero_policy_keeps_only_the_newest() {
        let items = vec![item("b", 20), item("c", 30), item("a", 10)];
        let plan = plan(&policy(0, 0, 0, 0), &items);
        assert_eq!(plan.keep, names(&["c"]));
        assert_eq!(plan.delete, names(&["b", "a"]));
    }

    #[test]
    fn only_copies_survive_any_policy() {
        let mut items = daily_snapshots(JAN_1_2024, 30);
        for i in [0, 11, 17] {
            items[i].only_copy = true;
        }
        let plan = plan(&policy(0, 0, 0, 0), &items);
        assert_eq!(
            plan.keep,
            names(&["2024-01-01", "2024-01-12", "2024-01-18", "2024-01-30"])
        );
    }

    #[test]
    fn empty_input_gives_an_empty_plan() {
        assert_eq!(plan(&Policy::default(), &[]), Plan::default());
    }

    #[test]
    fn lists_follow_input_order() {
        let items = vec![
            item("old", 1),
            item("newest", 5 * MS_PER_DAY),
            item("older", 0),
            item("new", 4 * MS_PER_DAY),
        ];
        let plan = plan(&policy(2, 0, 0, 0), &items);
        assert_eq!(plan.keep, names(&["newest", "new"]));
        assert_eq!(plan.delete, names(&["old", "older"]));
    }

    #[test]
    fn days_end_at_utc_midnight() {
        let midnight = (JAN_1_2024 + 1) * MS_PER_DAY;
        let items = vec![
            item("early", midnight - 10 * HOUR_MS),
            item("last-ms", midnight - 1),
            item("next-day", midnight),
        ];
        let plan = plan(&policy(0, 2, 0, 0), &items);
        assert_eq!(plan.keep, names(&["last-ms", "next-day"]));
        assert_eq!(plan.delete, names(&["early"]));
    }

    #[test]
    fn weeks_run_monday_to_sunday_across_new_year() {
        // Sun 2024-12-29, Mon 2024-12-30 and Sun 2025-01-05: the last two share
        // ISO week 1 of 2025.
        let items = vec![
            item("sun-29-dec", 20_086 * MS_PER_DAY),
            item("mon-30-dec", 20_087 * MS_PER_DAY),
            item("sun-5-jan", 20_093 * MS_PER_DAY),
        ];
        let plan = plan(&policy(0, 0, 2, 0), &items);
        assert_eq!(plan.keep, names(&["sun-29-dec", "sun-5-jan"]));
        assert_eq!(plan.delete, names(&["mon-30-dec"]));
    }

    #[test]
    fn the_first_unix_week_starts_on_monday_29_december_1969() {
        // Thu 1970-01-01 to Sun 1970-01-04 are week 0; Mon 1970-01-05 is week 1.
        assert_eq!(unix_week(0), 0);
        assert_eq!(unix_week(4 * MS_PER_DAY - 1), 0);
        assert_eq!(unix_week(4 * MS_PER_DAY), 1);
        assert_eq!(unix_week(11 * MS_PER_DAY - 1), 1);
        assert_eq!(unix_week(11 * MS_PER_DAY), 2);
    }

    #[test]
    fn months_and_years_turn_at_utc_midnight() {
        let new_year_2025 = 20_089 * MS_PER_DAY;
        let items = vec![
            item("nov", (20_089 - 40) * MS_PER_DAY),
            item("dec-early", (20_089 - 20) * MS_PER_DAY),
            item("dec-last-ms", new_year_2025 - 1),
            item("jan", new_year_2025),
        ];
        let plan = plan(&policy(0, 0, 0, 2), &items);
        assert_eq!(plan.keep, names(&["dec-last-ms", "jan"]));
        assert_eq!(unix_month(new_year_2025), 2025 * 12);
        assert_eq!(unix_month(new_year_2025 - 1), 2024 * 12 + 11);
    }

    #[test]
    fn same_millisecond_ties_break_by_name() {
        let items = vec![item("b", 7), item("a", 7), item("c", 7)];
        let plan = plan(&policy(0, 1, 0, 0), &items);
        assert_eq!(plan.keep, names(&["c"]));
    }

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(789), (1972, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(JAN_1_2024), (2024, 1, 1));
        assert_eq!(civil_from_days(47_482), (2100, 1, 1));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1)); // 2100 has no 29 February
        assert_eq!(civil_from_days(u64::MAX / MS_PER_DAY).0, 584_556_019);
    }

    #[test]
    fn civil_dates_advance_one_day_at_a_time() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = |y: u64, m: u64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut previous = civil_from_days(0);
        for day in 1..200_000 {
            let (y, m, d) = previous;
            let expected = if d < month_len(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            let actual = civil_from_days(day);
            assert_eq!(actual, expected, "day {day}");
            previous = actual;
        }
    }

    #[test]
    fn default_policy_round_trips_through_text() {
        let default = Policy::default();
        assert_eq!(default, policy(7, 7, 4, 12));
        assert_eq!(default.to_string(), "last=7,daily=7,weekly=4,monthly=12");
        assert_eq!("last=7,daily=7,weekly=4,monthly=12".parse(), Ok(default));
    }

    #[test]
    fn policy_text_takes_any_order_and_spaces() {
        assert_eq!(
            " monthly = 0 , weekly=1,daily=2, last=3 ".parse(),
            Ok(policy(3, 2, 1, 0))
        );
    }

    #[test]
    fn bad_policy_text_says_what_is_wrong() {
        let parse = |s: &str| s.parse::<Policy>().expect_err(s);
        assert_eq!(parse(""), ParsePolicyError::Empty);
        assert_eq!(parse("  "), ParsePolicyError::Empty);
        assert_eq!(
            parse("last=7,daily"),
            ParsePolicyError::NotKeyValue("daily".into())
        );
        assert_eq!(
            parse("last=7,yearly=2"),
            ParsePolicyError::UnknownKey("yearly".into())
        );
        assert_eq!(
            parse("last=-1"),
            ParsePolicyError::BadCount {
                key: "last".into(),
                value: "-1".into()
            }
        );
        assert_eq!(
            parse("last=7,last=8"),
            ParsePolicyError::Repeated("last".into())
        );
        let missing = parse("daily=30,last=1");
        assert_eq!(missing, ParsePolicyError::Missing("weekly, monthly".into()));
        assert!(missing.to_string().contains("does not say weekly, monthly"));
        assert!(
            parse("last=7,,daily=1")
                .to_string()
                .contains("not key=count")
        );
    }

    /// An independent statement of the rules: group by period in a map and
    /// take the newest item of the most recent periods.
    fn reference_plan(policy: &Policy, items: &[Item]) -> BTreeSet<usize> {
        let mut oldest_first: Vec<usize> = (0..items.len()).collect();
        oldest_first.sort_by_key(|&i| (items[i].created_ms, items[i].name.clone(), i));
        let mut kept: BTreeSet<usize> = oldest_first
            .iter()
            .rev()
            .take(policy.keep_last.max(1))
            .copied()
            .collect();
        let rules: [(usize, PeriodOf); 3] = [
            (policy.daily, unix_day),
            (policy.weekly, unix_week),
            (policy.monthly, unix_month),
        ];
        for (periods, period_of) in rules {
            let mut newest: BTreeMap<u64, usize> = BTreeMap::new();
            for &i in &oldest_first {
                newest.insert(period_of(items[i].created_ms), i);
            }
            kept.extend(newest.values().rev().take(periods));
        }
        kept.extend((0..items.len()).filter(|&i| items[i].only_copy));
        kept
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (0usize..6, 0usize..9, 0usize..6, 0usize..14).prop_map(|(l, d, w, m)| policy(l, d, w, m))
    }

    /// Snapshots over a short span (many sharing a day or week) or a long one
    /// (years), some marked as the only copy, with unique names in shuffled
    /// order.
    fn arb_items() -> impl Strategy<Value = Vec<Item>> {
        let span = prop_oneof![
            Just(3 * MS_PER_DAY),
            Just(90 * MS_PER_DAY),
            Just(5 * 365 * MS_PER_DAY),
            Just(u64::MAX),
        ];
        span.prop_flat_map(|span| {
            prop::collection::vec((0..span, prop::bool::weighted(0.1), 0u32..1000), 0..60)
        })
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (created_ms, only_copy, tag))| Item {
                    name: format!("{tag:03}-{i}"),
                    created_ms,
                    only_copy,
                })
                .collect()
        })
    }

    fn newest_name(items: &[Item]) -> Option<&str> {
        items
            .iter()
            .enumerate()
            .max_by_key(|(i, item)| (item.created_ms, &item.name, *i))
            .map(|(_, item)| item.name.as_str())
    }

    proptest! {
        #[test]
        fn every_item_lands_in_exactly_one_list(policy in arb_policy(), items in arb_items()) {
            let plan = plan(&policy, &items);
            let keep: BTreeSet<&String> = plan.keep.iter().collect();
            let delete: BTreeSet<&String> = plan.delete.iter().collect();
            prop_assert!(keep.is_disjoint(&delete));
            prop_assert_eq!(plan.keep.len() + plan.delete.len(), items.len());
            let mut merged: Vec<&String> = plan.keep.iter().chain(&plan.delete).collect();
            let mut input: Vec<&String> = items.iter().map(|i| &i.name).collect();
            merged.sort();
            input.sort();
            prop_assert_eq!(merged, input);
        }

        #[test]
        fn lists_keep_input_order(policy in arb_policy(), items in arb_items()) {
            let plan = plan(&policy, &items);
            let position = |name: &String| items.iter().position(|i| &i.name == name);
            for list in [&plan.keep, &plan.delete] {
                let positions: Vec<_> = list.iter().map(position).collect();
                prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
            }
        }

        #[test]
        fn newest_and_only_copies_are_kept(policy in arb_policy(), items in arb_items()) {
            let plan = plan(&policy, &items);
            if let Some(newest) = newest_name(&items) {
                prop_assert!(plan.keep.iter().any(|n| n == newest));
            }
            for item in items.iter().filter(|i| i.only_copy) {
                prop_assert!(plan.keep.contains(&item.name));
            }
        }

        #[test]
        fn planning_again_deletes_nothing(policy in arb_policy(), items in arb_items()) {
            let first = plan(&policy, &items);
            let kept: Vec<Item> = items
                .iter()
                .filter(|i| first.keep.contains(&i.name))
                .cloned()
                .collect();
            let second = plan(&policy, &kept);
            prop_assert!(second.delete.is_empty(), "{:?}", second.delete);
            prop_assert_eq!(second.keep, first.keep);
        }

        #[test]
        fn keeps_no_more_than_the_policy_allows(policy in arb_policy(), items in arb_items()) {
            let plan = plan(&policy, &items);
            let only_copies = items.iter().filter(|i| i.only_copy).count();
            let bound = policy.keep_last + policy.daily + policy.weekly + policy.monthly + 1
                + only_copies;
            prop_assert!(plan.keep.len() <= bound);
        }

        #[test]
        fn matches_the_reference_rules(policy in arb_policy(), items in arb_items()) {
            let plan = plan(&policy, &items);
            let expected: Vec<&String> = reference_plan(&policy, &items)
                .into_iter()
                .map(|i| &items[i].name)
                .collect();
            let actual: Vec<&String> = plan.keep.iter().collect();
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn policy_text_round_trips(policy in (any::<usize>(), any::<usize>(), any::<usize>(), any::<usize>())) {
            let policy = Policy { keep_last: policy.0, daily: policy.1, weekly: policy.2, monthly: policy.3 };
            prop_assert_eq!(policy.to_string().parse::<Policy>(), Ok(policy));
        }
    }
}
