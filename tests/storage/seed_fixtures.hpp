#pragma once

// Seed documents shared by the storage tests. The SSH keys were generated
// with `ssh-keygen -t ed25519|rsa|ecdsa`; the fingerprints are what
// `ssh-keygen -lf` printed for them.

#include <nlohmann/json.hpp>

#include <string>

namespace gatehouse::test {

inline const std::string key_a
  = "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAID72VztSZsPMmsTmHFHnqhQ3DKLjzzr7+I9n3bASRYnv "
    "user-a@example";
inline const std::string key_a_fingerprint
  = "SHA256:YaYVja1iCRmPcXXR9Oxgv8s3j/9MSOboNQSZf/6Rtjc";
inline const std::string key_b
  = "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIEeLk45vhk3NzclFPRxMC6t6M6wi5KpmYMSCrO24fNf6 "
    "user-b@example";
inline const std::string key_b_fingerprint
  = "SHA256:NQ/EIZ31MnfKO5NMlpVdbq3h78I/XqTHx00joHqlKiY";
inline const std::string key_c
  = "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIGMZtA02YfPBpiqNHvAmThNKzn05zBYx+6n1n2TY/cB3 "
    "user-c@example";
inline const std::string key_c_fingerprint
  = "SHA256:z0vwC2efU6vGOX8KhasNuvYtyzmQtAJj8hGxV7D65sQ";
inline const std::string key_d
  = "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIBadJWYmZe6WbgadRQz7BL/nX9aOAmKqf1DKEdNlEl9w "
    "user-d@example";
inline const std::string key_rsa
  = "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQDCb7UdKFBF0gCMdfSXzW/"
    "WrOD1jttaOjhIQDzXcEz1XUXKdRcZ"
    "LFCOFB6n1bp8nqTBi9H+WCiZ+"
    "4RAwpbjKGu5bIX2ysKgJ4E8wUwL8hYHC3sDeK3dmDKIZVCBo2PMbat2/qkkPtV7"
    "JasXGc7FaJvUVTmQVQZR5TMjedUnQQ5ZO6ApLX3CnsZj9Ah7kyx74tzY02D59I19cnGTuCNkxF"
    "Cf8EZP/wVZ/C1c"
    "AVbK27b1kNTnOk4iHKDgzs7Ycad1LAKsXLQYLczZprxE/"
    "+Ksv2fb0jClMDzZqiZ1DjaVmZDy7SRJAiUtJ5ozjLTZ"
    "x8wKDuNMgtygtlON/cmD873Rp2AF rsa@example";
inline const std::string key_rsa_fingerprint
  = "SHA256:QPYFAOF40/yegLtY0pg5jiaUIAtrQq3mGRn8wY7m9GU";
inline const std::string key_ecdsa
  = "ecdsa-sha2-nistp256 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCXVDetZ/J/RgaYR"
    "i8juC2IyAad3S1FKv5iHdjNndBNldS/d1a7XHVqrurW3NRh5c6OIOBH0QmzaWgsoy1i1REM= "
    "ec@example";
inline const std::string key_ecdsa_fingerprint
  = "SHA256:6gT38QjhqFSqKrx0QFi68DUS6TK8R521hqWNRmsUSM0";

inline const std::string demo_pat = "glpat-demo0123456789abcdef";
inline const std::string demo_agent_token = "glagent-demo0123456789abcdefghij";
inline const std::string demo_runner_token = "glrt-demo0123456789abcdefgh";

/// The example of shared/seed-format.md with real keys, plus the users 2
/// and 3 that its members refer to.
inline nlohmann::json demo_seed() {
  auto doc = nlohmann::json::parse(R"({
  "settings": {
    "external_url": "https://gitlab.example.com",
    "ssh_clone_url_root": "git@gitlab.example.com:",
    "enabled_git_access_protocol": "all",
    "receive_max_input_size_mb": 0,
    "gitlab_version": "18.6.0",
    "pages_host": "pages.example.com",
    "gitlab_shell_operation_limit": 600,
    "allow_local_requests_from_web_hooks_and_services": false,
    "broadcast_messages": [
      {"id": 1, "message": "Maintenance tonight", "target_path": null,
       "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}
    ]
  },
  "storages": [
    {"name": "default", "gitaly_address": "unix:/var/opt/gitlab/gitaly/gitaly.socket",
     "gitaly_token": "", "path": "/var/opt/gitlab/git-data/repositories"}
  ],
  "users": [
    {"id": 1, "username": "root", "name": "Administrator", "email": "admin@example.com",
     "public_email": "", "state": "active", "admin": true, "external": false,
     "can_create_project": true, "two_factor_enabled": false},
    {"id": 2, "username": "dev", "name": "Developer", "email": "dev@example.com"},
    {"id": 3, "username": "lead", "name": "Lead", "email": "lead@example.com"}
  ],
  "keys": [
    {"id": 1, "user_id": 1, "title": "laptop", "key": "KEY_A",
     "usage_type": "auth_and_signing", "expires_at": null},
    {"id": 2, "user_id": 2, "title": "dev laptop", "key": "KEY_C",
     "usage_type": "auth", "expires_at": "2030-06-30T12:00:00Z"}
  ],
  "deploy_keys": [
    {"id": 100, "user_id": 1, "title": "ci", "key": "KEY_B",
     "expires_at": null, "projects": [{"project_id": 10, "can_push": false}]}
  ],
  "namespaces": [
    {"id": 5, "path": "acme", "name": "Acme", "kind": "group", "parent_id": null},
    {"id": 6, "path": "tools", "name": "Tools", "kind": "group", "parent_id": 5}
  ],
  "projects": [
    {"id": 10, "namespace_id": 5, "path": "widgets", "name": "Widgets", "description": "",
     "visibility": "private", "archived": false, "default_branch": "main",
     "storage": "default", "disk_path": "@hashed/4a/44/4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5",
     "repository_access_level": "enabled", "merge_requests_enabled": true,
     "lfs_enabled": true, "repository_exists": true, "redirects": ["acme/old-widgets"]},
    {"id": 11, "namespace_id": 6, "path": "hammer", "name": "Hammer"}
  ],
  "members": [
    {"user_id": 2, "project_id": 10, "access_level": 30},
    {"user_id": 3, "namespace_id": 5, "access_level": 40}
  ],
  "protected_branches": [
    {"id": 1, "project_id": 10, "name": "main", "push_access_level": 40,
     "merge_access_level": 40, "allow_force_push": false}
  ],
  "protected_tags": [
    {"id": 1, "project_id": 10, "name": "v*", "create_access_level": 40}
  ],
  "personal_access_tokens": [
    {"id": 1, "user_id": 1, "name": "automation", "token": "PAT",
     "scopes": ["api"], "expires_at": "2027-12-31", "revoked": false}
  ],
  "cluster_agents": [
    {"id": 3, "project_id": 10, "name": "prod",
     "tokens": [{"id": 1, "token": "AGENT_TOKEN", "revoked": false}],
     "configuration": {"ci_access": {"projects": [{"id": "acme/widgets"}]}},
     "authorizations": {
       "ci_access": {"projects": [{"project_id": 10, "config": {"default_namespace": "prod"}}],
                     "groups": [{"namespace_id": 5, "config": {}}]},
       "user_access": {"projects": [{"project_id": 10, "config": {"access_as": {"agent": {}}}}],
                       "groups": [{"namespace_id": 5, "config": {"access_as": {"agent": {}}}}]}}}
  ],
  "runners": [
    {"id": 1, "token": "RUNNER_TOKEN", "description": "", "active": true}
  ],
  "pages_domains": [
    {"id": 1, "project_id": 10, "domain": "docs.acme.example", "enabled": true,
     "certificate": null, "key": null, "https_only": true}
  ],
  "pages_deployments": [
    {"id": 9, "project_id": 10, "path_prefix": "", "root_directory": "public",
     "source_path": "file:///var/opt/gitlab/pages/acme/widgets/artifacts.zip",
     "sha256": "9f86d0...", "file_size": 10240, "file_count": 17, "access_control": false}
  ],
  "zoekt_nodes": [
    {"id": 1, "uuid": "3869fe21-36d1-4612-9676-0b783ef2dcd7", "name": "zoekt-0",
     "url": "http://127.0.0.1:6080"}
  ],
  "zoekt_enabled_namespaces": [{"namespace_id": 5}],
  "webhooks": [
    {"id": 1, "project_id": 10, "url": "http://127.0.0.1:9911/hook", "token": "s3cret",
     "push_events": true, "tag_push_events": true, "enabled": true}
  ]
})");
  doc["keys"][0]["key"] = key_a;
  doc["keys"][1]["key"] = key_c;
  doc["deploy_keys"][0]["key"] = key_b;
  doc["personal_access_tokens"][0]["token"] = demo_pat;
  doc["cluster_agents"][0]["tokens"][0]["token"] = demo_agent_token;
  doc["runners"][0]["token"] = demo_runner_token;
  return doc;
}

} // namespace gatehouse::test
