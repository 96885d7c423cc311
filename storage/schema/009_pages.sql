-- GitLab Pages: the project, namespace and instance settings that the
-- Pages lookup (GET /api/v4/internal/pages) decides on. All optional in
-- the seed, with GitLab's defaults. (008 is another change's number.)
--
-- Harmless to run twice, like every migration here.

-- GitLab's project_setting (https only, unique domain, primary domain,
-- multiple versions) and project_feature (pages_access_level), flattened
-- onto the project.
ALTER TABLE projects
  ADD COLUMN IF NOT EXISTS pages_https_only boolean NOT NULL DEFAULT true,
  ADD COLUMN IF NOT EXISTS pages_access_level text NOT NULL DEFAULT 'enabled',
  ADD COLUMN IF NOT EXISTS pages_unique_domain_enabled boolean NOT NULL
    DEFAULT false,
  ADD COLUMN IF NOT EXISTS pages_unique_domain text,
  ADD COLUMN IF NOT EXISTS pages_primary_domain text,
  ADD COLUMN IF NOT EXISTS pages_multiple_versions_enabled boolean NOT NULL
    DEFAULT false;

DO $$
BEGIN
  ALTER TABLE projects ADD CONSTRAINT projects_pages_access_level_check
    CHECK (pages_access_level IN ('enabled', 'private', 'public', 'disabled'));
EXCEPTION WHEN duplicate_object THEN
  NULL;
END $$;

-- A unique domain names one project (GitLab's unique index); compared
-- lower-cased, as hosts are.
CREATE UNIQUE INDEX IF NOT EXISTS projects_pages_unique_domain_lower_idx
  ON projects (lower(pages_unique_domain))
  WHERE pages_unique_domain IS NOT NULL;

-- GitLab's namespace_settings.force_pages_access_control: access control
-- for every project below the group.
ALTER TABLE namespaces
  ADD COLUMN IF NOT EXISTS force_pages_access_control boolean NOT NULL
    DEFAULT false;

-- The top-level namespace of a Pages host: looked up by lower(path).
CREATE INDEX IF NOT EXISTS namespaces_top_level_path_lower_idx
  ON namespaces (lower(path)) WHERE parent_id IS NULL;

-- settings.pages_access_control (GitLab's pages.access_control) and
-- settings.force_pages_access_control get no rows here: an absent key reads
-- as false, GitLab's default, and the settings table keeps only what a seed
-- or 001 put there.
