// The ciuic error hierarchy. Every failure the library reports is one of these;
// library code never calls exit() or abort().
//
// Messages follow one shape: "<op>: <what was wrong>; expected <what>" and name
// the shapes, dtypes and devices involved. Build them with CIUIC_CHECK / fail<>.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace ciuic {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

#define CIUIC_ERROR_KIND(Name)                                  \
  class Name : public Error {                                   \
   public:                                                      \
    explicit Name(const std::string& msg) : Error(msg) {}       \
  };

CIUIC_ERROR_KIND(ShapeError)           // shapes that do not fit together
CIUIC_ERROR_KIND(DTypeError)           // unsupported or mismatched dtypes
CIUIC_ERROR_KIND(DeviceError)          // wrong or mixed devices, no GPU
CIUIC_ERROR_KIND(IndexError)           // dims, indices, slices out of range
CIUIC_ERROR_KIND(ValueError)           // bad argument values (negative size, eps <= 0, ...)
CIUIC_ERROR_KIND(OutOfMemory)          // an allocator could not satisfy a request
CIUIC_ERROR_KIND(CudaError)            // a CUDA / cuBLAS / cuDNN / NCCL call failed
CIUIC_ERROR_KIND(IOError)              // files: missing, truncated, corrupted
CIUIC_ERROR_KIND(AutogradError)        // tape misuse: backward twice, modified saved tensor
CIUIC_ERROR_KIND(NotImplementedError)  // a valid request this build cannot serve yet
#undef CIUIC_ERROR_KIND

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// Throws E with "<op>: <message parts...>".
template <typename E, typename... Args>
[[noreturn]] void fail(const char* op, Args&&... args) {
  throw E(concat(op, ": ", std::forward<Args>(args)...));
}
}  // namespace detail

}  // namespace ciuic

// CIUIC_CHECK(cond, ShapeError, "matmul", "inner dims differ: ", a, " vs ", b);
#define CIUIC_CHECK(cond, Kind, op, ...)                                  \
  do {                                                                    \
    if (!(cond)) ::ciuic::detail::fail<::ciuic::Kind>(op, __VA_ARGS__);   \
  } while (0)
