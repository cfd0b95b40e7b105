// Bucket assignment: which parameters share a flat buffer and one allreduce.
#include <algorithm>
#include <map>
#include <tuple>

#include "ciuic/comm/reducer.h"

namespace ciuic::comm {

std::vector<std::vector<int>> assign_buckets(const std::vector<BucketParam>& params, const std::vector<int>& order,
                                             std::size_t first_cap, std::size_t cap) {
  CIUIC_CHECK(first_cap > 0 && cap > 0, ValueError, "assign_buckets", "bucket caps ", first_cap, " and ", cap,
              " bytes; expected > 0");
  using Key = std::tuple<int, int, int>;  // dtype, device type, device index
  struct Open {
    std::vector<int> params;
    std::size_t bytes = 0;
    bool first_closed = false;  // this group has closed its first bucket
  };
  std::map<Key, Open> open;
  std::vector<std::vector<int>> out;
  for (int i : order) {
    CIUIC_CHECK(i >= 0 && static_cast<std::size_t>(i) < params.size(), IndexError, "assign_buckets", "index ", i,
                " in the order; expected 0..", params.size() - 1);
    const BucketParam& p = params[static_cast<std::size_t>(i)];
    Key k{static_cast<int>(p.dtype), static_cast<int>(p.device.type), p.device.index};
    Open& b = open[k];
    b.params.push_back(i);
    b.bytes += p.bytes;
    if (b.bytes >= (b.first_closed ? cap : first_cap)) {
      out.push_back(std::move(b.params));
      b.params.clear();
      b.bytes = 0;
      b.first_closed = true;
    }
  }
  for (auto& [k, b] : open)
    if (!b.params.empty()) out.push_back(std::move(b.params));
  // Launch order: by the position of each bucket's first parameter in `order`.
  std::vector<std::size_t> pos(params.size(), 0);
  for (std::size_t j = 0; j < order.size(); ++j) pos[static_cast<std::size_t>(order[j])] = j;
  std::stable_sort(out.begin(), out.end(), [&](const std::vector<int>& a, const std::vector<int>& b) {
    return pos[static_cast<std::size_t>(a.front())] < pos[static_cast<std::size_t>(b.front())];
  });
  return out;
}

}  // namespace ciuic::comm
