-- OneNote notebooks (a `package` of type `oneNote`) are backed up: a notebook is stored as a folder of its section
-- files (`.one`, `.onetoc2`), named like the notebook. `package` keeps the package type of such a folder, so
-- `status` can count notebooks and their files.
ALTER TABLE items ADD COLUMN package TEXT;
-- Earlier versions recorded notebooks as skipped packages and never listed them: those rows say so, and the
-- scopes' incremental links are forgotten, so the next run lists again from the start and finds their sections.
UPDATE items SET package = 'oneNote' WHERE kind = 'package' AND skip_reason LIKE 'oneNote package%';
UPDATE delta_state SET delta_link = NULL, cursor = NULL
WHERE EXISTS (SELECT 1 FROM items WHERE kind = 'package' AND package = 'oneNote');
DELETE FROM delta_staging WHERE EXISTS (SELECT 1 FROM items WHERE kind = 'package' AND package = 'oneNote');
