-- Files kept although they could not be verified against the listing, because a known service quirk explains
-- the difference: an iPhone Live Photo served as its still image only, an Office/PDF file the service
-- rewrote after upload, a file listed without any hash, a malware-flagged file fetched on request. The row is
-- `done`; these say how it was accepted, and how many bytes are on disk when that differs from the listed size
-- (so a re-run does not take the shorter file for a missing one).
ALTER TABLE items ADD COLUMN caveat_class TEXT;
ALTER TABLE items ADD COLUMN caveat TEXT;
ALTER TABLE items ADD COLUMN local_size INTEGER;
