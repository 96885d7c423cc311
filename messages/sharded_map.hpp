#pragma once

// A hash map split into shards that copies share: copying the map copies
// one pointer per shard, and a write clones only the shard it lands in.
// The read model at a million keys is replaced after every change; with
// plain maps each change would cost a second copy of the whole model.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace gatehouse {

/// Hash of an (id, id) pair, for membership maps.
struct id_pair_hash {
  std::size_t operator()(const std::pair<std::int64_t, std::int64_t>& p) const
    noexcept {
    auto a = static_cast<std::uint64_t>(p.first);
    auto b = static_cast<std::uint64_t>(p.second);
    return static_cast<std::size_t>(a * 0x9E3779B97F4A7C15ull
                                    ^ (b + 0x632BE59BD9B4E019ull + (a << 6)
                                       + (a >> 2)));
  }
};

template <class T>
struct is_id_pair : std::false_type {};

template <class A, class B>
struct is_id_pair<std::pair<A, B>>
  : std::bool_constant<std::is_integral_v<A> && std::is_integral_v<B>> {};

template <class Key, class Value, class Hash = std::hash<Key>>
class sharded_map {
public:
  using shard_type = std::unordered_map<Key, Value, Hash>;
  using value_type = typename shard_type::value_type;

  /// 1,024 shards: at a million entries, one change copies about a
  /// thousand of them.
  static constexpr unsigned shard_bits = 10;
  static constexpr std::size_t shard_count = std::size_t{1} << shard_bits;

  /// Points at one entry or nowhere (end()); entries stay put until the
  /// map that holds them is written or destroyed.
  class const_iterator {
  public:
    const_iterator() = default;
    explicit const_iterator(const value_type* entry) : entry_(entry) {
    }
    const value_type& operator*() const {
      return *entry_;
    }
    const value_type* operator->() const {
      return entry_;
    }
    bool operator==(const const_iterator& other) const {
      return entry_ == other.entry_;
    }
    bool operator!=(const const_iterator& other) const {
      return entry_ != other.entry_;
    }

  private:
    const value_type* entry_ = nullptr;
  };

  sharded_map() = default;

  std::size_t size() const {
    return size_;
  }

  bool empty() const {
    return size_ == 0;
  }

  const_iterator end() const {
    return const_iterator{};
  }

  const_iterator find(const Key& key) const {
    const auto& shard = shards_[shard_of(key)];
    if (!shard)
      return end();
    auto it = shard->find(key);
    return it == shard->end() ? end() : const_iterator{&*it};
  }

  std::size_t count(const Key& key) const {
    return find(key) == end() ? 0 : 1;
  }

  const Value& at(const Key& key) const {
    auto it = find(key);
    if (it == end())
      throw std::out_of_range("sharded_map::at");
    return it->second;
  }

  /// Calls f(key, value) for every entry, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& shard : shards_)
      if (shard)
        for (const auto& [key, value] : *shard)
          f(key, value);
  }

  /// Every entry in one plain map (tests, diagnostics).
  shard_type to_unordered_map() const {
    shard_type out;
    out.reserve(size_);
    for_each([&](const Key& key, const Value& value) { out.emplace(key, value); });
    return out;
  }

  /// Room for n entries spread evenly, before a bulk load.
  void reserve(std::size_t n) {
    for (std::size_t i = 0; i < shard_count; ++i)
      writable(i).reserve(n / shard_count + 1);
  }

  Value& operator[](const Key& key) {
    auto& shard = writable(shard_of(key));
    auto [it, inserted] = shard.try_emplace(key);
    size_ += inserted ? 1 : 0;
    return it->second;
  }

  template <class... Args>
  bool emplace(const Key& key, Args&&... args) {
    auto& shard = writable(shard_of(key));
    auto inserted
      = shard.try_emplace(key, std::forward<Args>(args)...).second;
    size_ += inserted ? 1 : 0;
    return inserted;
  }

  void insert_or_assign(const Key& key, Value value) {
    auto& shard = writable(shard_of(key));
    auto inserted = shard.insert_or_assign(key, std::move(value)).second;
    size_ += inserted ? 1 : 0;
  }

  std::size_t erase(const Key& key) {
    auto i = shard_of(key);
    if (!shards_[i] || shards_[i]->count(key) == 0)
      return 0; // no clone for a key that is not there
    writable(i).erase(key);
    --size_;
    return 1;
  }

  /// Whether two maps share shard i (tests: a write clones one shard).
  bool shares_shard_with(const sharded_map& other, std::size_t i) const {
    return shards_[i] == other.shards_[i];
  }

  std::size_t shard_of(const Key& key) const {
    // A shard's map picks its bucket as hash % prime, and std::hash of an
    // integer is the integer: the shard must come from bits unrelated to
    // that, or a shard's keys pile into a few buckets (a multiplicative
    // hash of the id did: 10x slower inserts). SplitMix64's finalizer
    // mixes every bit into the top ones. Integer ids go by runs of 1,024
    // (pairs by their first id's), so that loading rows in id order stays
    // within one shard's memory for a while.
    std::uint64_t h;
    if constexpr (std::is_integral_v<Key>)
      h = static_cast<std::uint64_t>(key) >> 10;
    else if constexpr (is_id_pair<Key>::value)
      h = static_cast<std::uint64_t>(key.first) >> 10;
    else
      h = static_cast<std::uint64_t>(Hash{}(key));
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    return static_cast<std::size_t>(h >> (64 - shard_bits));
  }

private:
  /// The shard to write; cloned first when another map still shares it.
  /// Only the map's owner writes, so a shard this map alone holds cannot
  /// gain a second holder meanwhile.
  shard_type& writable(std::size_t i) {
    auto& shard = shards_[i];
    if (!shard)
      shard = std::make_shared<shard_type>();
    else if (shard.use_count() > 1)
      shard = std::make_shared<shard_type>(*shard);
    return *shard;
  }

  std::array<std::shared_ptr<shard_type>, shard_count> shards_;
  std::size_t size_ = 0;
};

} // namespace gatehouse
