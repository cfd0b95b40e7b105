// Strict command-line parsing for the demo and the benchmark programs. Every value is
// checked whole ("12abc", "", "1e99" and out-of-range numbers are refused, never a
// std::stoi exception or a silent atoi 0); a bad command line prints why and the usage
// to stderr, and the program exits with status 2. "--help" prints the usage, status 0.
//
//   int main(int argc, char** argv) {
//     cli::Parser p("demo", "[--steps N] [--out PATH]", argc, argv);
//     int steps = 100;
//     std::string out;
//     while (p.next()) {
//       if (p.is("--steps")) steps = p.integer<int>(1, 1000000);
//       else if (p.is("--out")) out = p.text();
//       else return p.unknown();
//     }
//     if (p.stop()) return p.exit_code();
//     ...
//   }
#pragma once

#include <charconv>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>

namespace ciuic::cli {

class Parser {
 public:
  Parser(const char* prog, const char* usage, int argc, char** argv)
      : prog_(prog), usage_(usage), argc_(argc), argv_(argv) {}

  // Advances to the next flag; false at the end or once an error was reported.
  bool next() {
    if (failed_ || ++i_ >= argc_) return false;
    flag_ = argv_[i_];
    if (flag_ == "--help" || flag_ == "-h") {
      std::printf("usage: %s %s\n", prog_, usage_);
      failed_ = true;
      code_ = 0;
      return false;
    }
    return true;
  }
  bool is(std::string_view name) const { return flag_ == name; }

  // The flag's value as text; an error when it is missing.
  std::string text() {
    if (i_ + 1 >= argc_) {
      fail(std::string(flag_) + " needs a value");
      return {};
    }
    return argv_[++i_];
  }

  // The flag's value as an integer in [lo, hi]; an error otherwise (lo is returned then).
  template <typename Int>
  Int integer(Int lo, Int hi) {
    const std::string flag(flag_);
    const std::string v = text();
    if (failed_) return lo;
    Int out{};
    const char* end = v.data() + v.size();
    auto [p, ec] = std::from_chars(v.data(), end, out);
    if (v.empty() || ec != std::errc() || p != end || out < lo || out > hi) {
      fail(flag + " '" + v + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      return lo;
    }
    return out;
  }

  // The flag's value as a finite number in [lo, hi]; an error otherwise (lo is returned then).
  double real(double lo, double hi) {
    const std::string flag(flag_);
    const std::string v = text();
    if (failed_) return lo;
    double out = 0;
    const char* end = v.data() + v.size();
    auto [p, ec] = std::from_chars(v.data(), end, out);
    if (v.empty() || ec != std::errc() || p != end || !(out >= lo && out <= hi)) {
      fail(flag + " '" + v + "' is not a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      return lo;
    }
    return out;
  }

  // For the last else of the flag chain: reports the unknown argument, returns 2.
  int unknown() {
    fail("unknown argument '" + std::string(flag_) + "'");
    return exit_code();
  }

  // An error found after parsing (an incompatible combination of flags).
  int error(const std::string& why) {
    fail(why);
    return exit_code();
  }

  // True when main should return exit_code() at once: 2 after a bad argument, 0 after --help.
  bool stop() const { return failed_; }
  int exit_code() const { return code_; }

 private:
  void fail(const std::string& why) {
    if (failed_) return;
    std::fprintf(stderr, "%s: %s\nusage: %s %s\n", prog_, why.c_str(), prog_, usage_);
    failed_ = true;
    code_ = 2;
  }

  const char* prog_;
  const char* usage_;
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string_view flag_;
  bool failed_ = false;
  int code_ = 0;
};

}  // namespace ciuic::cli
