-- The event-type catalog (src/event-types/). One row per type with what is not versioned (description,
-- deprecation) and its latest version; one row per version with its JSON Schema text, never changed
-- once written (a version's URL is the `dataschema` of the events validated against it). Times are
-- epoch ms. A topic's `types` is 'any', or 'registered' (publishing a type not in the catalog is refused).
CREATE TABLE event_types (
  type TEXT PRIMARY KEY,
  latest_version INTEGER NOT NULL,
  description TEXT,
  deprecated INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE TABLE event_type_versions (
  type TEXT NOT NULL REFERENCES event_types (type),
  version INTEGER NOT NULL,
  schema TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (type, version)
);
ALTER TABLE topics ADD COLUMN types TEXT NOT NULL DEFAULT 'any';
