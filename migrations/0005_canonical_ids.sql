-- odbackup manifest, schema 5: every stored drive and item ID in its canonical form.
--
-- Since 2025 OneDrive Personal spells the same drive ID in upper or lower case depending on the endpoint and
-- the day (onedrive-api-docs #1902, abraunegg/onedrive #3336), and drops a leading zero from drive IDs in
-- remoteItem references (abraunegg/onedrive #3115, #3072). The manifest now keys every row on the canonical
-- form (src/ids.rs): a personal drive ID (12 to 16 hex digits) in lower case, left-padded with zeros to 16;
-- an item ID starting with one (`{driveId}!…`) with that prefix canonical; every other ID unchanged. This
-- file re-keys manifests written before; where a manifest already holds the same item under two spellings
-- (a run hit by the drift), the row that is done, not flagged deleted, seen last (then the oldest) is kept.

-- Every ID that changes, old spelling → canonical one.
CREATE TEMP TABLE drive_map AS
    SELECT DISTINCT old, lower(substr('0000000000000000' || old, -16)) AS new FROM (
        SELECT drive_id AS old FROM items UNION SELECT drive_id FROM drives UNION SELECT drive_id FROM crawls
        UNION SELECT drive_id FROM frontier UNION SELECT drive_id FROM delta_state
        UNION SELECT drive_id FROM delta_staging UNION SELECT drive_id FROM listed_urls
        UNION SELECT substr(remote_ref, 1, instr(remote_ref, '/') - 1) FROM items WHERE instr(remote_ref, '/') > 0
    )
    WHERE length(old) BETWEEN 12 AND 16 AND old NOT GLOB '*[^0-9A-Fa-f]*'
      AND lower(substr('0000000000000000' || old, -16)) <> old;
CREATE UNIQUE INDEX temp.drive_map_old ON drive_map (old);

CREATE TEMP TABLE item_map AS
    SELECT DISTINCT old,
           lower(substr('0000000000000000' || substr(old, 1, instr(old, '!') - 1), -16)) || substr(old, instr(old, '!'))
               AS new
    FROM (
        SELECT item_id AS old FROM items UNION SELECT parent_id FROM items UNION SELECT root_item_id FROM drives
        UNION SELECT scope_root_id FROM crawls UNION SELECT folder_id FROM frontier
        UNION SELECT scope_root_id FROM delta_state UNION SELECT item_id FROM delta_staging
        UNION SELECT parent_id FROM delta_staging UNION SELECT item_id FROM listed_urls
        UNION SELECT substr(remote_ref, instr(remote_ref, '/') + 1) FROM items WHERE instr(remote_ref, '/') > 0
    )
    WHERE instr(old, '!') BETWEEN 13 AND 17
      AND substr(old, 1, instr(old, '!') - 1) NOT GLOB '*[^0-9A-Fa-f]*'
      AND lower(substr('0000000000000000' || substr(old, 1, instr(old, '!') - 1), -16)) || substr(old, instr(old, '!'))
          <> old;
CREATE UNIQUE INDEX temp.item_map_old ON item_map (old);

-- Items whose key changes, and every row that will compete for the same canonical key.
CREATE TEMP TABLE rekeyed AS
    SELECT items.rowid AS rid, coalesce(dm.new, items.drive_id) AS nd, coalesce(im.new, items.item_id) AS ni
    FROM items
    LEFT JOIN drive_map dm ON dm.old = items.drive_id
    LEFT JOIN item_map im ON im.old = items.item_id
    WHERE dm.old IS NOT NULL OR im.old IS NOT NULL;
CREATE TEMP TABLE contenders AS
    SELECT items.rowid AS rid, k.nd, k.ni, items.state = 'done' AS done, items.remote_deleted AS gone,
           coalesce(items.last_seen_crawl, 0) AS seen
    FROM items JOIN rekeyed k ON k.rid = items.rowid
    UNION
    SELECT items.rowid, items.drive_id, items.item_id, items.state = 'done', items.remote_deleted,
           coalesce(items.last_seen_crawl, 0)
    FROM items JOIN (SELECT DISTINCT nd, ni FROM rekeyed) k ON items.drive_id = k.nd AND items.item_id = k.ni;
CREATE INDEX temp.contenders_key ON contenders (nd, ni);
DELETE FROM items WHERE rowid IN (
    SELECT c.rid FROM contenders c WHERE EXISTS (
        SELECT 1 FROM contenders o
        WHERE o.nd = c.nd AND o.ni = c.ni AND o.rid <> c.rid
          AND (o.done > c.done
               OR (o.done = c.done AND (o.gone < c.gone
                   OR (o.gone = c.gone AND (o.seen > c.seen
                       OR (o.seen = c.seen AND o.rid < c.rid))))))
    )
);
UPDATE items SET
    drive_id = (SELECT nd FROM rekeyed WHERE rid = items.rowid),
    item_id = (SELECT ni FROM rekeyed WHERE rid = items.rowid)
WHERE rowid IN (SELECT rid FROM rekeyed);
UPDATE items SET parent_id = (SELECT new FROM item_map WHERE old = items.parent_id)
WHERE parent_id IN (SELECT old FROM item_map);
UPDATE items SET remote_ref =
    coalesce((SELECT new FROM drive_map WHERE old = substr(remote_ref, 1, instr(remote_ref, '/') - 1)),
             substr(remote_ref, 1, instr(remote_ref, '/') - 1))
    || '/' ||
    coalesce((SELECT new FROM item_map WHERE old = substr(remote_ref, instr(remote_ref, '/') + 1)),
             substr(remote_ref, instr(remote_ref, '/') + 1))
WHERE instr(remote_ref, '/') > 0;

-- The other tables: a row that would collide with one already canonical is dropped (drives, delta links and
-- staging are rebuilt by the next run; a listed URL is only a shortcut).
UPDATE OR IGNORE drives SET drive_id = (SELECT new FROM drive_map WHERE old = drives.drive_id)
WHERE drive_id IN (SELECT old FROM drive_map);
DELETE FROM drives WHERE drive_id IN (SELECT old FROM drive_map);
UPDATE drives SET root_item_id = (SELECT new FROM item_map WHERE old = drives.root_item_id)
WHERE root_item_id IN (SELECT old FROM item_map);

UPDATE crawls SET drive_id = coalesce((SELECT new FROM drive_map WHERE old = crawls.drive_id), drive_id),
    scope_root_id = coalesce((SELECT new FROM item_map WHERE old = crawls.scope_root_id), scope_root_id);

UPDATE OR IGNORE frontier SET
    drive_id = coalesce((SELECT new FROM drive_map WHERE old = frontier.drive_id), drive_id),
    folder_id = coalesce((SELECT new FROM item_map WHERE old = frontier.folder_id), folder_id);
DELETE FROM frontier WHERE folder_id IN (SELECT old FROM item_map);

UPDATE OR IGNORE delta_state SET
    drive_id = coalesce((SELECT new FROM drive_map WHERE old = delta_state.drive_id), drive_id),
    scope_root_id = coalesce((SELECT new FROM item_map WHERE old = delta_state.scope_root_id), scope_root_id);
DELETE FROM delta_state WHERE drive_id IN (SELECT old FROM drive_map);

UPDATE OR IGNORE delta_staging SET
    drive_id = coalesce((SELECT new FROM drive_map WHERE old = delta_staging.drive_id), drive_id),
    item_id = coalesce((SELECT new FROM item_map WHERE old = delta_staging.item_id), item_id),
    parent_id = coalesce((SELECT new FROM item_map WHERE old = delta_staging.parent_id), parent_id);
DELETE FROM delta_staging WHERE drive_id IN (SELECT old FROM drive_map) OR item_id IN (SELECT old FROM item_map);

UPDATE OR IGNORE listed_urls SET
    drive_id = coalesce((SELECT new FROM drive_map WHERE old = listed_urls.drive_id), drive_id),
    item_id = coalesce((SELECT new FROM item_map WHERE old = listed_urls.item_id), item_id);
DELETE FROM listed_urls WHERE drive_id IN (SELECT old FROM drive_map) OR item_id IN (SELECT old FROM item_map);

DROP TABLE temp.contenders;
DROP TABLE temp.rekeyed;
DROP TABLE temp.item_map;
DROP TABLE temp.drive_map;

-- A frontier folder's ID as the service spelled it, sent back verbatim when the folder is listed (the key
-- column holds the canonical form). NULL: the same as the key.
ALTER TABLE frontier ADD COLUMN folder_spelling TEXT;

-- Local paths are claimed by one item each, compared the way the destination's file system compares names
-- (full Unicode case folding and NFC normalisation where it folds or normalises; byte for byte elsewhere),
-- not ASCII-only NOCASE, which let `Ä.jpg` and `ä.jpg`, or an NFC name and its NFD twin, land on each other on
-- macOS, Windows and exFAT. `local_key` is that comparison form, computed by the manifest's
-- `odbackup_name_key()` from the rules probed on the destination, and NULL where it is the path itself (always,
-- on a destination that compares bytes), so the claim index `coalesce(local_key, local_path)` costs no more than
-- the one it replaces. Every statement that changes `local_path` sets it too (a trigger would make every
-- upsert keep a statement journal: twice the page writes of a crawl).
ALTER TABLE items ADD COLUMN local_key TEXT;
UPDATE items SET local_key = nullif(odbackup_name_key(local_path), local_path);
DROP INDEX items_local_path;
CREATE INDEX items_local_key ON items (coalesce(local_key, local_path));
