-- odbackup manifest, schema 11: restore targets keyed on the canonical drive ID, like every other table since
-- schema 5 (a personal drive ID of 12 to 16 hex digits in lower case, left-padded with zeros to 16; any other ID
-- unchanged). Until now they kept the service's spelling, compared without regard to case, which a personal
-- drive ID missing its leading zero (abraunegg/onedrive #3115) still escaped. A target whose canonical spelling
-- is already taken by another row for the same folder keeps its old spelling: that other row is the one a
-- restore finds from now on, and this one only ages.
UPDATE restore_targets
SET drive_id = lower(substr('0000000000000000' || drive_id, -16))
WHERE length(drive_id) BETWEEN 12 AND 16
  AND drive_id NOT GLOB '*[^0-9A-Fa-f]*'
  AND drive_id <> lower(substr('0000000000000000' || drive_id, -16))
  AND NOT EXISTS (
      SELECT 1 FROM restore_targets AS other
      WHERE other.id <> restore_targets.id
        AND other.root_path = restore_targets.root_path
        AND other.drive_id = lower(substr('0000000000000000' || restore_targets.drive_id, -16))
  );
