-- CloudEvents identifies an event by source and id together, so a client-supplied id is a repeat only
-- with the same source: dedupe looks up (topic, source, id). source is set for the events whose id the
-- client supplied, NULL for generated ids, which are never looked up (and so cost the index nothing).
ALTER TABLE events ADD COLUMN source TEXT;

-- Every event stored before this migration was looked up by id alone, generated or not: each keeps its
-- own (source, id), which makes a later event with that same pair a repeat, as it was before.
UPDATE events SET source = body ->> '$.source';

DROP INDEX events_by_id;
CREATE UNIQUE INDEX events_by_source_id ON events (topic_id, source, id) WHERE source IS NOT NULL;
