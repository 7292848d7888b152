-- The event-type catalog (src/event-types/). One row per type with what is not versioned (description,
-- deprecation) and its latest version; one row per version with its JSON Schema text, never changed
-- once written (a version's URL is the `dataschema` of the events validated against it). Times are
-- epoch ms by the database's clock. A topic's `types` is 'any', or 'registered' (publishing a type not
-- in the catalog is refused).
CREATE TABLE event_types (
  type text PRIMARY KEY,
  latest_version integer NOT NULL,
  description text,
  deprecated boolean NOT NULL DEFAULT false,
  updated_at bigint NOT NULL
);
CREATE TABLE event_type_versions (
  type text NOT NULL REFERENCES event_types (type),
  version integer NOT NULL,
  schema text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (type, version)
);
ALTER TABLE topics ADD COLUMN types text NOT NULL DEFAULT 'any';
