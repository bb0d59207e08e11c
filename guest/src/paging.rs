//! Keyset paging over `MetaData.LastUpdatedTime` (docs/sync.md, "Keyset paging").
//!
//! QuickBooks only offers offset paging (`STARTPOSITION`), and offsets over a
//! set that changes while we page skip records. So every query starts at a
//! timestamp (`>=`, inclusive, because timestamps have one-second
//! resolution) and the offset only counts records *inside* the group that
//! shares that timestamp. An edited record gets a newer timestamp and moves
//! behind us, never out of the window.
//!
//! The offset inside a group is not stable either: when a member we already
//! read is edited it leaves the group and the later members shift down one
//! place. Each page therefore re-reads the last record of the previous page
//! (the anchor); if something else is in its place, the group shifted and is
//! read again from its start. Re-saving a record is a no-op in the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::customer::parse_timestamp;

/// Where the next page starts. Saved in the checkpoint after every stored page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Lower bound (inclusive) of `LastUpdatedTime`, as QuickBooks wrote it;
    /// `None` means from the beginning.
    pub since: Option<String>,
    /// How many records with exactly `since` were already read.
    pub read_in_group: u32,
    /// Id of the last record read, which the next page must start with when
    /// `read_in_group > 0`.
    pub anchor: Option<String>,
}

/// What the sync knows of one record of a page, in page order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub id: String,
    pub last_updated: String,
}

/// The query for the page at a position: from `since`, at a 1-based offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub since: Option<String>,
    pub start_position: u32,
}

/// What to do after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Store the page's records from `fresh_from` on, then continue at `next`.
    Continue { fresh_from: usize, next: Position },
    /// Store the page's records from `fresh_from` on; that was the last page.
    Done { fresh_from: usize, next: Position },
    /// The group shifted under us: store the page anyway (its records are
    /// current) and read the group again from its start.
    Reread { next: Position },
}

/// Errors in a page that make paging impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("customer {id} has no valid MetaData.LastUpdatedTime (`{value}`)")]
    BadTimestamp { id: String, value: String },
    #[error("page is not in LastUpdatedTime order: customer {id} at {value} comes after a later one")]
    OutOfOrder { id: String, value: String },
    #[error("a full page of {0} customers did not advance the position")]
    NoProgress(u32),
}

impl Position {
    /// The query for the next page. With records of the group already read, it
    /// starts one record early so the page begins with the anchor.
    pub fn query(&self) -> PageQuery {
        PageQuery { since: self.since.clone(), start_position: self.read_in_group.max(1) }
    }

    /// The position from which a new pass (the next incremental run) starts:
    /// the same timestamp, the whole group again.
    pub fn restart_group(&self) -> Position {
        Position { since: self.since.clone(), read_in_group: 0, anchor: None }
    }

