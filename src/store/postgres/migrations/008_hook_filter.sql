-- A hook's CloudEvents Subscriptions API filter (src/core/filter.ts), as its canonical JSON text;
-- NULL: none. Evaluated at fan-out, with the topic and the event type pattern.
ALTER TABLE hooks ADD COLUMN filter text;
