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
