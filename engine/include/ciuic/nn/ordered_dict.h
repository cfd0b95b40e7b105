// OrderedDict: string keys in insertion order, with lookup by key. Used for a
// module's parameters, buffers and children, and for state dicts.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ciuic/error.h"

namespace ciuic::nn {

template <typename V>
class OrderedDict {
 public:
  using Item = std::pair<std::string, V>;
  using const_iterator = typename std::vector<Item>::const_iterator;
  using iterator = typename std::vector<Item>::iterator;

  OrderedDict() = default;
  OrderedDict(std::initializer_list<Item> items) {
    for (const Item& it : items) insert(it.first, it.second);
  }

  // Appends key -> value; ValueError when the key is already present.
  V& insert(const std::string& key, V value) {
    CIUIC_CHECK(!contains(key), ValueError, "OrderedDict::insert", "key \"", key,
                "\" is already present; expected a new key");
    index_.emplace(key, items_.size());
    items_.emplace_back(key, std::move(value));
    return items_.back().second;
  }
  // Overwrites the value of an existing key in place (keeping its position), or appends.
  V& insert_or_assign(const std::string& key, V value) {
    if (V* v = find(key)) {
      *v = std::move(value);
      return *v;
    }
    return insert(key, std::move(value));
  }

  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  // Null when absent.
  const V* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  V* find(const std::string& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  // IndexError naming the key (and the keys present) when absent.
  const V& at(const std::string& key) const {
    const V* v = find(key);
    if (!v) missing(key);
    return *v;
  }
  V& at(const std::string& key) {
    V* v = find(key);
    if (!v) missing(key);
    return *v;
  }
  // Removes key if present; keeps the order of the rest. O(size).
  bool erase(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(it->second));
    index_.clear();
    for (std::size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].first, i);
    return true;
  }
  void clear() {
    items_.clear();
    index_.clear();
  }

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  // The i-th item in insertion order; IndexError out of range.
  const Item& item(std::size_t i) const {
    CIUIC_CHECK(i < items_.size(), IndexError, "OrderedDict::item", "position ", i, " out of range for ",
                items_.size(), " items; expected a position below ", items_.size());
    return items_[i];
  }
  // By key (IndexError naming the key when absent) or by position (IndexError out of range).
  const V& operator[](const std::string& key) const { return at(key); }
  V& operator[](const std::string& key) { return at(key); }
  const V& operator[](const char* key) const { return at(std::string(key)); }
  V& operator[](const char* key) { return at(std::string(key)); }
  template <typename I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  const V& operator[](I i) const {
    return item(checked_position(i)).second;
  }
  template <typename I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  V& operator[](I i) {
    const std::size_t p = checked_position(i);
    (void)item(p);
    return items_[p].second;
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    k.reserve(items_.size());
    for (const Item& it : items_) k.push_back(it.first);
    return k;
  }
  std::vector<V> values() const {
    std::vector<V> v;
    v.reserve(items_.size());
    for (const Item& it : items_) v.push_back(it.second);
    return v;
  }
  // On a temporary (model.named_parameters().items()) this returns the items by
  // value, so a range-for over it never dangles.
  const std::vector<Item>& items() const& { return items_; }
  std::vector<Item> items() && { return std::move(items_); }

  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  // Mutable iteration gives access to values; do not change the keys through it.
  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }

 private:
  template <typename I>
  std::size_t checked_position(I i) const {
    if constexpr (std::is_signed_v<I>)
      CIUIC_CHECK(i >= 0, IndexError, "OrderedDict::item", "position ", i, " is negative; expected 0 <= position < ",
                  items_.size());
    return static_cast<std::size_t>(i);
  }
  [[noreturn]] void missing(const std::string& key) const {
    std::string present;
    std::size_t shown = 0;
    for (const Item& it : items_) {
      if (shown == 20) {
        present += ", ...";
        break;
      }
      present += (shown++ ? ", " : "") + it.first;
    }
    detail::fail<IndexError>("OrderedDict::at", "no key \"", key, "\"; expected one of [", present, "]");
  }

  std::vector<Item> items_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace ciuic::nn
