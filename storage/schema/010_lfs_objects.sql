-- Git LFS objects that Workhorse uploaded and Gatehouse finalized
-- (contract other-callers §4.3), and the projects each belongs to, as
-- GitLab's lfs_objects and lfs_objects_projects. The file lives under
-- GATEHOUSE_UPLOADS_DIR/lfs-objects/<oid[0:2]>/<oid[2:4]>/<oid[4:]>.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE TABLE IF NOT EXISTS lfs_objects (
  oid        text PRIMARY KEY CHECK (oid ~ '^[0-9a-f]{64}$'),
  size       bigint NOT NULL CHECK (size >= 0),
  file_path  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS lfs_objects_projects (
  oid             text NOT NULL REFERENCES lfs_objects (oid) ON DELETE CASCADE,
  project_id      bigint NOT NULL
    REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
  -- project, wiki or design, as GitLab's repository_type.
  repository_type text NOT NULL DEFAULT 'project',
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (oid, project_id, repository_type)
);
CREATE INDEX IF NOT EXISTS lfs_objects_projects_project_id_idx
  ON lfs_objects_projects (project_id);
