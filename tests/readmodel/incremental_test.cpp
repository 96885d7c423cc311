// The read model's incremental updates: changes read from the change log
// (storage/schema/006_read_model_changes.sql) must leave the same model as
// a full load, and must not load in full. Hidden tag [.pg].

#include "storage/read_model_loader.hpp"
#include "tests/readmodel/fixtures.hpp"

#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

template <class T>
std::string opt(const std::optional<T>& v) {
  if (!v)
    return "null";
  std::ostringstream out;
  out << *v;
  return out.str();
}

/// Every entry of a model, one sorted line each: two models are equal
/// when their descriptions are.
std::vector<std::string> describe(const snapshot& s) {
  std::vector<std::string> lines;
  auto add = [&](std::ostringstream& line) { lines.push_back(line.str()); };
  {
    const auto& st = s.settings;
    std::ostringstream l;
    l << "settings " << st.external_url << '|' << st.ssh_clone_url_root << '|'
      << st.enabled_git_access_protocol << '|' << st.receive_max_input_size_mb
      << '|' << st.gitlab_version << '|' << st.pages_host << '|'
      << st.gitlab_shell_operation_limit << '|'
      << st.allow_local_requests_from_web_hooks_and_services << '|'
      << st.broadcast_messages.size();
    add(l);
  }
  for (const auto& [name, st] : s.storages) {
    std::ostringstream l;
    l << "storage " << name << '|' << st.gitaly_address << '|' << st.path;
    add(l);
  }
  s.users.for_each([&](std::int64_t id, const user_record& u) {
    std::ostringstream l;
    l << "user " << id << '|' << u.username << '|' << u.name << '|'
      << u.email << '|' << u.public_email << '|' << u.state << '|' << u.admin
      << u.external << u.can_create_project << u.two_factor_enabled;
    add(l);
  });
  s.user_by_username.for_each([&](const std::string& name, std::int64_t id) {
    std::ostringstream l;
    l << "username " << name << " -> " << id;
    add(l);
  });
  s.keys.for_each([&](std::int64_t id, const key_record& k) {
    std::ostringstream l;
    l << "key " << id << '|' << k.deploy << '|' << opt(k.user_id) << '|'
      << k.title << '|' << k.key_type << '|' << k.blob << '|' << k.usage_type
      << '|' << opt(k.expires_at) << '|' << opt(k.last_used_at) << '|'
      << k.created_at << '|';
    for (const auto& [project, can_push] : k.deploy_projects)
      l << project << ':' << can_push << ',';
    add(l);
  });
  s.key_by_fingerprint.for_each([&](const std::string& fp, std::int64_t id) {
    std::ostringstream l;
    l << "fingerprint " << fp << " -> " << id;
    add(l);
  });
  s.namespaces.for_each([&](std::int64_t id, const namespace_record& n) {
    std::ostringstream l;
    l << "namespace " << id << '|' << opt(n.parent_id) << '|' << n.path << '|'
      << n.full_path << '|' << n.name << '|' << n.kind;
    add(l);
  });
  s.projects.for_each([&](std::int64_t id, const project_record& p) {
    std::ostringstream l;
    l << "project " << id << '|' << p.namespace_id << '|' << p.path << '|'
      << p.full_path << '|' << p.name << '|' << p.description << '|'
      << p.visibility << '|' << p.archived << '|' << p.default_branch << '|'
      << p.storage << '|' << p.disk_path << '|' << p.repository_access_level
      << '|' << p.merge_requests_enabled << p.lfs_enabled
      << p.repository_exists;
    add(l);
  });
  s.project_by_path.for_each([&](const std::string& path, std::int64_t id) {
    std::ostringstream l;
    l << "path " << path << " -> " << id;
    add(l);
  });
  s.redirects.for_each([&](const std::string& path, std::int64_t id) {
    std::ostringstream l;
    l << "redirect " << path << " -> " << id;
    add(l);
  });
  s.project_members.for_each([&](const snapshot::id_pair& k, int level) {
    std::ostringstream l;
    l << "project member " << k.first << ',' << k.second << " = " << level;
    add(l);
  });
  s.namespace_members.for_each([&](const snapshot::id_pair& k, int level) {
    std::ostringstream l;
    l << "namespace member " << k.first << ',' << k.second << " = " << level;
    add(l);
  });
  s.protected_branches.for_each(
    [&](std::int64_t project, const std::vector<protected_branch_record>& bs) {
      std::ostringstream l;
      l << "branches " << project << ':';
      for (const auto& b : bs)
        l << ' ' << b.id << '/' << b.name << '/' << b.push_access_level << '/'
          << b.merge_access_level << '/' << b.allow_force_push;
      add(l);
    });
  s.protected_tags.for_each(
    [&](std::int64_t project, const std::vector<protected_tag_record>& ts) {
      std::ostringstream l;
      l << "tags " << project << ':';
      for (const auto& t : ts)
        l << ' ' << t.id << '/' << t.name << '/' << t.create_access_level;
      add(l);
    });
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// Random writes to every read-model table, as an administrator's tools
/// would make them: each one a statement that keeps the schema's rules.
class random_writer {
public:
  explicit random_writer(unsigned seed) : rng_(seed) {
  }

  /// One statement; `n` makes names unique.
  std::string next(int n) {
    auto id = [&](const std::vector<std::int64_t>& ids) {
      return ids[pick(ids.size())];
    };
    auto ns = std::to_string(n);
    switch (pick(16)) {
      case 0: {
        auto u = 1000 + n;
        users_.push_back(u);
        return "INSERT INTO users (id, username, name) VALUES ("
               + std::to_string(u) + ", 'user" + ns + "', 'User " + ns + "')";
      }
      case 1:
        return "UPDATE users SET username = 'Renamed" + ns
               + "', name = 'N" + ns + "' WHERE id = "
               + std::to_string(id(users_));
      case 2:
        return "UPDATE users SET state = CASE state WHEN 'active' THEN "
               "'blocked' ELSE 'active' END WHERE id = "
               + std::to_string(id(users_));
      case 3:
        return "DELETE FROM users WHERE id = " + std::to_string(id(users_))
               + " AND id >= 1000";
      case 4: {
        auto k = 1000 + n;
        keys_.push_back(k);
        return "INSERT INTO keys (id, kind, user_id, title, key, key_type, "
               "key_blob, fingerprint_sha256) SELECT "
               + std::to_string(k) + ", 'personal', id, 'k" + ns
               + "', 'ssh-ed25519 AAAA" + ns + "', 'ssh-ed25519', 'AAAA" + ns
               + "', 'SHA256:fp" + ns + "' FROM users WHERE id = "
               + std::to_string(id(users_));
      }
      case 5:
        return "UPDATE keys SET title = 't" + ns + "', key_blob = 'BBBB" + ns
               + "', fingerprint_sha256 = 'SHA256:new" + ns
               + "', usage_type = 'auth' WHERE id = "
               + std::to_string(id(keys_));
      case 6:
        return "DELETE FROM keys WHERE id = " + std::to_string(id(keys_));
      case 7: {
        auto p = 1000 + n;
        projects_.push_back(p);
        return "INSERT INTO projects (id, namespace_id, path, name, storage, "
               "disk_path, full_path) SELECT "
               + std::to_string(p) + ", id, 'p" + ns + "', 'P" + ns
               + "', 'default', 'd/" + ns + "', full_path || '/p" + ns
               + "' FROM namespaces ORDER BY id LIMIT 1";
      }
      case 8: {
        auto p = std::to_string(id(projects_));
        return "WITH old AS (SELECT full_path FROM projects WHERE id = " + p
               + "), moved AS (UPDATE projects SET full_path = full_path || "
                 "'-"
               + ns + "', visibility = 'public' WHERE id = " + p
               + " RETURNING id) INSERT INTO project_redirects (path, "
                 "project_id) SELECT old.full_path, moved.id FROM old, moved "
                 "ON CONFLICT DO NOTHING";
      }
      case 9:
        return "DELETE FROM projects WHERE id = "
               + std::to_string(id(projects_)) + " AND id >= 1000";
      case 10:
        return "INSERT INTO members (user_id, project_id, access_level) "
               "SELECT u.id, p.id, "
               + std::to_string(levels_[pick(5)])
               + " FROM users u, projects p WHERE u.id = "
               + std::to_string(id(users_)) + " AND p.id = "
               + std::to_string(id(projects_))
               + " ON CONFLICT (user_id, project_id) WHERE project_id IS NOT "
                 "NULL DO UPDATE SET access_level = EXCLUDED.access_level";
      case 11:
        return "DELETE FROM members WHERE id IN (SELECT id FROM members "
               "ORDER BY random() LIMIT 1)";
      case 12:
        return "INSERT INTO members (user_id, namespace_id, access_level) "
               "SELECT u.id, n.id, "
               + std::to_string(levels_[pick(5)])
               + " FROM users u, namespaces n WHERE u.id = "
               + std::to_string(id(users_))
               + " ON CONFLICT (user_id, namespace_id) WHERE namespace_id IS "
                 "NOT NULL DO UPDATE SET access_level = EXCLUDED.access_level";
      case 13:
        return "INSERT INTO protected_branches (id, project_id, name) SELECT "
               + std::to_string(1000 + n) + ", id, 'b" + ns
               + "' FROM projects WHERE id = " + std::to_string(id(projects_));
      case 14:
        return pick(2) ? "DELETE FROM protected_branches WHERE id IN (SELECT "
                         "id FROM protected_branches ORDER BY random() LIMIT "
                         "1)"
                       : "DELETE FROM project_redirects WHERE path IN (SELECT "
                         "path FROM project_redirects ORDER BY random() "
                         "LIMIT 1)";
      default:
        return pick(2) ? "INSERT INTO deploy_keys_projects (key_id, "
                         "project_id, can_push) SELECT k.id, p.id, true FROM "
                         "keys k, projects p WHERE k.kind = 'deploy' AND p.id "
                         "= "
                           + std::to_string(id(projects_))
                           + " ON CONFLICT (key_id, project_id) DO UPDATE SET "
                             "can_push = NOT deploy_keys_projects.can_push"
                       : "UPDATE storages SET gitaly_address = 'tcp://g" + ns
                           + ":8075'";
    }
  }

private:
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>{0, n - 1}(rng_);
  }

  std::mt19937 rng_;
  // Ids that may exist; a statement on a gone one changes nothing.
  std::vector<std::int64_t> users_{2, 3};
  std::vector<std::int64_t> keys_{2, 3};
  std::vector<std::int64_t> projects_{10};
  const int levels_[5] = {10, 20, 30, 40, 50};
};

