// Saves a model as .keras and as legacy .h5, reads each file back and expects the same
// predictions, bit for bit: the check every layer's Keras config and weights go through.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "temp_dir.hpp"

namespace attn::testing {

// `change` (optional) is applied to each reloaded model before it predicts.
inline void expect_same_predictions_after_reload(Model& model, const Tensor& x,
                                                 const std::function<void(Model&)>& change = {}) {
  TempDir dir;
  const Tensor want = model.predict(x);
  for (const std::string name : {"model.keras", "model.h5"}) {
    SCOPED_TRACE(name);
    io::save_model(model, dir.file(name));
    Model back = load_model(dir.file(name));
    if (change) change(back);
    const Tensor got = back.predict(x);
    ASSERT_EQ(got.size(), want.size());
    for (int64_t i = 0; i < want.size(); ++i) ASSERT_EQ(got.data()[i], want.data()[i]) << i;
  }
}

// The same for a model of several inputs (one output).
inline void expect_same_predictions_after_reload(Model& model, const std::vector<Tensor>& xs) {
  TempDir dir;
  const Tensor want = model.predict(xs).at(0);
  for (const std::string name : {"model.keras", "model.h5"}) {
    SCOPED_TRACE(name);
    io::save_model(model, dir.file(name));
    Model back = load_model(dir.file(name));
    const Tensor got = back.predict(xs).at(0);
    ASSERT_EQ(got.size(), want.size());
    for (int64_t i = 0; i < want.size(); ++i) ASSERT_EQ(got.data()[i], want.data()[i]) << i;
  }
}

}  // namespace attn::testing
