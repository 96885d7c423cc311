// gatehouse: GitLab's internal API, answered by an actor system.
#include "app/commands.hpp"
#include "app/serve.hpp"
#include "common/config.hpp"
#include "common/jwt.hpp"
#include "common/log.hpp"
#include "common/secrets.hpp"
#include "storage/database.hpp"
#include "storage/migrate.hpp"
#include "storage/seed.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace gatehouse;

constexpr const char* usage_text = R"(usage: gatehouse <command> [args]

Commands:
  serve                 serve the internal API (HTTP) until SIGINT/SIGTERM
  migrate               apply the database migrations (idempotent)
  seed [--prune] FILE   load a seed document; --prune also deletes what FILE
                        no longer lists, for the kinds FILE contains
  jwt CALLER            print a fresh token for CALLER (shell, workhorse, kas,
                        pages), signed with that caller's secret file
  events tail [--subject S] [--from-start]
                        print push events from JetStream as JSON lines with
                        their headers
  webhooks              deliver push events to the projects' webhooks
  --help                this text
  --version             the version and build revision

Configuration comes from GATEHOUSE_* environment variables; see README.md.
)";

int usage_error(const std::string& what) {
  std::cerr << "gatehouse: " << what << "\n\n" << usage_text;
  return 64; // EX_USAGE
}

int migrate_command(const config& cfg) {
  auto conn = storage::connect_waiting(
    cfg.database_url, std::chrono::minutes(10), cfg.database_wait);
  auto report = storage::migrate(*conn);
  for (auto& name : report.applied)
    std::cout << "applied " << name << '\n';
  std::cout << "migrations: " << report.applied.size() << " applied, "
            << report.skipped.size() << " already applied\n";
  return 0;
}

int seed_command(const config& cfg, const std::vector<std::string>& args) {
  storage::seed_options opts;
  std::optional<std::string> file;
  for (auto& arg : args) {
    if (arg == "--prune")
      opts.prune = true;
    else if (!arg.empty() && arg[0] == '-')
      return usage_error("seed: unknown option " + arg);
    else if (file)
      return usage_error("seed: more than one FILE");
    else
      file = arg;
  }
  if (!file)
    return usage_error("seed: FILE is missing");
  std::ifstream in{*file};
  if (!in) {
    std::cerr << "gatehouse: " << *file << ": " << std::strerror(errno) << '\n';
    return 1;
  }
  auto conn = storage::connect_waiting(
    cfg.database_url, std::chrono::minutes(10), cfg.database_wait);
  auto report = storage::apply_seed(*conn, in, opts);
  if (!report.ok()) {
    for (auto& problem : report.problems)
      std::cerr << *file << ": " << problem << '\n';
    std::cerr << "gatehouse: seed not applied: " << report.problems.size()
              << " problem(s); nothing was changed\n";
    return 1;
  }
  for (auto& [kind, n] : report.upserted)
    std::cout << "seeded " << kind << ": " << n << '\n';
  for (auto& [kind, n] : report.pruned)
    std::cout << "pruned " << kind << ": " << n << '\n';
  return 0;
}

int jwt_command(const config& cfg, const std::vector<std::string>& args) {
  if (args.size() != 1)
    return usage_error("jwt: expected one CALLER");
  std::optional<jwt::caller> who;
  for (auto c : {jwt::caller::shell, jwt::caller::workhorse, jwt::caller::kas,
                 jwt::caller::pages})
    if (args[0] == jwt::to_string(c))
      who = c;
  if (!who)
    return usage_error("jwt: unknown caller " + args[0]);
  const auto& path = cfg.secret_file(*who);
  if (!path) {
    std::cerr << "gatehouse: " << secret_file_variable(*who) << " is not set\n";
    return 1;
  }
  auto secret = load_secret(*who, *path);
  if (secret.warning)
    std::cerr << "gatehouse: warning: " << *secret.warning << '\n';
  std::cout << jwt::sign(*who, secret.key, std::time(nullptr)) << '\n';
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty())
    return usage_error("a command is required");
  auto command = args.front();
  args.erase(args.begin());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << usage_text;
    return 0;
  }
  if (command == "--version" || command == "version") {
    std::cout << "gatehouse " << GATEHOUSE_VERSION << " (" << GATEHOUSE_REVISION
              << ")\n";
    return 0;
  }
  try {
    auto cfg = config_from_env();
    log::set_format(cfg.log);
    if (command == "serve")
      return args.empty() ? serve(cfg)
                          : usage_error("serve takes no arguments");
    if (command == "migrate")
      return args.empty() ? migrate_command(cfg)
                          : usage_error("migrate takes no arguments");
    if (command == "seed")
      return seed_command(cfg, args);
    if (command == "jwt")
      return jwt_command(cfg, args);
    if (command == "events")
      return events_command(cfg, args);
    if (command == "webhooks")
      return webhooks_command(cfg, args);
    return usage_error("unknown command " + command);
  } catch (const config_error& e) {
    std::cerr << "gatehouse: " << e.what() << '\n';
    return 2;
  } catch (const secret_error& e) {
    std::cerr << "gatehouse: " << e.what() << '\n';
    return 2;
  } catch (const pqxx::broken_connection& e) {
    std::cerr << "gatehouse: cannot connect to PostgreSQL: " << e.what();
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "gatehouse: " << e.what() << '\n';
    return 1;
  }
}
