-- The GitLab agent server's (KAS) data: agent configurations and the
-- authorizations they grant (GitLab's tables of the same names), each
-- agent's last-seen connection to KAS, CI runner tokens, and the usage
-- counters KAS reports.
--
-- Agents, their active tokens, their user_access authorizations and the
-- active runner tokens are in the read model (KAS checks a token on every
-- call), so their writes are logged like the other records
-- (006_read_model_changes.sql): kind cluster_agents names the agent (id1)
-- whether its row or one of its user_access authorizations changed;
-- cluster_agent_tokens and ci_runners name the row (id1) and the digest it
-- had (name), so a loader drops the old lookup entry. A token's
-- last_used_at is no change of the model.
--
-- Written to be harmless when run a second time, like 001_core.sql.

-- agent_configuration's last configuration of each agent (JSON).
CREATE TABLE IF NOT EXISTS cluster_agent_configs (
  agent_id   bigint PRIMARY KEY
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  config     jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- ci_access.projects / ci_access.groups / user_access.projects /
-- user_access.groups of an agent's configuration; config is the entry's
-- settings (default_namespace, access_as, ...).
CREATE TABLE IF NOT EXISTS agent_project_authorizations (
  agent_id   bigint NOT NULL
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  project_id bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  config     jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, project_id)
);
CREATE INDEX IF NOT EXISTS agent_project_authorizations_project_id_idx
  ON agent_project_authorizations (project_id);

CREATE TABLE IF NOT EXISTS agent_group_authorizations (
  agent_id bigint NOT NULL
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  group_id bigint NOT NULL
    REFERENCES namespaces (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  config   jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, group_id)
);
CREATE INDEX IF NOT EXISTS agent_group_authorizations_group_id_idx
  ON agent_group_authorizations (group_id);

CREATE TABLE IF NOT EXISTS agent_user_access_project_authorizations (
  agent_id   bigint NOT NULL
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  project_id bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  config     jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, project_id)
);
CREATE INDEX IF NOT EXISTS agent_user_access_project_authorizations_project_id_idx
  ON agent_user_access_project_authorizations (project_id);

CREATE TABLE IF NOT EXISTS agent_user_access_group_authorizations (
  agent_id bigint NOT NULL
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  group_id bigint NOT NULL
    REFERENCES namespaces (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  config   jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, group_id)
);
CREATE INDEX IF NOT EXISTS agent_user_access_group_authorizations_group_id_idx
  ON agent_user_access_group_authorizations (group_id);

