-- Why an item is skipped, as a class the code asks about (`malware`, `left_out`, …) beside the reason in words,
-- whose wording may change. Rows written before this are classed once here from the reasons those builds wrote;
-- nothing reads the wording afterwards.
ALTER TABLE items ADD COLUMN skip_class TEXT;
UPDATE items SET skip_class = CASE
        WHEN skip_reason LIKE 'flagged as malware%' THEN 'malware'
        WHEN kind = 'package' AND skip_reason LIKE 'OneNote notebook: left out%' THEN 'left_out'
        WHEN kind = 'package' THEN 'package'
        WHEN kind = 'remote' AND skip_reason LIKE '%left out by --no-shared%' THEN 'left_out'
        WHEN kind = 'remote' AND skip_reason LIKE 'shared item not accessible%' THEN 'inaccessible'
        WHEN kind = 'remote' AND skip_reason LIKE 'shortcut without a target%' THEN 'no_target'
        WHEN kind = 'remote' AND skip_reason LIKE 'shortcut to a %' THEN 'no_content'
        WHEN kind = 'remote' THEN 'duplicate'
        WHEN kind = 'folder' AND skip_reason LIKE 'not accessible to apps%' THEN 'inaccessible'
        WHEN kind = 'folder' THEN 'listing_failed'
        ELSE 'no_content' END
    WHERE skip_reason IS NOT NULL;
-- A delta round staged by an older build carries its rows as JSON with the reason alone: give them the same
-- class, in the shape this build reads (`skip: {class, reason}`).
UPDATE delta_staging SET row_json = json_remove(json_set(row_json, '$.skip', json_object(
        'class', CASE
            WHEN json_extract(row_json, '$.skip_reason') LIKE 'flagged as malware%' THEN 'malware'
            WHEN json_extract(row_json, '$.kind') = 'package'
                 AND json_extract(row_json, '$.skip_reason') LIKE 'OneNote notebook: left out%' THEN 'left_out'
            WHEN json_extract(row_json, '$.kind') = 'package' THEN 'package'
            WHEN json_extract(row_json, '$.kind') = 'remote'
                 AND json_extract(row_json, '$.skip_reason') LIKE '%left out by --no-shared%' THEN 'left_out'
            WHEN json_extract(row_json, '$.kind') = 'remote' THEN 'duplicate'
            WHEN json_extract(row_json, '$.kind') = 'folder' THEN 'listing_failed'
            ELSE 'no_content' END,
        'reason', json_extract(row_json, '$.skip_reason'))), '$.skip_reason')
    WHERE json_valid(row_json) AND json_type(row_json, '$.skip_reason') = 'text';
