-- Gatehouse core schema: everything a seed document (shared/seed-format.md)
-- can declare. Ids are the seed author's ids, not sequences.
--
-- Foreign keys are DEFERRABLE INITIALLY IMMEDIATE: normal statements check
-- them at once, and the seed loader defers them so that it can prune and
-- upsert in one transaction without ordering every statement by hand.
-- Computed columns (namespaces.full_path, projects.full_path, the key
-- columns derived from keys.key) are written by the seed loader.
--
-- `gatehouse migrate` applies this file once (schema_migrations). It is
-- also written to be harmless when run a second time, e.g. by a database
-- image's init directory before migrate runs.

-- Instance-wide settings: one row per top-level key of the seed's
-- `settings` object; `value` is that key's JSON value.
CREATE TABLE IF NOT EXISTS settings (
  key        text PRIMARY KEY,
  value      jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO settings (key, value) VALUES
  ('external_url', '"http://127.0.0.1:8080"'),
  ('ssh_clone_url_root', '""'),
  ('enabled_git_access_protocol', '"all"'),
  ('receive_max_input_size_mb', '0'),
  ('gitlab_version', '"18.6.0"'),
  ('pages_host', '""'),
  ('gitlab_shell_operation_limit', '600'),
  ('allow_local_requests_from_web_hooks_and_services', 'false'),
  ('broadcast_messages', '[]')
ON CONFLICT (key) DO NOTHING;

CREATE TABLE IF NOT EXISTS broadcast_messages (
  id          bigint PRIMARY KEY,
  message     text NOT NULL,
  target_path text,
  starts_at   timestamptz,
  ends_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Gitaly storages, identified by name.
CREATE TABLE IF NOT EXISTS storages (
  name           text PRIMARY KEY,
  gitaly_address text NOT NULL,
  gitaly_token   text NOT NULL DEFAULT '',
  path           text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS users (
  id                 bigint PRIMARY KEY,
  username           text NOT NULL,
  name               text NOT NULL DEFAULT '',
  email              text NOT NULL DEFAULT '',
  public_email       text NOT NULL DEFAULT '',
  state              text NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'blocked', 'deactivated',
                     'blocked_pending_approval', 'banned')),
  admin              boolean NOT NULL DEFAULT false,
  external           boolean NOT NULL DEFAULT false,
  can_create_project boolean NOT NULL DEFAULT true,
  two_factor_enabled boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username_lower_idx ON users (lower(username));

-- Groups and user namespaces; full_path is the chain of paths from the root.
CREATE TABLE IF NOT EXISTS namespaces (
  id         bigint PRIMARY KEY,
  parent_id  bigint REFERENCES namespaces (id) DEFERRABLE INITIALLY IMMEDIATE,
  path       text NOT NULL,
  name       text NOT NULL,
  kind       text NOT NULL DEFAULT 'group' CHECK (kind IN ('group', 'user')),
  full_path  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE UNIQUE INDEX IF NOT EXISTS namespaces_full_path_lower_idx ON namespaces (lower(full_path));
CREATE INDEX IF NOT EXISTS namespaces_parent_id_idx ON namespaces (parent_id);

CREATE TABLE IF NOT EXISTS projects (
  id                      bigint PRIMARY KEY,
  namespace_id            bigint NOT NULL
    REFERENCES namespaces (id) DEFERRABLE INITIALLY IMMEDIATE,
  path                    text NOT NULL,
  name                    text NOT NULL,
  description             text NOT NULL DEFAULT '',
  visibility              text NOT NULL DEFAULT 'private'
    CHECK (visibility IN ('private', 'internal', 'public')),
  archived                boolean NOT NULL DEFAULT false,
  default_branch          text,
  storage                 text NOT NULL
    REFERENCES storages (name) DEFERRABLE INITIALLY IMMEDIATE,
  disk_path               text NOT NULL,
  repository_access_level text NOT NULL DEFAULT 'enabled'
    CHECK (repository_access_level IN ('enabled', 'private', 'disabled')),
  merge_requests_enabled  boolean NOT NULL DEFAULT true,
  lfs_enabled             boolean NOT NULL DEFAULT true,
  repository_exists       boolean NOT NULL DEFAULT true,
  full_path               text NOT NULL,
  created_at              timestamptz NOT NULL DEFAULT now(),
  updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_full_path_lower_idx ON projects (lower(full_path));
CREATE INDEX IF NOT EXISTS projects_namespace_id_idx ON projects (namespace_id);
CREATE INDEX IF NOT EXISTS projects_storage_idx ON projects (storage);

-- Former full paths that still resolve to a project.
CREATE TABLE IF NOT EXISTS project_redirects (
  path       text PRIMARY KEY,
  project_id bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS project_redirects_path_lower_idx ON project_redirects (lower(path));
CREATE INDEX IF NOT EXISTS project_redirects_project_id_idx ON project_redirects (project_id);

-- Personal SSH keys and deploy keys share this table and its id space (a
-- `key_id` may name either). key_blob is the base64 blob of `key`;
-- fingerprint_sha256 is "SHA256:" + unpadded base64 of sha256(blob).
CREATE TABLE IF NOT EXISTS keys (
  id                 bigint PRIMARY KEY,
  kind               text NOT NULL CHECK (kind IN ('personal', 'deploy')),
  user_id            bigint
    REFERENCES users (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  title              text NOT NULL DEFAULT '',
  key                text NOT NULL,
  key_type           text NOT NULL,
  key_blob           text NOT NULL,
  fingerprint_sha256 text NOT NULL,
  usage_type         text NOT NULL DEFAULT 'auth_and_signing'
    CHECK (usage_type IN ('auth', 'signing', 'auth_and_signing')),
  expires_at         timestamptz,
  last_used_at       timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CHECK (kind = 'deploy' OR user_id IS NOT NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_fingerprint_sha256_idx ON keys (fingerprint_sha256);
CREATE INDEX IF NOT EXISTS keys_user_id_idx ON keys (user_id);

-- Which projects a deploy key (keys.kind = 'deploy') may access.
CREATE TABLE IF NOT EXISTS deploy_keys_projects (
  key_id     bigint NOT NULL
    REFERENCES keys (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  project_id bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  can_push   boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (key_id, project_id)
);
CREATE INDEX IF NOT EXISTS deploy_keys_projects_project_id_idx ON deploy_keys_projects (project_id);

-- A membership of a project or of a namespace (exactly one of the two).
CREATE TABLE IF NOT EXISTS members (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id      bigint NOT NULL
    REFERENCES users (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  project_id   bigint
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  namespace_id bigint
    REFERENCES namespaces (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  access_level smallint NOT NULL CHECK (access_level IN (10, 20, 30, 40, 50)),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (num_nonnulls(project_id, namespace_id) = 1)
);
CREATE UNIQUE INDEX IF NOT EXISTS members_user_project_idx ON members (user_id, project_id)
  WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS members_user_namespace_idx ON members (user_id, namespace_id)
  WHERE namespace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS members_project_id_idx ON members (project_id);
CREATE INDEX IF NOT EXISTS members_namespace_id_idx ON members (namespace_id);

-- Protected refs; `name` may contain `*` wildcards. Access levels:
-- 0 no one, 30 developers + maintainers, 40 maintainers, 60 admins.
CREATE TABLE IF NOT EXISTS protected_branches (
  id                 bigint PRIMARY KEY,
  project_id         bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  name               text NOT NULL,
  push_access_level  smallint NOT NULL DEFAULT 40
    CHECK (push_access_level IN (0, 30, 40, 60)),
  merge_access_level smallint NOT NULL DEFAULT 40
    CHECK (merge_access_level IN (0, 30, 40, 60)),
  allow_force_push   boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS protected_branches_project_name_idx
  ON protected_branches (project_id, name);

CREATE TABLE IF NOT EXISTS protected_tags (
  id                  bigint PRIMARY KEY,
  project_id          bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  name                text NOT NULL,
  create_access_level smallint NOT NULL DEFAULT 40
    CHECK (create_access_level IN (0, 30, 40, 60)),
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS protected_tags_project_name_idx ON protected_tags (project_id, name);

-- Tokens are stored only as the lower-case hex SHA-256 of the clear token.
CREATE TABLE IF NOT EXISTS personal_access_tokens (
  id           bigint PRIMARY KEY,
  user_id      bigint NOT NULL
    REFERENCES users (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  name         text NOT NULL,
  token_digest text NOT NULL,
  scopes       text[] NOT NULL DEFAULT '{}',
  expires_at   date,
  revoked      boolean NOT NULL DEFAULT false,
  last_used_at timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS personal_access_tokens_token_digest_idx
  ON personal_access_tokens (token_digest);
CREATE INDEX IF NOT EXISTS personal_access_tokens_user_id_idx ON personal_access_tokens (user_id);

CREATE TABLE IF NOT EXISTS cluster_agents (
  id         bigint PRIMARY KEY,
  project_id bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS cluster_agents_project_name_idx ON cluster_agents (project_id, name);

CREATE TABLE IF NOT EXISTS cluster_agent_tokens (
  id           bigint PRIMARY KEY,
  agent_id     bigint NOT NULL
    REFERENCES cluster_agents (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  token_digest text NOT NULL,
  revoked      boolean NOT NULL DEFAULT false,
  last_used_at timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS cluster_agent_tokens_token_digest_idx
  ON cluster_agent_tokens (token_digest);
CREATE INDEX IF NOT EXISTS cluster_agent_tokens_agent_id_idx ON cluster_agent_tokens (agent_id);

-- Pages custom domains; `key` is the TLS private key Pages serves with.
CREATE TABLE IF NOT EXISTS pages_domains (
  id          bigint PRIMARY KEY,
  project_id  bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  domain      text NOT NULL,
  enabled     boolean NOT NULL DEFAULT true,
  certificate text,
  key         text,
  https_only  boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS pages_domains_domain_lower_idx ON pages_domains (lower(domain));
CREATE INDEX IF NOT EXISTS pages_domains_project_id_idx ON pages_domains (project_id);

CREATE TABLE IF NOT EXISTS pages_deployments (
  id             bigint PRIMARY KEY,
  project_id     bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  path_prefix    text NOT NULL DEFAULT '',
  root_directory text NOT NULL DEFAULT 'public',
  source_path    text NOT NULL,
  sha256         text NOT NULL DEFAULT '',
  file_size      bigint NOT NULL DEFAULT 0,
  file_count     bigint NOT NULL DEFAULT 0,
  access_control boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pages_deployments_project_id_idx ON pages_deployments (project_id, path_prefix);

CREATE TABLE IF NOT EXISTS zoekt_nodes (
  id         bigint PRIMARY KEY,
  uuid       uuid NOT NULL,
  name       text NOT NULL DEFAULT '',
  url        text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS zoekt_nodes_uuid_idx ON zoekt_nodes (uuid);

-- Project webhooks. The token is kept in clear text: it is sent to the
-- receiver in X-Gitlab-Token.
CREATE TABLE IF NOT EXISTS webhooks (
  id              bigint PRIMARY KEY,
  project_id      bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  url             text NOT NULL,
  token           text NOT NULL DEFAULT '',
  push_events     boolean NOT NULL DEFAULT true,
  tag_push_events boolean NOT NULL DEFAULT false,
  enabled         boolean NOT NULL DEFAULT true,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhooks_project_id_idx ON webhooks (project_id);
