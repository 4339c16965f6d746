-- Files stored once (`--dedupe hardlink`): a file placed as a hard link of another done file with the same
-- quickXorHash and size names that file here (its drive and item); NULL for a file written from its own
-- download. A later download of the row (a new version, renamed over the link) clears it.
ALTER TABLE items ADD COLUMN linked_drive_id TEXT;
ALTER TABLE items ADD COLUMN linked_item_id TEXT;
-- Finding a done file by its content is one index probe per file to fetch, not a scan of the drive.
CREATE INDEX items_content ON items (quick_xor, size) WHERE state = 'done' AND kind = 'file';
-- The files linked to one that gets a new version are found by one probe (only linked rows are indexed).
CREATE INDEX items_linked ON items (linked_drive_id, linked_item_id) WHERE linked_item_id IS NOT NULL;
