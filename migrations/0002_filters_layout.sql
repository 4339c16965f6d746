-- odbackup manifest, schema 2: filters mark items instead of dropping them; a backup's settings that must not
-- change between runs (the layout) or whose change means re-judging every row (the filter) are remembered.

-- Why the run's filters leave this item out (`excluded by --exclude`, `extension not in --ext`, …); NULL when
-- it is wanted. Independent of `state`: a file already downloaded stays `done` (and on disk) when a later run
-- narrows the filters, and an excluded one is fetched as soon as a run's filters want it again.
ALTER TABLE items ADD COLUMN excluded TEXT;

-- Key/value settings of this backup: `layout` (mirror or date), `filter` (the fingerprint of the filters the
-- `excluded` column was last computed with).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;

-- Local paths are claimed by one item each, compared without regard to ASCII case so that `Foo` and `foo`
-- do not overwrite each other on a case-insensitive file system (macOS, Windows, exFAT).
CREATE INDEX items_local_path ON items (local_path COLLATE NOCASE);

-- Where a file was last written, relative to the destination. `local_path` is where the item belongs now; when
-- an incremental run sees a rename or a move, the two differ and the downloader moves the file instead of
-- fetching it again.
ALTER TABLE items ADD COLUMN written_path TEXT;
UPDATE items SET written_path = local_path WHERE state = 'done' AND kind = 'file';

-- Incremental runs: per drive and crawl scope, the delta link that asks for changes since the last applied
-- round (`delta_link`), the link a full crawl in progress will hand over when it completes (`pending_link`),
-- and where an unfinished round stopped paging (`cursor`).
CREATE TABLE delta_state (
    drive_id           TEXT NOT NULL,
    scope_key          TEXT NOT NULL,
    scope_root_id      TEXT NOT NULL,
    delta_link         TEXT,
    pending_link       TEXT,
    cursor             TEXT,
    last_applied_at    TEXT,
    last_changes       INTEGER,
    PRIMARY KEY (drive_id, scope_key)
) WITHOUT ROWID;

-- The changes of a delta round, staged page by page (with the cursor, in one transaction) and applied only once
-- the round's last page has arrived, parents before children. One row per item: a later sighting replaces an
-- earlier one and moves to the end.
CREATE TABLE delta_staging (
    seq        INTEGER PRIMARY KEY,
    drive_id   TEXT NOT NULL,
    scope_key  TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    parent_id  TEXT,
    deleted    INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    row_json   TEXT NOT NULL
);
CREATE UNIQUE INDEX delta_staging_item ON delta_staging (drive_id, scope_key, item_id);
