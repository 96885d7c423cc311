#include "actors/pages/rules.hpp"

#include "common/ascii.hpp"

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gatehouse::pages {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
    && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// "." + the pages host, lower-cased; "" when no pages host is set (then
/// every host is a custom domain).
std::string pages_suffix(const settings_row& s) {
  return s.pages_host.empty() ? std::string{} : "." + ascii_lower(s.pages_host);
}

/// The deployments Pages serves for `p`: without multiple versions only the
/// main one (empty path_prefix), as GitLab CE; with them every prefix. Of
/// several rows with one prefix the newest (highest id) is the active one.
std::vector<const deployment_row*> served(const project_row& p) {
  std::map<std::string, const deployment_row*> newest;
  for (const auto& d : p.deployments) {
    if (!p.multiple_versions && !d.path_prefix.empty())
      continue;
    auto& slot = newest[d.path_prefix];
    if (!slot || d.id > slot->id)
      slot = &d;
  }
  std::vector<const deployment_row*> out;
  for (const auto& [prefix, d] : newest)
    out.push_back(d);
  return out;
}

/// GitLab's pages_deployed?: something to serve. (GitLab would fail on a
/// project with only prefixed deployments and multiple versions off; here
/// it simply has nothing deployed.)
bool deployed(const project_row& p) {
  return !served(p).empty();
}

/// "/x/" from "x", "/x", "x/" or "/x/"; "/" from "".
std::string with_slashes(std::string s) {
  if (s.empty() || s.front() != '/')
    s.insert(s.begin(), '/');
  if (s.back() != '/')
    s.push_back('/');
  return s;
}

/// The namespaces read, by id, to walk ancestors.
class namespace_tree {
public:
  explicit namespace_tree(const std::vector<namespace_row>& rows) {
    for (const auto& n : rows)
      by_id_.emplace(n.id, &n);
  }

  /// The top-level ancestor of `id` (itself when top-level); 0 when the
  /// chain is not among the rows read.
  std::int64_t root_of(std::int64_t id) const {
    for (std::size_t depth = 0; depth < by_id_.size() + 1; ++depth) {
      auto it = by_id_.find(id);
      if (it == by_id_.end())
        return 0;
      if (!it->second->parent_id)
        return id;
      id = *it->second->parent_id;
    }
    return 0; // a loop: the seed loader refuses them, never trust it here
  }

  /// Whether `id` or an ancestor forces access control (GitLab's
  /// pages_access_control_trie covers the project's traversal ids).
  bool forced(std::int64_t id) const {
    for (std::size_t depth = 0; depth < by_id_.size() + 1; ++depth) {
      auto it = by_id_.find(id);
      if (it == by_id_.end())
        return false;
      if (it->second->force_access_control)
        return true;
      if (!it->second->parent_id)
        return false;
      id = *it->second->parent_id;
    }
    return false;
  }

private:
  std::unordered_map<std::int64_t, const namespace_row*> by_id_;
};

/// ProjectFeature#private_pages?: pages are public only at level "public",
/// or at "enabled" in a public project; "private" and "disabled" are not.
bool private_pages(const project_row& p) {
  return !(p.access_level == "public"
           || (p.access_level == "enabled" && p.visibility == "public"));
}

/// VirtualDomain#access_control_for, plus the seed's per-deployment switch
/// (which, like everything here, counts only while the instance switch is
/// on: Pages has no OAuth application otherwise).
bool access_control(const settings_row& s, const namespace_tree& tree,
                    const project_row& p, const deployment_row& d) {
  if (!s.access_control)
    return false;
  return s.force_access_control || private_pages(p) || d.access_control
    || tree.forced(p.namespace_id);
}

/// UrlBuilder#is_namespace_homepage?: the project "<namespace>.<pages
/// host>" directly in its top-level namespace. GitLab lower-cases the
/// project path but not the namespace; so does this.
bool namespace_homepage(const project_row& p, const std::string& suffix) {
  auto slash = p.full_path.find('/');
  if (slash == std::string::npos || suffix.empty())
    return false;
  auto top = p.full_path.substr(0, slash);
  auto rest = ascii_lower(p.full_path.substr(slash + 1));
  return rest == top + suffix;
}

/// The domain being answered: its trim prefix (nullopt: the project's own
/// full path) and its custom domain row, if any.
struct domain_context {
  std::optional<std::string> trim_prefix;
  const domain_row* custom = nullptr;
};

/// LookupPath#prefix.
std::string prefix_of(const project_row& p, const deployment_row& d,
                      const domain_context& ctx, const std::string& suffix) {
  if (namespace_homepage(p, suffix))
    return with_slashes(d.path_prefix);
  const auto& trim = ctx.trim_prefix ? *ctx.trim_prefix : p.full_path;
  auto rel = p.full_path.compare(0, trim.size(), trim) == 0
    ? p.full_path.substr(trim.size())
    : p.full_path;
  if (!d.path_prefix.empty())
    rel += "/" + d.path_prefix;
  return with_slashes(std::move(rel));
}

/// PagesDomain#https?: both halves of the TLS pair present.
bool serves_https(const domain_row& d) {
  return d.certificate && !d.certificate->empty() && d.key && !d.key->empty();
}

lookup_path path_of(const settings_row& s, const namespace_tree& tree,
                    const project_row& p, const deployment_row& d,
                    const domain_context& ctx, const std::string& suffix) {
  lookup_path out;
  out.project_id = p.id;
  out.access_control = access_control(s, tree, p, d);
  out.https_only = p.https_only && (!ctx.custom || serves_https(*ctx.custom));
  out.prefix = prefix_of(p, d, ctx, suffix);
  out.source.path = d.source_path;
  out.source.global_id = "gid://gitlab/PagesDeployment/" + std::to_string(d.id);
  out.source.sha256 = d.sha256;
  out.source.file_size = d.file_size;
  out.source.file_count = d.file_count;
  // A custom domain never names the unique host (GitLab issue 426435).
  if (!ctx.custom && p.unique_domain_enabled && p.unique_domain
      && !p.unique_domain->empty() && !suffix.empty())
    out.unique_host = ascii_lower(*p.unique_domain) + suffix;
  out.root_directory = d.root_directory;
  out.primary_domain = p.primary_domain;
  return out;
}

virtual_domain make_domain(const settings_row& s, const rows& found,
                           const std::vector<const project_row*>& projects,
                           std::int64_t root_namespace_id,
                           const domain_context& ctx) {
  namespace_tree tree{found.namespaces};
  auto suffix = pages_suffix(s);
  virtual_domain out;
  out.found = true;
  out.root_namespace_id = root_namespace_id;
  if (ctx.custom) {
    out.certificate = ctx.custom->certificate;
    out.key = ctx.custom->key;
  }
  std::vector<std::pair<std::int64_t, lookup_path>> paths;
  for (const auto* p : projects)
    for (const auto* d : served(*p))
      paths.emplace_back(d->id, path_of(s, tree, *p, *d, ctx, suffix));
  std::sort(paths.begin(), paths.end(), [](const auto& a, const auto& b) {
    const auto& x = a.second;
    const auto& y = b.second;
    if (x.prefix.size() != y.prefix.size())
      return x.prefix.size() > y.prefix.size();
    if (x.prefix != y.prefix)
      return x.prefix > y.prefix;
    return std::tie(x.project_id, a.first) < std::tie(y.project_id, b.first);
  });
  for (auto& [id, path] : paths)
    out.lookup_paths.push_back(std::move(path));
  return out;
}

std::int64_t root_of(const rows& found, std::int64_t namespace_id) {
  return namespace_tree{found.namespaces}.root_of(namespace_id);
}

} // namespace