/// Waits for the model that carries `version` in its settings.
snapshot_ptr wait_for_version(actor_env& env, const std::string& version) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = env.next_snapshot(1s);
    if (s && s->settings.gitlab_version == version)
      return s;
  }
  return nullptr;
}

void set_version(pqxx::connection& c, const std::string& version) {
  exec(c, "UPDATE settings SET value = to_jsonb('" + version
            + "'::text) WHERE key = 'gitlab_version'");
}

} // namespace

TEST_CASE("incremental updates leave the model a full load reads",
          "[.pg]") {
  seeded_database m;
  // Bystanders in a shard of their own (ids shard by runs of 1,024) that
  // no random write touches: their shards stay shared unless a full load
  // replaces every shard.
  exec(*m.conn, "INSERT INTO users (id, username) VALUES (5000000, "
                "'bystander')");
  exec(*m.conn, "INSERT INTO keys (id, kind, user_id, key, key_type, "
                "key_blob, fingerprint_sha256) VALUES (5000000, 'personal', "
                "5000000, 'ssh-ed25519 AAAAby', 'ssh-ed25519', 'AAAAby', "
                "'SHA256:bystander')");
  actor_env env;
  auto loader = env.sys.spawn<caf::detached>(storage::read_model_loader,
                                             loader_settings(m.db.url()));
  env.self->send(loader, atom::subscribe::value, env.subscriber());
  auto first = env.next_snapshot(10s);
  REQUIRE(first);

  auto seed = std::random_device{}();
  INFO("random seed " << seed);
  random_writer writer{seed};
  int n = 0;
  for (int round = 0; round < 25; ++round) {
    // A few transactions per round, some rolled back, some failing.
    for (int t = 0; t < 3; ++t) {
      pqxx::work tx{*m.conn};
      try {
        for (int i = 0; i < 3; ++i)
          tx.exec(writer.next(++n));
        if (t == 2 && round % 3 == 0)
          tx.abort();
        else
          tx.commit();
      } catch (const pqxx::sql_error&) {
        // A write the schema refused (a username taken, say): the whole
        // transaction is gone, as a real one would be.
      }
    }
    // Settings change last: the model that shows it shows all before it.
    auto version = "round-" + std::to_string(round);
    set_version(*m.conn, version);
    auto updated = wait_for_version(env, version);
    REQUIRE(updated);
    auto full = storage::load_snapshot(*m.conn);
    REQUIRE(describe(*updated) == describe(full));
    // No full load: the bystanders' shards are the first model's.
    CHECK(updated->users.shares_shard_with(first->users,
                                           first->users.shard_of(5000000)));
    CHECK(updated->keys.shares_shard_with(first->keys,
                                          first->keys.shard_of(5000000)));
  }
  env.self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_CASE("a change whose transaction commits after a later one's is "
          "applied",
          "[.pg]") {
  seeded_database m;
  actor_env env;
  auto loader = env.sys.spawn<caf::detached>(storage::read_model_loader,
                                             loader_settings(m.db.url()));
  env.self->send(loader, atom::subscribe::value, env.subscriber());
  REQUIRE(env.next_snapshot(10s));

  // The first transaction takes the lower seq of the change log...
  auto other = storage::connect(m.db.url(), std::chrono::seconds{30});
  pqxx::work early{*other};
  early.exec("UPDATE users SET name = 'Early' WHERE id = 2");
  // ...and a later one commits first.
  exec(*m.conn, "UPDATE users SET name = 'Late' WHERE id = 3");
  snapshot_ptr s;
  while (!s || s->users.at(3).name != "Late") {
    s = env.next_snapshot(10s);
    REQUIRE(s);
  }
  CHECK(s->users.at(2).name != "Early");
  early.commit();
  while (s->users.at(2).name != "Early") {
    s = env.next_snapshot(10s);
    REQUIRE(s);
  }
  CHECK(describe(*s) == describe(storage::load_snapshot(*m.conn)));
  env.self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_CASE("a seed and a TRUNCATE load in full; one change copies one shard",
          "[.pg]") {
  seeded_database m;
  actor_env env;
  auto loader = env.sys.spawn<caf::detached>(storage::read_model_loader,
                                             loader_settings(m.db.url()));
  env.self->send(loader, atom::subscribe::value, env.subscriber());
  auto first = env.next_snapshot(10s);
  REQUIRE(first);

  exec(*m.conn, "UPDATE users SET name = 'Changed' WHERE id = 2");
  auto changed = env.next_snapshot(10s);
  REQUIRE(changed);
  CHECK(changed->users.at(2).name == "Changed");
  std::size_t cloned = 0;
  for (std::size_t i = 0; i < snapshot::map<int, int>::shard_count; ++i)
    cloned += changed->users.shares_shard_with(first->users, i) ? 0 : 1;
  CHECK(cloned == 1);
  CHECK(changed->keys.shares_shard_with(first->keys, first->keys.shard_of(1)));

  // A seed writes no change rows but one '*': a full load, every shard new.
  auto doc = demo_seed();
  doc["users"][0]["name"] = "Seeded";
  seed_ok(*m.conn, doc);
  auto seeded = env.next_snapshot(10s);
  REQUIRE(seeded);
  CHECK(seeded->users.at(1).name == "Seeded");
  CHECK_FALSE(seeded->keys.shares_shard_with(changed->keys,
                                             changed->keys.shard_of(1)));
  // The seed's own rows went unlogged.
  CHECK(m.query("SELECT count(*) FROM gatehouse_state.read_model_changes c "
                "WHERE c.kind <> '*' AND c.txid = (SELECT txid FROM "
                "gatehouse_state.read_model_changes WHERE kind = '*' ORDER BY "
                "seq DESC LIMIT 1)")
        == "0");

  REQUIRE_FALSE(seeded->redirects.empty());
  exec(*m.conn, "TRUNCATE project_redirects");
  auto truncated = env.next_snapshot(10s);
  REQUIRE(truncated);
  CHECK(truncated->redirects.empty());
  CHECK_FALSE(truncated->users.shares_shard_with(seeded->users,
                                                 seeded->users.shard_of(1)));
  env.self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_CASE("a key's last use is no change; the log is pruned and the model "
          "still follows",
          "[.pg]") {
  seeded_database m;
  actor_env env;
  auto settings = loader_settings(m.db.url());
  settings.refresh_interval = 50ms;
  // Long enough for the loader (reading every 50 ms) to have read a row
  // before it may go.
  settings.change_log_retention = 300ms;
  auto loader = env.sys.spawn<caf::detached>(storage::read_model_loader,
                                             settings);
  env.self->send(loader, atom::subscribe::value, env.subscriber());
  REQUIRE(env.next_snapshot(10s));

  auto rows = [&] {
    return m.query("SELECT count(*) FROM gatehouse_state.read_model_changes");
  };
  exec(*m.conn, "UPDATE users SET name = 'Once' WHERE id = 2");
  REQUIRE(env.next_snapshot(10s));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (rows() != "0" && std::chrono::steady_clock::now() < deadline)
    env.next_snapshot(50ms);
  CHECK(rows() == "0");

  exec(*m.conn, "UPDATE keys SET last_used_at = now() WHERE id = 2");
  CHECK(rows() == "0");

  exec(*m.conn, "UPDATE users SET name = 'Twice' WHERE id = 2");
  auto s = env.next_snapshot(10s);
  REQUIRE(s);
  CHECK(s->users.at(2).name == "Twice");
  env.self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_CASE("a sharded map's copy shares every shard until one is written",
          "[readmodel]") {
  sharded_map<std::int64_t, std::string> a;
  for (std::int64_t i = 0; i < 10000; ++i)
    a[i] = "v" + std::to_string(i);
  auto b = a;
  b[7] = "changed";
  b.erase(8);
  b.erase(123456); // absent: no clone
  CHECK(a.at(7) == "v7");
  CHECK(a.count(8) == 1);
  CHECK(b.at(7) == "changed");
  CHECK(b.count(8) == 0);
  CHECK(a.size() == 10000);
  CHECK(b.size() == 9999);
  std::size_t cloned = 0;
  for (std::size_t i = 0; i < a.shard_count; ++i)
    cloned += a.shares_shard_with(b, i) ? 0 : 1;
  auto touched = a.shard_of(7) == a.shard_of(8) ? 1u : 2u;
  CHECK(cloned == touched);
  CHECK(b.find(123456) == b.end());
  CHECK_THROWS_AS(b.at(8), std::out_of_range);
  // Writing the clone again leaves the original alone.
  b[7] = "again";
  CHECK(a.at(7) == "v7");
}
