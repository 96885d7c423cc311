-- Personal access tokens join the read model: git over HTTP authenticates
-- with them on every request (contract other-callers §4.2), which must not
-- cost a PostgreSQL round trip. A change to a token is logged like the
-- other records (006_read_model_changes.sql): id1 names the token, `name`
-- the digest it had, so a loader drops the old lookup entry.
--
-- last_used_at is no change of the model: the trigger fires only when a
-- column the model reads changes.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE OR REPLACE FUNCTION gatehouse_state.log_token_change()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO gatehouse_state.read_model_changes (kind, id1, name)
    VALUES ('personal_access_tokens', OLD.id, OLD.token_digest);
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE'
                          AND NEW.token_digest IS DISTINCT FROM OLD.token_digest) THEN
    INSERT INTO gatehouse_state.read_model_changes (kind, id1, name)
    VALUES ('personal_access_tokens', NEW.id, NEW.token_digest);
  END IF;
  PERFORM pg_notify('gatehouse_changes', '{"kinds":["read_model_changes"]}');
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER read_model_change
  AFTER INSERT OR DELETE OR UPDATE OF id, user_id, name, token_digest, scopes,
    expires_at, revoked
  ON personal_access_tokens FOR EACH ROW
  WHEN (current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION gatehouse_state.log_token_change();

CREATE OR REPLACE TRIGGER read_model_truncate AFTER TRUNCATE
  ON personal_access_tokens FOR EACH STATEMENT
  EXECUTE FUNCTION gatehouse_state.log_read_model_truncate();
