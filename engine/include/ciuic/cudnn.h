// cuDNN settings for the CUDA paths of conv2d, avg_pool2d, adaptive_avg_pool2d
// (even bins) and batch_norm (engine/src/ops/*_cudnn.cpp), in the spirit of
// torch.backends.cudnn. Process-wide; safe to call from any thread. In a build
// without cuDNN, available() is false, the setters only store their value, and
// those ops raise NotImplementedError naming cuDNN for CUDA tensors.
#pragma once

#include <cstddef>

namespace ciuic::cudnn {

// True when this build links cuDNN (CIUIC_WITH_CUDNN).
bool available();
// cudnnGetVersion() of the loaded library (e.g. 91400 for 9.14.0); 0 without cuDNN.
long version();

// Algorithm choice for each convolution shape (cached per device, dtype, shapes and
// options; the first call of a shape chooses):
//   benchmark false (default): cuDNN's heuristics rank the algorithms, no timing;
//   benchmark true: cudnnFind*AlgorithmEx times them once on the real buffers.
void set_benchmark(bool on);
bool benchmark();
// deterministic true (default): only algorithms cuDNN marks deterministic (bit-identical
// gradients run to run); false allows the atomics-based backward algorithms.
void set_deterministic(bool on);
bool deterministic();
// allow_tf32 false (default): f32 convolutions use FMA math only (as the f32 matmul
// does); true lets cuDNN use TF32 Tensor Cores for f32 (10-bit mantissa products).
void set_allow_tf32(bool on);
bool allow_tf32();
// Largest workspace an algorithm may ask for (default 1 GiB); it comes from the
// caching allocator on the current stream.
void set_workspace_limit(std::size_t bytes);
std::size_t workspace_limit();

// Number of cached algorithm choices on all devices, and dropping them (also
// needed after changing the settings above for shapes already seen).
std::size_t cached_algorithms();
void clear_algorithm_cache();

}  // namespace ciuic::cudnn
