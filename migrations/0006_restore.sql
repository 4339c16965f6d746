-- Restores (`odbackup restore`): what went back to which drive, so that a killed restore resumes where it
-- stopped and a re-run uploads nothing it already put back. Kept beside the backup's own tables, apart from
-- them: nothing here changes what a backup or download does.

-- One row per place restored to: a drive (compared without regard to case: personal drive IDs change case
-- between endpoints) and the folder under its root that the backup's paths are placed under (`/` or `--to`).
CREATE TABLE restore_targets (
    id          INTEGER PRIMARY KEY,
    drive_id    TEXT NOT NULL COLLATE NOCASE,
    root_path   TEXT NOT NULL,
    drive_type  TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (drive_id, root_path)
);

-- One row per file or folder of the source (a backup's files on disk, or a plain folder's) planned for a target.
-- source_path: relative to the source folder. remote_path: where it goes, relative to the target folder, after
-- any --rename-invalid mapping (renamed_from keeps the name it replaced). stamp: the local file's size and
-- modification time when planned; a file that is done stays done while its stamp holds.
-- state: pending → done | failed | skipped (skip_reason says why: already there, a different file there, a link).
-- refused = 1: failed at planning, before any request (a name the service forbids); never sent.
-- seen_run: the run that last planned the row; a run uploads only the rows it planned. item_id: the target
-- item once done (or the item a failed verification left behind, which a re-run replaces).
CREATE TABLE restore_files (
    target_id      INTEGER NOT NULL REFERENCES restore_targets (id) ON DELETE CASCADE,
    source_path    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind = 'file' OR kind = 'folder'),
    remote_path    TEXT NOT NULL,
    size           INTEGER NOT NULL,
    stamp          TEXT NOT NULL,
    created_at     TEXT,
    modified_at    TEXT,
    renamed_from   TEXT,
    state          TEXT NOT NULL
                   CHECK (state = 'pending' OR state = 'done' OR state = 'failed' OR state = 'skipped'),
    skip_reason    TEXT,
    refused        INTEGER NOT NULL DEFAULT 0 CHECK (refused IN (0, 1)),
    seen_run       INTEGER,
    item_id        TEXT,
    quick_xor      TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    error_class    TEXT,
    http_status    INTEGER,
    error_message  TEXT,
    failed_at      TEXT,
    done_at        TEXT,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (target_id, source_path)
);
CREATE INDEX restore_files_run ON restore_files (target_id, seen_run, state);

-- Upload sessions in progress. The URL is pre-authenticated (a credential), so it is kept apart and only until
-- its file is done or the session is gone; stamp is the file's when the session began (a changed file starts a
-- new session).
CREATE TABLE restore_sessions (
    target_id    INTEGER NOT NULL,
    source_path  TEXT NOT NULL,
    stamp        TEXT NOT NULL,
    upload_url   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (target_id, source_path),
    FOREIGN KEY (target_id, source_path) REFERENCES restore_files (target_id, source_path) ON DELETE CASCADE
);
