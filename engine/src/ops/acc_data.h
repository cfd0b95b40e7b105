// Internal: contiguous CPU data seen in the accumulation type A = acc_t<T>.
// The NN-op references (norm, losses, attention, ...) do their math on plain
// A arrays, so one instantiation per A serves f32, f16 and bf16 alike:
//   AccIn<T>  reads a tensor as const A* (no copy when T == A and it is contiguous);
//   AccOut<T> gives a zeroed A* to write and stores it into a fresh contiguous tensor.
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../cpu_loop.h"
#include "ciuic/autograd.h"
#include "ciuic/tensor.h"

namespace ciuic::ops {

// Contiguous detached copy (or the tensor itself): no tape node for internal reads.
inline Tensor contiguous_data(const Tensor& t) { return t.detach().contiguous(); }

template <typename T>
class AccIn {
 public:
  using A = acc_t<T>;
  explicit AccIn(const Tensor& t) : keep_(contiguous_data(t)) {
    const T* p = static_cast<const T*>(keep_.data_ptr());
    if constexpr (std::is_same_v<T, A>) {
      ptr_ = p;
    } else {
      buf_.resize(static_cast<std::size_t>(keep_.numel()));
      for (std::size_t i = 0; i < buf_.size(); ++i) buf_[i] = static_cast<A>(p[i]);
      ptr_ = buf_.data();
    }
  }
  const A* data() const { return ptr_; }

 private:
  Tensor keep_;  // holds the storage ptr_ points into
  std::vector<A> buf_;
  const A* ptr_ = nullptr;
};

template <typename T>
class AccOut {
 public:
  using A = acc_t<T>;
  AccOut(const Shape& shape, Device device) : out_(make_tensor(shape, dtype_of<T>::value, device)) {
    if constexpr (std::is_same_v<T, A>) {
      ptr_ = static_cast<A*>(out_.data_ptr());
      std::fill(ptr_, ptr_ + out_.numel(), A(0));
    } else {
      buf_.assign(static_cast<std::size_t>(out_.numel()), A(0));
      ptr_ = buf_.data();
    }
  }
  A* data() { return ptr_; }
  // The tensor holding what was written to data(); call once, after writing.
  Tensor finish() {
    if constexpr (!std::is_same_v<T, A>) {
      T* p = static_cast<T*>(out_.data_ptr());
      for (std::size_t i = 0; i < buf_.size(); ++i) p[i] = convert<T>(buf_[i]);
    }
    return out_;
  }

 private:
  Tensor out_;
  std::vector<A> buf_;
  A* ptr_ = nullptr;
};

// ---- plain-pointer variants for the CNN references (conv, pool, batch_norm) ----

// Row-major values of t as A: t's own memory when it is contiguous and T == A,
// else a converted copy in buf (which must outlive the returned pointer).
template <typename T, typename A = acc_t<T>>
const A* acc_data(const Tensor& t, std::vector<A>& buf) {
  if constexpr (std::is_same_v<T, A>) {
    if (t.is_contiguous()) return detail::typed_ptr<T>(t);
  }
  buf.resize(static_cast<std::size_t>(t.numel()));
  const T* p = detail::typed_ptr<T>(t);
  A* b = buf.data();
  std::int64_t i = 0;
  detail::cpu_for_each<1>(t.shape(), {t.strides()}, [&](const auto& o) { b[i++] = static_cast<A>(p[o[0]]); });
  return buf.data();
}

// Zeroed A storage for the contiguous tensor out: its own memory when T == A, else buf;
// store_acc copies buf into out afterwards (a no-op when T == A).
template <typename T, typename A = acc_t<T>>
A* acc_out(const Tensor& out, std::vector<A>& buf) {
  const auto n = static_cast<std::size_t>(out.numel());
  if constexpr (std::is_same_v<T, A>) {
    std::fill_n(detail::typed_ptr<T>(out), n, A(0));
    return detail::typed_ptr<T>(out);
  } else {
    buf.assign(n, A(0));
    return buf.data();
  }
}

template <typename T, typename A = acc_t<T>>
void store_acc(const Tensor& out, const std::vector<A>& buf) {
  if constexpr (!std::is_same_v<T, A>) {
    T* p = detail::typed_ptr<T>(out);
    for (std::size_t i = 0; i < buf.size(); ++i) p[i] = convert<T>(buf[i]);
  }
}

}  // namespace ciuic::ops
