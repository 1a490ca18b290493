//! Retention: removing the oldest sealed segments by age and by total size.
//!
//! Retention works on whole segments, never on single records, and never removes the last
//! (active) segment. A run whose records all lay in removed segments is deleted from the index;
//! a run that began in a removed segment and goes on in a kept one stays, marked `partial`
//! (its start is gone), until [`Wal::compact`] drops its remaining records.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::error::{Result, WalError};
use crate::index::system_time_to_ms;
use crate::segment::{file_len, list_segments, segment_path};
use crate::wal::Wal;

/// What a retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Runs deleted from the index because none of their records is left.
    pub runs_removed: u64,
}

impl Wal {
    /// Applies the configured [`Retention`](crate::Retention) as of `now`.
    ///
    /// Runs on open and whenever a segment is sealed; call it to apply retention at other
    /// times (tests pass a `now` of their choosing).
    pub fn apply_retention(&mut self, now: SystemTime) -> Result<RetentionReport> {
        self.check_writable("apply retention to")?;
        let _guard = self.lock_dir()?;
        self.apply_retention_locked(now)
    }

    pub(crate) fn apply_retention_locked(&mut self, now: SystemTime) -> Result<RetentionReport> {
        let retention = self.config.retention;
        let segments = list_segments(&self.dir)?;
        let Some((_active, sealed)) = segments.split_last() else { return Ok(RetentionReport::default()) };
        if sealed.is_empty() || (retention.max_age.is_none() && retention.max_total_bytes.is_none()) {
            return Ok(RetentionReport::default());
        }
        let mut sizes = Vec::with_capacity(segments.len());
        for &seq in &segments {
            sizes.push(file_len(&segment_path(&self.dir, seq))?.unwrap_or(0));
        }

        // Oldest first, so the kept segments stay one contiguous, newest stretch.
        let mut remove = 0;
        if let Some(cutoff) = retention.max_age.and_then(|age| now.checked_sub(age)) {
            let cutoff_ms = system_time_to_ms(cutoff);
            let newest: HashMap<u64, i64> =
                self.index.segment_stats()?.into_iter().map(|s| (s.segment, s.last_at_ms)).collect();
            while let Some(&seq) = sealed.get(remove) {
                let newest_ms = match newest.get(&seq) {
                    Some(&ms) => ms,
                    // No decodable record to date it by: the file's modification time.
                    None => modified_ms(&segment_path(&self.dir, seq)).unwrap_or(i64::MAX),
                };
                if newest_ms >= cutoff_ms {
                    break;
                }
                remove += 1;
            }
        }
        if let Some(max_total) = retention.max_total_bytes {
            let mut total: u64 = sizes[remove..].iter().sum();
            while remove < sealed.len() && total > max_total {
                total -= sizes[remove];
                remove += 1;
            }
        }
        if remove == 0 {
            return Ok(RetentionReport::default());
        }

        let mut report = RetentionReport::default();
        for (&seq, &size) in segments.iter().zip(&sizes).take(remove) {
            let path = segment_path(&self.dir, seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io("remove", path, e)),
            }
            report.segments_removed += 1;
            report.bytes_removed += size;
        }
        self.config.storage.sync_dir(&self.dir).map_err(|e| WalError::io("fsync", &self.dir, e))?;
        // Files first, index second: a crash in between leaves index rows of missing segments,
        // which the next open forgets (`forget_missing_segments`).
        report.runs_removed = self.index.forget_segments_before(segments[remove])?;
        tracing::debug!(?report, "WAL retention");
        Ok(report)
    }
}

fn modified_ms(path: &std::path::Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(system_time_to_ms(modified))
}
