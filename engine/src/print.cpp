// Printing: a header line (dtype, shape, device, grad state) and the values,
// summarised with "..." beyond 6 per dim when the tensor is large.
#include <iomanip>
#include <sstream>

#include "ciuic/autograd.h"

namespace ciuic {

namespace {

constexpr std::int64_t kSummarizeAbove = 1000;  // elements
constexpr std::int64_t kEdgeItems = 3;

void print_values(std::ostream& os, const std::vector<double>& v, const Shape& shape, const Shape& strides,
                  std::size_t dim, std::int64_t base, bool summarize, bool integral, int indent) {
  if (shape.empty()) {
    os << v[base];
    return;
  }
  os << '[';
  const std::int64_t n = shape[dim];
  for (std::int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      os << "...";
      i = n - kEdgeItems - 1;
      os << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
      continue;
    }
    std::int64_t off = base + i * strides[dim];
    if (dim + 1 == shape.size()) {
      if (integral) os << float_to_int<long long>(v[off]);  // i64 beyond 2^53 prints rounded
      else os << std::setprecision(6) << v[off];
    } else {
      print_values(os, v, shape, strides, dim + 1, off, summarize, integral, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(" << describe(*this);
  if (requires_grad()) os << (is_leaf() ? ", requires_grad" : ", grad_fn=" + impl()->autograd->grad_fn->name);
  os << ")\n";
  std::vector<double> v = to_vector<double>();
  print_values(os, v, shape(), contiguous_strides(shape()), 0, 0, numel() > kSummarizeAbove, is_integral(dtype()), 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace ciuic
