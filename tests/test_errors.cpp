// A catalogue of bad inputs: each throws the right ciuic error with a message that
// names the op, the shapes/dtypes/devices and what was expected.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

TEST_CASE("bad inputs to the tensor core throw clear ciuic errors", "[errors]") {
  Tensor t = zeros({2, 3});
  // 1. bad view shape
  CHECK_THROWS_WITH_ALL(t.view({4, 2}), ShapeError, "view", "f32[2, 3] on cpu", "[4, 2]", "same element count");
  // 2. two -1 in a view
  CHECK_THROWS_WITH_ALL(t.view({-1, -1}), ShapeError, "view", "more than one -1");
  // 3. negative size
  CHECK_THROWS_WITH_ALL(zeros({2, -3}), ShapeError, "negative size", "[2, -3]");
  // 4. slice out of range
  CHECK_THROWS_WITH_ALL(t.slice(1, 1, 5), IndexError, "slice", "[1, 5)", "size 3", "f32[2, 3] on cpu");
  // 5. select out of range
  CHECK_THROWS_WITH_ALL(t.select(0, 2), IndexError, "select", "index 2", "size 2");
  // 6. dim out of range
  CHECK_THROWS_WITH_ALL(t.transpose(0, 2), IndexError, "transpose", "dim 2", "[-2, 1]");
  // 7. item() on many elements
  CHECK_THROWS_WITH_ALL(t.item(), ShapeError, "item", "6 elements", "exactly one");
  // 8. CUDA tensor on a machine without a usable GPU
  if (!cuda_available()) {
    CHECK_THROWS_WITH_ALL(zeros({2}, Device::cuda(0)), DeviceError, "cuda:0");
    CHECK_THROWS_WITH_ALL(t.to(Device::cuda(0)), DeviceError, "to", "cuda:0");
  }
  // 9. expand to an incompatible size
  CHECK_THROWS_WITH_ALL(t.expand({2, 4}), ShapeError, "expand", "[2, 4]", "size 1 or 4");
  // 10. permute with a repeated dim
  CHECK_THROWS_WITH_ALL(t.permute({0, 0}), IndexError, "permute", "repeated");
  // 11. permute with the wrong number of dims
  CHECK_THROWS_WITH_ALL(t.permute({0}), ShapeError, "permute", "expected 2");
  // 12. copy_ from a shape that does not broadcast
  CHECK_THROWS_WITH_ALL(t.copy_(zeros({3, 2})), ShapeError, "copy_", "[3, 2]", "[2, 3]");
  // 13. from_vector with the wrong count
  CHECK_THROWS_WITH_ALL(from_vector<float>({1, 2, 3}, {2, 2}), ShapeError, "from_vector", "3 values", "[2, 2]");
  // 14. data<T>() with the wrong type
  CHECK_THROWS_WITH_ALL(t.data<double>(), DTypeError, "Tensor::data", "f32", "f64");
  // 15. random ints
  CHECK_THROWS_WITH_ALL(rand({2}, DType::i32), DTypeError, "rand", "i32", "floating");
  // 16. arange with step 0
  CHECK_THROWS_WITH_ALL(arange(0.0, 1.0, 0.0), ValueError, "arange", "non-zero step");
  // 17. binary op with mismatched dtypes
  CHECK_THROWS_WITH_ALL(add(t, zeros({2, 3}, DType::f64)), DTypeError, "add", "f32[2, 3]", "f64[2, 3]", "one dtype");
  // 18. binary op with shapes that do not broadcast
  CHECK_THROWS_WITH_ALL(mul(t, zeros({4})), ShapeError, "mul", "[2, 3]", "[4]", "do not broadcast");
  // 19. math on integers
  CHECK_THROWS_WITH_ALL(exp(arange(3)), DTypeError, "exp", "i64", "floating");
  // 20. operations on an undefined tensor
  CHECK_THROWS_WITH_ALL(Tensor().shape(), ValueError, "undefined tensor");
  CHECK_THROWS_WITH_ALL(add(Tensor(), t), ValueError, "add", "undefined");
  // 21. reduction over a bad dim
  CHECK_THROWS_WITH_ALL(sum(t, {5}), IndexError, "sum", "dim 5");
  // 22. narrow with negative length
  CHECK_THROWS_WITH_ALL(t.narrow(0, 0, -1), ValueError, "narrow", "length -1");
  // 23. slice with a non-positive step
  CHECK_THROWS_WITH_ALL(t.slice(0, 0, 2, 0), ValueError, "slice", "step 0");
  // 24. clamp with lo > hi
  CHECK_THROWS_WITH_ALL(clamp(t, 2.0, 1.0), ValueError, "clamp", "lo 2 > hi 1");
  // 25. a non-existent GPU index is a DeviceError, never a crash
  CHECK_THROWS_AS(zeros({1}, Device::cuda(99)), DeviceError);
}

TEST_CASE("errors are all ciuic::Error and leave tensors intact", "[errors]") {
  Tensor t = from_vector<float>({1, 2, 3, 4}, {2, 2});
  try {
    t.copy_(zeros({3}));
  } catch (const Error&) {
  }
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2, 3, 4});  // nothing written
  CHECK(t.version() == 0);
  CHECK_THROWS_AS(t.view({3}), Error);
}