    /// Decides what follows a page of `page_size` asked for at this position.
    pub fn after_page(&self, page: &[RecordKey], page_size: u32) -> Result<Step, PagingError> {
        let expects_anchor = self.read_in_group > 0 && self.anchor.is_some();
        if expects_anchor && page.first().map(|r| Some(&r.id) != self.anchor.as_ref()).unwrap_or(true) {
            return Ok(Step::Reread { next: self.restart_group() });
        }
        let fresh_from = usize::from(expects_anchor);
        let is_last = page.len() < page_size as usize;

        let Some(last) = page.last() else {
            return Ok(Step::Done { fresh_from: 0, next: self.clone() });
        };
        let mut previous: Option<DateTime<Utc>> = None;
        let mut instants = Vec::with_capacity(page.len());
        for record in page {
            let instant = parse_timestamp(&record.last_updated).ok_or_else(|| PagingError::BadTimestamp {
                id: record.id.clone(),
                value: record.last_updated.clone(),
            })?;
            if previous.is_some_and(|p| instant < p) {
                return Err(PagingError::OutOfOrder { id: record.id.clone(), value: record.last_updated.clone() });
            }
            previous = Some(instant);
            instants.push(instant);
        }
        let last_instant = *instants.last().expect("page is not empty");
        let in_last_group = instants.iter().rev().take_while(|t| **t == last_instant).count() as u32;
        let since_instant = self.since.as_deref().and_then(parse_timestamp);

        let next = if since_instant == Some(last_instant) {
            // The whole page is inside the group we were already in.
            Position {
                since: self.since.clone(),
                read_in_group: self.read_in_group + (page.len() - fresh_from) as u32,
                anchor: Some(last.id.clone()),
            }
        } else {
            Position {
                since: Some(last.last_updated.clone()),
                read_in_group: in_last_group,
                anchor: Some(last.id.clone()),
            }
        };
        if is_last {
            return Ok(Step::Done { fresh_from, next });
        }
        if next == *self {
            return Err(PagingError::NoProgress(page_size));
        }
        Ok(Step::Continue { fresh_from, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, second: u32) -> RecordKey {
        RecordKey { id: id.to_string(), last_updated: format!("2026-05-05T05:00:{second:02}-07:00") }
    }

    /// A tiny model of QuickBooks' query: records ordered by timestamp, ties
    /// in table order, an edit moves a record to the end with a new timestamp.
    struct Table {
        rows: Vec<RecordKey>,
    }

    impl Table {
        fn page(&self, query: &PageQuery, size: u32) -> Vec<RecordKey> {
            let since = query.since.as_deref().and_then(parse_timestamp);
            let mut matching: Vec<&RecordKey> = self
                .rows
                .iter()
                .filter(|r| since.is_none_or(|s| parse_timestamp(&r.last_updated).unwrap() >= s))
                .collect();
            matching.sort_by_key(|r| parse_timestamp(&r.last_updated).unwrap());
            matching.into_iter().skip(query.start_position as usize - 1).take(size as usize).cloned().collect()
        }

        fn edit(&mut self, id: &str, second: u32) {
            let at = self.rows.iter().position(|r| r.id == id).unwrap();
            let mut row = self.rows.remove(at);
            row.last_updated = key(0, second).last_updated;
            self.rows.push(row);
        }
    }

    /// Pages through the table, calling `between` before every page; returns
    /// the ids read (as stored) and the number of requests.
    fn sync(table: &mut Table, size: u32, mut between: impl FnMut(usize, &mut Table)) -> (Vec<String>, usize) {
        let mut position = Position::default();
        let mut stored = Vec::new();
        for request in 0.. {
            assert!(request < 1000, "paging loops");
            between(request, table);
            let page = table.page(&position.query(), size);
            match position.after_page(&page, size).unwrap() {
                Step::Continue { fresh_from, next } => {
                    stored.extend(page[fresh_from..].iter().map(|r| r.id.clone()));
                    position = next;
                }
                Step::Done { fresh_from, .. } => {
                    stored.extend(page[fresh_from..].iter().map(|r| r.id.clone()));
                    return (stored, request + 1);
                }
                Step::Reread { next } => {
                    stored.extend(page.iter().map(|r| r.id.clone()));
                    position = next;
                }
            }
        }
        unreachable!()
    }

    fn ids(table: &Table) -> Vec<String> {
        let mut ids: Vec<String> = table.rows.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    }

    fn distinct(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids.dedup();
        ids
    }

    #[test]
    fn distinct_timestamps_read_each_record_once() {
        let mut table = Table { rows: (1..=25).map(|i| key(i, i)).collect() };
        let (stored, requests) = sync(&mut table, 10, |_, _| {});
        assert_eq!(stored.len(), 25);
        assert_eq!(distinct(stored), ids(&table));
        assert_eq!(requests, 3);
    }

    #[test]
    fn more_than_a_page_sharing_one_timestamp_neither_loops_nor_skips() {
        let mut rows: Vec<RecordKey> = (1..=3).map(|i| key(i, 1)).collect();
        rows.extend((4..=28).map(|i| key(i, 2)));
        rows.extend((29..=31).map(|i| key(i, 3)));
        let mut table = Table { rows };
        let (stored, requests) = sync(&mut table, 10, |_, _| {});
        assert_eq!(stored.len(), 31, "each record stored once: {stored:?}");
        assert_eq!(distinct(stored), ids(&table));
        assert_eq!(requests, 4);
    }

    #[test]
    fn an_edit_inside_the_group_already_read_is_detected_and_nothing_is_skipped() {
        let mut table = Table { rows: (1..=30).map(|i| key(i, 5)).collect() };
        let (stored, _) = sync(&mut table, 10, |request, table| {
            if request == 1 {
                table.edit("3", 9); // already read: the group shifts down
            }
        });
        assert_eq!(distinct(stored), ids(&table));
    }

    #[test]
    fn edits_ahead_and_behind_move_records_to_the_end_and_they_are_read() {
        let mut table = Table { rows: (1..=40).map(|i| key(i, i / 4)).collect() };
        let (stored, _) = sync(&mut table, 7, |request, table| {
            if request == 2 {
                table.edit("1", 30);
                table.edit("35", 30);
                table.rows.push(key(41, 30));
            }
        });
        assert_eq!(distinct(stored), ids(&table));
    }

    #[test]
    fn a_page_out_of_order_is_an_error() {
        let position = Position::default();
        let err = position.after_page(&[key(1, 5), key(2, 4)], 10).unwrap_err();
        assert!(matches!(err, PagingError::OutOfOrder { .. }));
    }

    #[test]
    fn an_empty_first_page_is_done() {
        let step = Position::default().after_page(&[], 10).unwrap();
        assert_eq!(step, Step::Done { fresh_from: 0, next: Position::default() });
    }
}