-- The agent's last register_agent_at_kas event (agent_events).
CREATE TABLE IF NOT EXISTS cluster_agent_connections (
  agent_id            bigint PRIMARY KEY
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  project_id          bigint,
  agent_version       text,
  kubernetes_version  text,
  architecture        text,
  installation_method text,
  helm_chart_version  text,
  first_seen_at       timestamptz NOT NULL DEFAULT now(),
  last_seen_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cluster_agent_connections_last_seen_at_idx
  ON cluster_agent_connections (last_seen_at);

-- CI runners, known only by their token's digest (KAS's runner info call).
CREATE TABLE IF NOT EXISTS ci_runners (
  id           bigint PRIMARY KEY,
  token_digest text NOT NULL UNIQUE,
  description  text NOT NULL DEFAULT '',
  active       boolean NOT NULL DEFAULT true,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS gatehouse_state;

-- usage_metrics counters, summed over every replica.
CREATE TABLE IF NOT EXISTS gatehouse_state.agent_usage_counters (
  name       text PRIMARY KEY,
  value      bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- usage_metrics unique counters and agent_events: the ids seen per name,
-- counted over 7 and 28 days, then purged.
CREATE TABLE IF NOT EXISTS gatehouse_state.agent_unique_ids (
  name         text NOT NULL,
  entity_id    bigint NOT NULL,
  last_seen_at timestamptz NOT NULL,
  PRIMARY KEY (name, entity_id)
);
CREATE INDEX IF NOT EXISTS agent_unique_ids_last_seen_at_idx
  ON gatehouse_state.agent_unique_ids (last_seen_at);

-- -- the change log --------------------------------------------------------

CREATE OR REPLACE FUNCTION gatehouse_state.log_agent_change()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  kind text := TG_TABLE_NAME;
  old_id bigint;
  new_id bigint;
BEGIN
  IF TG_TABLE_NAME IN ('cluster_agent_tokens', 'ci_runners') THEN
    -- The digest names the lookup entry; both the old and the new one.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
      INSERT INTO gatehouse_state.read_model_changes (kind, id1, name)
      VALUES (kind, OLD.id, OLD.token_digest);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE'
                            AND (NEW.id, NEW.token_digest)
                                IS DISTINCT FROM (OLD.id, OLD.token_digest)) THEN
      INSERT INTO gatehouse_state.read_model_changes (kind, id1, name)
      VALUES (kind, NEW.id, NEW.token_digest);
    END IF;
  ELSE
    -- cluster_agents and its user_access authorizations: the agent. (Each
    -- table's fields in a branch of its own: PL/pgSQL plans an expression
    -- against the trigger's table, where the other's column is unknown.)
    kind := 'cluster_agents';
    IF TG_TABLE_NAME = 'cluster_agents' THEN
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_id := OLD.id;
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_id := NEW.id;
      END IF;
    ELSE
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_id := OLD.agent_id;
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_id := NEW.agent_id;
      END IF;
    END IF;
    IF old_id IS NOT NULL THEN
      INSERT INTO gatehouse_state.read_model_changes (kind, id1)
      VALUES (kind, old_id);
    END IF;
    IF new_id IS NOT NULL AND new_id IS DISTINCT FROM old_id THEN
      INSERT INTO gatehouse_state.read_model_changes (kind, id1)
      VALUES (kind, new_id);
    END IF;
  END IF;
  -- One notification per transaction: identical payloads are folded.
  PERFORM pg_notify('gatehouse_changes', '{"kinds":["read_model_changes"]}');
  RETURN NULL;
END;
$$;

-- Each trigger fires only when a column the read model reads is written.
CREATE OR REPLACE TRIGGER read_model_change
  AFTER INSERT OR DELETE OR UPDATE OF id, project_id, name
  ON cluster_agents FOR EACH ROW
  WHEN (current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION gatehouse_state.log_agent_change();

CREATE OR REPLACE TRIGGER read_model_change
  AFTER INSERT OR DELETE OR UPDATE
  ON agent_user_access_project_authorizations FOR EACH ROW
  WHEN (current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION gatehouse_state.log_agent_change();

CREATE OR REPLACE TRIGGER read_model_change
  AFTER INSERT OR DELETE OR UPDATE
  ON agent_user_access_group_authorizations FOR EACH ROW
  WHEN (current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION gatehouse_state.log_agent_change();

-- Not last_used_at: KAS's every call records it (at most once a minute).
CREATE OR REPLACE TRIGGER read_model_change
  AFTER INSERT OR DELETE OR UPDATE OF id, agent_id, token_digest, revoked
  ON cluster_agent_tokens FOR EACH ROW
  WHEN (current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION gatehouse_state.log_agent_change();

CREATE OR REPLACE TRIGGER read_model_change
  AFTER INSERT OR DELETE OR UPDATE OF id, token_digest, active
  ON ci_runners FOR EACH ROW
  WHEN (current_setting('gatehouse.read_model_bulk', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION gatehouse_state.log_agent_change();

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['cluster_agents',
                           'agent_user_access_project_authorizations',
                           'agent_user_access_group_authorizations',
                           'cluster_agent_tokens', 'ci_runners'] LOOP
    EXECUTE format(
      'CREATE OR REPLACE TRIGGER read_model_truncate AFTER TRUNCATE ON %I '
      'FOR EACH STATEMENT EXECUTE FUNCTION '
      'gatehouse_state.log_read_model_truncate()', t);
  END LOOP;
END;
$$;
