-- Listing URLs keyed by their item's row instead of (drive_id, item_id). The old key was a second b-tree with one
-- randomly placed entry per listed file: at a million items it outgrew the page cache, and every item of a first
-- listing read a leaf back and wrote it out again (measured with `perf` on `bench crawl` at 1,000,000 items).
-- Item rows of a first listing are appended in order, so their URLs now are too. A row's rowid does not change
-- when its ID is rekeyed, so the URL follows the item.
CREATE TABLE listed_urls_by_row (
    item_row    INTEGER PRIMARY KEY,  -- items.rowid
    version     TEXT NOT NULL,
    url         TEXT NOT NULL,
    fetched_at  INTEGER NOT NULL
);
INSERT OR REPLACE INTO listed_urls_by_row (item_row, version, url, fetched_at)
    SELECT items.rowid, u.version, u.url, u.fetched_at
    FROM listed_urls u JOIN items ON items.drive_id = u.drive_id AND items.item_id = u.item_id;

-- A change staged while its parent is unknown has no item row yet: its URL waits with it, and moves to
-- `listed_urls` when the change is applied. The staged JSON still never holds it.
ALTER TABLE delta_staging ADD COLUMN listed_url TEXT;
ALTER TABLE delta_staging ADD COLUMN listed_at INTEGER;
UPDATE delta_staging SET (listed_url, listed_at) = (
        SELECT u.url, u.fetched_at FROM listed_urls u
        WHERE u.drive_id = delta_staging.drive_id AND u.item_id = delta_staging.item_id)
    WHERE deleted = 0;

DROP TABLE listed_urls;
ALTER TABLE listed_urls_by_row RENAME TO listed_urls;
