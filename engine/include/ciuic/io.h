// Saving and loading named tensors in the safetensors format.
//
// File layout (https://github.com/huggingface/safetensors, "Format"):
//   [8 bytes]  N, the header length, unsigned little-endian
//   [N bytes]  UTF-8 JSON object: name -> {"dtype", "shape", "data_offsets": [begin, end]},
//              plus an optional "__metadata__" object of string -> string;
//              padded with trailing spaces so that 8 + N is a multiple of 8
//   [rest]     the byte buffer: every tensor row-major, contiguous, little-endian, at
//              [begin, end) relative to the start of this buffer
//
// Readers validate everything before touching tensor bytes and never read past the
// file or buffer: any malformed input is an IOError naming the file, the tensor and
// what was expected. As the reference implementation, they refuse a header that does not
// start with '{' (e.g. a UTF-8 byte-order mark) or contains a NUL byte, and JSON nested
// deeper than a header's 3 levels. Only regular files are opened (FIFOs, devices and
// directories are refused without blocking). A header parses in O(n log n) for n tensors. Dtypes map as F32 f32, F16 f16, BF16 bf16, F64 f64, I32 i32,
// I64 i64, U8 u8, BOOL boolean (one byte, 0 or 1).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ciuic/device.h"
#include "ciuic/tensor.h"

namespace ciuic {

// Named tensors in a meaningful order (a module's state_dict(), a file's contents).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

// The name of the reserved metadata entry in a safetensors header.
inline constexpr const char* kSafetensorsMetadataKey = "__metadata__";

// ---- files ----

// Writes tensors (any device, any strides: copied to host, made contiguous) in the given
// order. Names must be unique, valid UTF-8 and not "__metadata__" (ValueError). The file is
// written under a temporary name in the same directory ("<path>.tmp.<pid>.<n>") and renamed
// into place, so a failed save leaves any previous file at `path` untouched (IOError on
// failure). A save that is killed leaves its temporary behind; the next save to `path`
// removes the temporaries of that exact pattern whose process no longer exists (those of
// live processes, this one included, are left alone). Loaders only read the path given.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});

// All tensors of the file, in file order (ascending data_offsets), on `device`.
NamedTensors load_safetensors(const std::string& path, Device device = Device::cpu());

// The "__metadata__" object of the file (empty when it has none); reads only the header.
Metadata load_safetensors_metadata(const std::string& path);

// ---- in memory (same format, same validation) ----

// The bytes save_safetensors would write.
std::string serialize_safetensors(const NamedTensors& tensors, const Metadata& metadata = {});

// Parses bytes produced by serialize_safetensors or read from a file; `source` names them in
// error messages.
NamedTensors deserialize_safetensors(std::string_view bytes, Device device = Device::cpu(),
                                     const std::string& source = "<memory>");
Metadata deserialize_safetensors_metadata(std::string_view bytes, const std::string& source = "<memory>");

// ---- state dicts ----

// save_safetensors under the name used with models.
void save_state_dict(const std::string& path, const NamedTensors& state, const Metadata& metadata = {});

// Names present on only one side after load_state_dict.
struct StateDictMismatch {
  std::vector<std::string> missing;     // in the state, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the state
};

// Copies the file's tensors into the tensors of `state` (by name, under NoGradGuard, converting
// dtype and device as copy_ does), so that the parameters of a module whose state_dict() produced
// `state` take the saved values. Shapes must match (ShapeError). With strict, any missing or
// unexpected name is a ValueError listing them, and nothing is copied; otherwise the matching
// names are copied and the others reported.
StateDictMismatch load_state_dict(const std::string& path, const NamedTensors& state, bool strict = true);

}  // namespace ciuic
