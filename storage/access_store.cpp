#include "storage/access_store.hpp"

#include "common/base64.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <openssl/evp.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>
#include <string_view>
#include <utility>

namespace gatehouse::storage {

namespace {

using json = nlohmann::json;

/// GitLab hands out ten recovery codes of 16 lower-case hex characters.
constexpr int recovery_code_count = 10;
constexpr std::size_t recovery_code_bytes = 8;

constexpr std::string_view pat_prefix = "glpat-";
constexpr std::size_t pat_random_chars = 20;

/// Attempts to insert a token before giving up on id or digest conflicts.
constexpr int pat_insert_attempts = 3;

/// `n` characters from [A-Za-z0-9_-]. 64 symbols, so the low six bits of a
/// uniform random byte pick one uniformly.
std::string random_token_chars(std::size_t n) {
  static constexpr char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  std::string out;
  out.reserve(n);
  for (unsigned char b : random_bytes(n))
    out += alphabet[b & 0x3f];
  return out;
}

/// Locks the user's row so that concurrent writes for one user serialise;
/// false when there is no such user.
bool lock_user(pqxx::work& tx, std::int64_t user_id) {
  return !tx.exec_params("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
                         user_id)
            .empty();
}

caf::error no_user(std::int64_t user_id) {
  return caf::make_error(errc::not_found,
                         "no user with id " + std::to_string(user_id));
}

caf::expected<std::vector<std::string>> replace_recovery_codes(
  pqxx::connection& conn, std::int64_t user_id) {
  std::set<std::string> unique;
  while (unique.size() < recovery_code_count)
    unique.insert(hex_encode(random_bytes(recovery_code_bytes)));
  std::vector<std::string> codes(unique.begin(), unique.end());
  json digests = json::array();
  for (const auto& code : codes)
    digests.push_back(token_digest(code));
  pqxx::work tx{conn, "recovery_codes"};
  if (!lock_user(tx, user_id))
    return no_user(user_id);
  tx.exec_params("DELETE FROM gatehouse_state.two_factor_recovery_codes "
                 "WHERE user_id = $1",
                 user_id);
  tx.exec_params("INSERT INTO gatehouse_state.two_factor_recovery_codes "
                 "(user_id, code_digest) SELECT $1, d FROM "
                 "jsonb_array_elements_text($2::jsonb) AS d",
                 user_id, digests.dump());
  tx.commit();
  return codes;
}

// The facts of an uploaded file. Hashing reads it once, in blocks: an LFS
// object may be far larger than memory.
uploaded_file_facts inspect_upload(const std::string& path,
                                   const std::string& allowed_dir) {
  uploaded_file_facts out;
  char resolved[PATH_MAX];
  char root[PATH_MAX];
  if (path.empty() || ::realpath(path.c_str(), resolved) == nullptr)
    return out;
  out.real_path = resolved;
  struct stat st {};
  if (::stat(resolved, &st) != 0 || !S_ISREG(st.st_mode))
    return out;
  out.found = true;
  out.size = static_cast<std::int64_t>(st.st_size);
  if (::realpath(allowed_dir.c_str(), root) != nullptr) {
    std::string prefix = std::string{root} + "/";
    out.inside_allowed = out.real_path.compare(0, prefix.size(), prefix) == 0;
  }
  if (!out.inside_allowed)
    return out;
  std::ifstream in{out.real_path, std::ios::binary};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(),
                                                             EVP_MD_CTX_free};
  if (!in || !ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("cannot hash " + out.real_path);
  std::vector<char> block(1 << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    if (in.gcount() > 0)
      EVP_DigestUpdate(ctx.get(), block.data(),
                       static_cast<std::size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  out.sha256 = hex_encode(
    std::string_view{reinterpret_cast<const char*>(digest), length});
  return out;
}

// Moves a verified upload to <dir>/<oid[0:2]>/<oid[2:4]>/<oid[4:]> (GitLab's
// layout) and records it; an object already kept stays, and the upload goes.
bool keep_lfs_object(pqxx::connection& conn, const lfs_object_request& req) {
  namespace fs = std::filesystem;
  fs::path dest = fs::path{req.storage_dir} / req.oid.substr(0, 2)
    / req.oid.substr(2, 2) / req.oid.substr(4);
  fs::create_directories(dest.parent_path());
  std::error_code ec;
  if (fs::exists(dest, ec))
    fs::remove(req.uploaded_path, ec);
  else
    fs::rename(req.uploaded_path, dest);
  pqxx::work tx{conn, "keep_lfs"};
  tx.exec_params("INSERT INTO lfs_objects (oid, size, file_path) "
                 "VALUES ($1, $2, $3) ON CONFLICT (oid) DO NOTHING",
                 req.oid, req.size, dest.string());
  tx.exec_params("INSERT INTO lfs_objects_projects (oid, project_id, "
                 "repository_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                 req.oid, req.project_id, req.repository_type);
  tx.commit();
  return true;
}

caf::expected<pat_result> insert_pat(pqxx::connection& conn,
                                     const pat_request& req) {
  json scopes = req.scopes;
  pqxx::work tx{conn, "create_pat"};
  if (!lock_user(tx, req.user_id))
    return no_user(req.user_id);
  for (int attempt = 0; attempt < pat_insert_attempts; ++attempt) {
    auto token = std::string{pat_prefix} + random_token_chars(pat_random_chars);
    auto inserted = tx.exec_params(
      "INSERT INTO personal_access_tokens (id, user_id, name, token_digest, "
      "scopes, expires_at) VALUES "
      "(nextval('gatehouse_state.personal_access_token_ids'), $1, $2, $3, "
      "ARRAY(SELECT jsonb_array_elements_text($4::jsonb)), "
      "NULLIF($5, '')::date) ON CONFLICT DO NOTHING RETURNING id",
      req.user_id, req.name, token_digest(token), scopes.dump(),
      req.expires_at);
    if (inserted.empty())
      continue; // a seeded id or (never seen) digest collided; draw again
    // personal_access_tokens is seed data that other read models may cache.
    tx.exec("SELECT pg_notify('gatehouse_changes', "
            "'{\"kinds\":[\"personal_access_tokens\"]}')");
    tx.commit();
    return pat_result{std::move(token)};
  }
  return caf::make_error(errc::internal, "no free personal access token id");
}

} // namespace

access_store_actor::behavior_type access_store(
  access_store_actor::stateful_pointer<access_store_state> self,
  access_store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  return {
    [=](atom::touch_key, std::int64_t key_id) {
      // Best effort, like GitLab's: a failure only delays the timestamp. It
      // leaves updated_at alone and sends no NOTIFY, so key use never makes
      // the read model reload.
      self->state.session.run("touch_key", [&](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        tx.exec_params("UPDATE keys SET last_used_at = now() WHERE id = $1 "
                       "AND (last_used_at IS NULL OR last_used_at < now() - "
                       "interval '1 day')",
                       key_id);
        return true;
      });
    },
    [=](atom::put_moved, std::int64_t user_id, std::int64_t project_id,
        std::string& message) -> caf::result<bool> {
      return self->state.session.run("put_moved", [&](pqxx::connection& c) {
        pqxx::work tx{c, "put_moved"};
        tx.exec("DELETE FROM gatehouse_state.project_moved_messages "
                "WHERE expires_at < now()");
        tx.exec_params(
          "INSERT INTO gatehouse_state.project_moved_messages "
          "(user_id, project_id, message, expires_at) VALUES "
          "($1, $2, $3, now() + interval '5 minutes') "
          "ON CONFLICT (user_id, project_id) DO UPDATE SET "
          "message = EXCLUDED.message, expires_at = EXCLUDED.expires_at",
          user_id, project_id, message);
        tx.commit();
        return true;
      });
    },
    [=](atom::take_moved, std::int64_t user_id,
        std::int64_t project_id) -> caf::result<std::string> {
      return self->state.session.run("take_moved", [&](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        auto rows
          = tx.exec_params("DELETE FROM gatehouse_state.project_moved_messages "
                           "WHERE user_id = $1 AND project_id = $2 "
                           "RETURNING message, expires_at > now()",
                           user_id, project_id);
        if (rows.empty() || !rows[0][1].as<bool>())
          return std::string{};
        return rows[0][0].as<std::string>();
      });
    },
    [=](atom::signing_key, std::string& name) -> caf::result<std::string> {
      auto& cache = self->state.signing_keys;
      if (auto it = cache.find(name); it != cache.end())
        return it->second;
      auto secret = self->state.session.run(
        "signing_key", [&](pqxx::connection& c) -> caf::expected<std::string> {
          pqxx::nontransaction tx{c};
          auto rows = tx.exec_params(
            "SELECT secret FROM gatehouse_state.signing_keys WHERE name = $1",
            name);
          if (rows.empty())
            return caf::make_error(errc::not_found,
                                   "no signing key named " + name);
          return pqxx::binarystring{rows[0][0]}.str();
        });
      if (secret)
        cache.emplace(name, *secret);
      return secret;
    },
    [=](atom::new_codes,
        std::int64_t user_id) -> caf::result<std::vector<std::string>> {
      return self->state.session.run("new_codes", [&](pqxx::connection& c) {
        return replace_recovery_codes(c, user_id);
      });
    },
    [=](atom::create_pat, pat_request& req) -> caf::result<pat_result> {
      return self->state.session.run(
        "create_pat", [&](pqxx::connection& c) { return insert_pat(c, req); });
    },
    [=](atom::upload_facts, std::string& path,
        std::string& allowed_dir) -> caf::result<uploaded_file_facts> {
      try {
        return inspect_upload(path, allowed_dir);
      } catch (const std::exception& e) {
        return caf::make_error(errc::internal, std::string{e.what()});
      }
    },
    [=](atom::keep_lfs, lfs_object_request& req) -> caf::result<bool> {
      try {
        return self->state.session.run(
          "keep_lfs", [&](pqxx::connection& c) { return keep_lfs_object(c, req); });
      } catch (const std::exception& e) {
        return caf::make_error(errc::internal, std::string{e.what()});
      }
    },
  };
}

} // namespace gatehouse::storage
