//! Run history: one row per command run, so `status` can say what happened last and whether it finished.
//!
//! Knows nothing of what a summary contains: the caller hands in its JSON.

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::{Manifest, Result, now};

/// One run, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run's ID.
    pub id: i64,
    /// `crawl`, `download` or `backup`.
    pub command: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time, if it ended cleanly.
    pub(crate) finished_at: Option<String>,
    /// `ok`, `incomplete`, `interrupted` or `error`; none if the run was killed.
    pub outcome: Option<String>,
    /// The run's summary document.
    pub summary: Option<serde_json::Value>,
}

impl Manifest {
    /// Start recording a run of `command`; returns its ID.
    pub(crate) fn begin_run(&mut self, command: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (command, started_at) VALUES (?1, ?2)",
                params![command, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Finish recording a run, with its outcome and summary (a JSON document).
    pub(crate) fn finish_run(
        &mut self,
        run_id: i64,
        outcome: &str,
        summary_json: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, outcome = ?3, summary_json = ?4 WHERE id = ?1",
                params![run_id, now(), outcome, summary_json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The latest run, finished or not.
    pub fn last_run(&self) -> Result<Option<RunRecord>> {
        self.last_run_where(None)
    }

    /// The latest run of `command` (`verify`, …), finished or not.
    pub(crate) fn last_run_of(&self, command: &str) -> Result<Option<RunRecord>> {
        self.last_run_where(Some(command))
    }

    fn last_run_where(&self, command: Option<&str>) -> Result<Option<RunRecord>> {
        self.conn
            .query_row(
                "SELECT id, command, started_at, finished_at, outcome, summary_json FROM runs
                 WHERE ?1 IS NULL OR command = ?1 ORDER BY id DESC LIMIT 1",
                [command],
                |r| {
                    let summary: Option<String> = r.get(5)?;
                    Ok(RunRecord {
                        id: r.get(0)?,
                        command: r.get(1)?,
                        started_at: r.get(2)?,
                        finished_at: r.get(3)?,
                        outcome: r.get(4)?,
                        // A summary that is not JSON is shown as absent rather than failing `status`.
                        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::testutil::manifest;

    #[test]
    fn runs_are_recorded_and_the_latest_is_reported() {
        let (_dir, mut m) = manifest();
        assert!(m.last_run().unwrap().is_none());
        let first = m.begin_run("crawl").unwrap();
        m.finish_run(first, "ok", r#"{"items": 3}"#).unwrap();
        let second = m.begin_run("backup").unwrap();
        assert!(second > first);
        let last = m.last_run().unwrap().unwrap();
        assert_eq!((last.id, last.command.as_str()), (second, "backup"));
        assert_eq!((last.finished_at, last.outcome), (None, None));
        m.finish_run(second, "incomplete", "not json").unwrap();
        let last = m.last_run().unwrap().unwrap();
        assert_eq!(last.outcome.as_deref(), Some("incomplete"));
        assert!(last.finished_at.is_some());
        assert!(last.summary.is_none());
        m.finish_run(first, "ok", r#"{"items": 3}"#).unwrap();
        let json = serde_json::to_value(m.status().unwrap()).unwrap();
        assert_eq!(json["last_run"]["command"], "backup");
    }
}
