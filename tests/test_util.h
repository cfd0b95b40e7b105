// Shared helpers for the Catch2 tests.
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "ciuic/device.h"

// CUDA tests start with this: without a usable GPU they pass trivially and say why.
#define CIUIC_REQUIRE_GPU()                                                  \
  do {                                                                       \
    if (!::ciuic::cuda_available()) {                                        \
      WARN("skipped: no usable CUDA GPU (build has CUDA: "                   \
           << (::ciuic::built_with_cuda() ? "yes" : "no") << ")");            \
      return;                                                                \
    }                                                                        \
  } while (0)

// Asserts that expr throws exactly ExType and that the message contains each fragment.
#define CHECK_THROWS_WITH_ALL(expr, ExType, ...)                             \
  do {                                                                       \
    bool thrown_ = false;                                                    \
    try {                                                                    \
      (void)(expr);                                                          \
    } catch (const ExType& e_) {                                             \
      thrown_ = true;                                                        \
      std::string msg_ = e_.what();                                          \
      for (const char* frag_ : {__VA_ARGS__}) {                              \
        INFO("message: " << msg_);                                           \
        CHECK(msg_.find(frag_) != std::string::npos);                        \
      }                                                                      \
    }                                                                        \
    CHECK(thrown_);                                                          \
  } while (0)