std::optional<rows_query> keys_for(const std::string& host,
                                   const settings_row& settings) {
  if (host.empty() || host.size() > max_host_length)
    return std::nullopt;
  rows_query q;
  auto suffix = pages_suffix(settings);
  if (!suffix.empty() && ends_with(host, suffix)) {
    auto name = host.substr(0, host.size() - suffix.size());
    if (name.empty())
      return std::nullopt;
    q.unique_domain = name;
    q.top_level_path = name;
  } else {
    q.custom_domain = host;
  }
  return q;
}

virtual_domain resolve(const std::string& host, const settings_row& settings,
                       const rows& found) {
  auto keys = keys_for(host, settings);
  if (!keys)
    return {};
  if (keys->custom_domain) {
    // A custom domain: enabled, and its project has something deployed.
    if (!found.domain || !found.domain->enabled
        || ascii_lower(found.domain->domain) != host)
      return {};
    for (const auto& p : found.domain_projects)
      if (p.id == found.domain->project_id && deployed(p))
        return make_domain(settings, found, {&p},
                           root_of(found, p.namespace_id),
                           {std::nullopt, &*found.domain});
    return {};
  }
  const auto& name = *keys->unique_domain;
  // A unique domain wins over a namespace of the same name.
  for (const auto& p : found.unique_projects)
    if (p.unique_domain_enabled && p.unique_domain
        && ascii_lower(*p.unique_domain) == name && deployed(p))
      return make_domain(settings, found, {&p}, root_of(found, p.namespace_id),
                         {});
  // A top-level namespace: every project below it with something deployed,
  // sub-groups included; found even when there is none (lookup_paths []).
  const auto& top = found.top_level;
  if (!top || top->parent_id || ascii_lower(top->path) != name)
    return {};
  std::vector<const project_row*> projects;
  for (const auto& p : found.namespace_projects)
    if (deployed(p))
      projects.push_back(&p);
  return make_domain(settings, found, projects, top->id,
                     {top->full_path, nullptr});
}

} // namespace gatehouse::pages
