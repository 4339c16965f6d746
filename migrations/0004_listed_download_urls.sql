-- Pre-authenticated download URLs that a listing returned (`@microsoft.graph.downloadUrl`): the
-- downloader uses one instead of a `/content` round trip while it is fresh. Kept apart from `items` because each
-- is a short-lived credential: a row is deleted when its file is done, and the table is cleared at the end of
-- every run that downloads (a crawl-only run keeps the fresh ones for a download shortly after).
-- `version` is the item's eTag (else cTag, else quickXorHash) when listed: a URL serves the content it was minted
-- for, so it is only used while the item row still names that version. `fetched_at` is Unix milliseconds.
CREATE TABLE listed_urls (
    drive_id    TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    version     TEXT NOT NULL,
    url         TEXT NOT NULL,
    fetched_at  INTEGER NOT NULL,
    PRIMARY KEY (drive_id, item_id)
);
