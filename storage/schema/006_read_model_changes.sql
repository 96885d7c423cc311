-- The read model's change log: every write to a table the read model reads
-- leaves, in the same transaction, a row naming what changed (not the new
-- values). Each replica's loader reads the rows committed since its model's
-- PostgreSQL snapshot and re-reads just those records, instead of loading
-- a million keys again for one change.
--
-- Which rows a loader has not seen yet is decided by transaction, not by
-- `seq`: a transaction holding a lower seq can commit after one holding a
-- higher. The loader keeps the pg_snapshot its model is exact for and reads
-- the rows whose txid that snapshot does not see (pg_visible_in_snapshot).
--
-- `gatehouse seed` rewrites whole tables: it sets gatehouse.read_model_bulk
-- for its transaction, so no row is logged, and logs one '*' row, which
-- makes every loader reload in full. A TRUNCATE logs '*' too.
--
-- Rows older than an hour are purged by the loaders; a loader that has not
-- read the log for that long reconnects and reloads in full anyway.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE SCHEMA IF NOT EXISTS gatehouse_state;

CREATE TABLE IF NOT EXISTS gatehouse_state.read_model_changes (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
  -- users, keys, namespaces, projects, project_redirects, project_members,
  -- namespace_members, protected_branches, protected_tags: the records
  -- named by id1/id2/name; settings, storages: the whole (small) table;
  -- '*': everything.
  kind        text NOT NULL,
  -- users/keys/namespaces/projects: the id; memberships: the user id;
  -- protected refs: the project id.
  id1         bigint,
  -- memberships: the project or namespace id.
  id2         bigint,
  -- keys: the fingerprint the key had (to drop its lookup entry);
  -- project_redirects: the lower-cased path.
  name        text,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- What a loader's "committed since my snapshot" query reads.
CREATE INDEX IF NOT EXISTS read_model_changes_txid_idx
  ON gatehouse_state.read_model_changes (txid);

CREATE OR REPLACE FUNCTION gatehouse_state.log_read_model_change()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  versions jsonb[] := ARRAY[]::jsonb[];
  r jsonb;
  kind text;
  id1 bigint;
  id2 bigint;
  name text;
  last_logged text;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    versions := versions || to_jsonb(OLD);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    versions := versions || to_jsonb(NEW);
  END IF;
  FOREACH r IN ARRAY versions LOOP
    kind := TG_TABLE_NAME;
    id1 := NULL;
    id2 := NULL;
    name := NULL;
    CASE TG_TABLE_NAME
      WHEN 'users', 'namespaces', 'projects' THEN
        id1 := (r->>'id')::bigint;
      WHEN 'keys' THEN
        id1 := (r->>'id')::bigint;
        name := r->>'fingerprint_sha256';
      WHEN 'deploy_keys_projects' THEN
        kind := 'keys';
        id1 := (r->>'key_id')::bigint;
      WHEN 'members' THEN
        id1 := (r->>'user_id')::bigint;
        IF r->>'project_id' IS NOT NULL THEN
          kind := 'project_members';
          id2 := (r->>'project_id')::bigint;
        ELSE
          kind := 'namespace_members';
          id2 := (r->>'namespace_id')::bigint;
        END IF;
      WHEN 'project_redirects' THEN
        name := lower(r->>'path');
      WHEN 'protected_branches', 'protected_tags' THEN
        id1 := (r->>'project_id')::bigint;
      ELSE
        NULL; -- settings, storages: reread whole
    END CASE;
    -- An update that keeps the record's identity is one change, not two.
    CONTINUE WHEN last_logged IS NOT DISTINCT FROM
      concat_ws('|', kind, id1, id2, name);
    last_logged := concat_ws('|', kind, id1, id2, name);
    INSERT INTO gatehouse_state.read_model_changes (kind, id1, id2, name)
    VALUES (kind, id1, id2, name);
  END LOOP;
  -- One notification per transaction: identical payloads are folded.
  PERFORM pg_notify('gatehouse_changes', '{"kinds":["read_model_changes"]}');
  RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION gatehouse_state.log_read_model_truncate()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO gatehouse_state.read_model_changes (kind) VALUES ('*');
  PERFORM pg_notify('gatehouse_changes', '{"kinds":["read_model_changes"]}');
  RETURN NULL;
END;
$$;

DO $$
DECLARE
  tables text[] := ARRAY['settings', 'storages', 'users', 'keys',
                         'deploy_keys_projects', 'namespaces', 'projects',
                         'project_redirects', 'members', 'protected_branches',
                         'protected_tags'];
  t text;
BEGIN
  FOREACH t IN ARRAY tables LOOP
    EXECUTE format(
      'CREATE OR REPLACE TRIGGER read_model_change AFTER INSERT OR DELETE%s '
      'ON %I FOR EACH ROW WHEN (current_setting(''gatehouse.read_model_bulk'', '
      'true) IS DISTINCT FROM ''on'') '
      'EXECUTE FUNCTION gatehouse_state.log_read_model_change()',
      CASE WHEN t = 'keys' THEN '' ELSE ' OR UPDATE' END, t);
  END LOOP;
  -- keys: GitLab's once-a-day last_used_at write is no change of the model
  -- (the access-control actor keeps its own record of it); logged, every
  -- first use of a key in a day would be one.
  CREATE OR REPLACE TRIGGER read_model_update AFTER UPDATE ON keys
    FOR EACH ROW WHEN (
      current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on'
      AND (OLD.id, OLD.kind, OLD.user_id, OLD.title, OLD.key_type,
           OLD.key_blob, OLD.fingerprint_sha256, OLD.usage_type,
           OLD.expires_at, OLD.created_at)
          IS DISTINCT FROM
          (NEW.id, NEW.kind, NEW.user_id, NEW.title, NEW.key_type,
           NEW.key_blob, NEW.fingerprint_sha256, NEW.usage_type,
           NEW.expires_at, NEW.created_at))
    EXECUTE FUNCTION gatehouse_state.log_read_model_change();
  FOREACH t IN ARRAY tables LOOP
    EXECUTE format(
      'CREATE OR REPLACE TRIGGER read_model_truncate AFTER TRUNCATE ON %I '
      'FOR EACH STATEMENT EXECUTE FUNCTION '
      'gatehouse_state.log_read_model_truncate()', t);
  END LOOP;
END;
$$;
