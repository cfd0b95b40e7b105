// The TCP store's frame format (see store.h): header, then key, then value.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace ciuic::comm::proto {

constexpr std::uint32_t kMagic = 0x564B4943;  // "CIKV" little-endian
constexpr std::size_t kHeaderBytes = 13;       // magic u32, op u8, key u32, value u32
constexpr std::size_t kMaxTokenBytes = 1024;

enum Op : std::uint8_t { HELLO = 1, SET = 2, GET = 3, ADD = 4, CHECK = 5, WAIT = 6, DEL = 7, OK = 100, ERR = 101 };

inline const char* op_name(std::uint8_t op) {
  switch (op) {
    case HELLO: return "HELLO";
    case SET: return "SET";
    case GET: return "GET";
    case ADD: return "ADD";
    case CHECK: return "CHECK";
    case WAIT: return "WAIT";
    case DEL: return "DEL";
    case OK: return "OK";
    case ERR: return "ERR";
    default: return "unknown";
  }
}

struct Header {
  std::uint32_t magic = kMagic;
  std::uint8_t op = 0;
  std::uint32_t key_bytes = 0;
  std::uint32_t value_bytes = 0;
};

inline void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

inline void encode_header(const Header& h, char* out) {
  put_u32(out, h.magic);
  out[4] = static_cast<char>(h.op);
  put_u32(out + 5, h.key_bytes);
  put_u32(out + 9, h.value_bytes);
}
inline Header decode_header(const char* in) {
  Header h;
  h.magic = get_u32(in);
  h.op = static_cast<std::uint8_t>(in[4]);
  h.key_bytes = get_u32(in + 5);
  h.value_bytes = get_u32(in + 9);
  return h;
}

inline std::vector<char> frame(std::uint8_t op, const std::string& key, const char* value, std::size_t value_bytes) {
  std::vector<char> out(kHeaderBytes + key.size() + value_bytes);
  encode_header({kMagic, op, static_cast<std::uint32_t>(key.size()), static_cast<std::uint32_t>(value_bytes)}, out.data());
  std::memcpy(out.data() + kHeaderBytes, key.data(), key.size());
  if (value_bytes) std::memcpy(out.data() + kHeaderBytes + key.size(), value, value_bytes);
  return out;
}

}  // namespace ciuic::comm::proto
