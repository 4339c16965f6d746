-- odbackup manifest, schema 1. Applied once, in a transaction; later changes go in new files.

-- Drives this manifest has seen.
CREATE TABLE drives (
    drive_id      TEXT PRIMARY KEY,
    drive_type    TEXT NOT NULL,
    owner         TEXT,
    root_item_id  TEXT,
    updated_at    TEXT NOT NULL
);

-- One row per command run.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    command       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,
    summary_json  TEXT
);

-- One full listing of a scope (the drive root, a path, a special folder). An unfinished one is resumed.
CREATE TABLE crawls (
    id             INTEGER PRIMARY KEY,
    drive_id       TEXT NOT NULL,
    scope_key      TEXT NOT NULL,
    scope_root_id  TEXT NOT NULL,
    scope_path     TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    completed_at   TEXT
);
CREATE INDEX crawls_scope ON crawls (drive_id, scope_key, completed_at);

-- Folders of a crawl still to list, with the saved nextLink of a partly listed one.
CREATE TABLE frontier (
    crawl_id           INTEGER NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    drive_id           TEXT NOT NULL,
    folder_id          TEXT NOT NULL,
    folder_path        TEXT NOT NULL,
    folder_local_path  TEXT NOT NULL,
    next_link          TEXT,
    PRIMARY KEY (crawl_id, folder_id)
);
-- `frontier()` reads a crawl's folders oldest first: this index is ordered by (crawl_id, rowid).
CREATE INDEX frontier_order ON frontier (crawl_id);

-- One row per drive item. The rowid orders downloads (new rows come last), so this is not WITHOUT ROWID.
-- state: pending → done | failed (downloads); skipped (with skip_reason) is never fetched; a folder's 'done'
-- means "listed". remote_deleted = 1: a completed crawl of its scope no longer saw it (the local copy is kept).
-- last_seen_crawl / listed_crawl: the crawl that last saw the row / last listed the folder to its end.
CREATE TABLE items (
    drive_id         TEXT NOT NULL,
    item_id          TEXT NOT NULL,
    parent_id        TEXT,
    name             TEXT NOT NULL,
    remote_path      TEXT NOT NULL,
    -- Relative path under the destination (mirror layout), built name by name from safe local names.
    local_path       TEXT NOT NULL,
    -- The CHECKs are OR chains, not IN lists: SQLite builds an ephemeral index for an IN list of more than two
    -- constants on every execution of a statement, which tripled the cost of the crawler's upsert.
    kind             TEXT NOT NULL
                     CHECK (kind = 'file' OR kind = 'folder' OR kind = 'package' OR kind = 'remote' OR kind = 'other'),
    size             INTEGER,
    quick_xor        TEXT,
    sha1             TEXT,
    sha256           TEXT,
    etag             TEXT,
    ctag             TEXT,
    mime_type        TEXT,
    created_at       TEXT,
    modified_at      TEXT,
    taken_at         TEXT,
    media            TEXT NOT NULL CHECK (media = 'photo' OR media = 'video' OR media = 'other'),
    state            TEXT NOT NULL
                     CHECK (state = 'pending' OR state = 'done' OR state = 'failed' OR state = 'skipped'),
    skip_reason      TEXT,
    remote_ref       TEXT,
    remote_deleted   INTEGER NOT NULL DEFAULT 0 CHECK (remote_deleted IN (0, 1)),
    deleted_at       TEXT,
    last_seen_crawl  INTEGER,
    listed_crawl     INTEGER,
    verification     TEXT,
    downloaded_at    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    error_class      TEXT,
    http_status      INTEGER,
    error_message    TEXT,
    failed_at        TEXT,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (drive_id, item_id)
);
CREATE INDEX items_state ON items (state, kind);
CREATE INDEX items_parent ON items (drive_id, parent_id);
CREATE INDEX items_path ON items (remote_path);
