// Helpers shared by the callbacks that watch a monitored quantity
// (keras/src/callbacks/monitor_callback.py): which way it should go, and the keys on offer.
#pragma once

#include <string>

#include "attn/callbacks.hpp"

namespace attn::callbacks {

// The log keys joined by commas, as Keras lists the "available metrics" when one is missing.
std::string joined_keys(const Logs& logs);

// True when larger is better. An unknown mode warns and falls back to "auto", as Keras does;
// "auto" reads loss-like names as min and accuracy-like (acc, auc) as max, and throws
// std::invalid_argument naming `who` for anything else.
bool monitor_maximizes(const std::string& monitor, const std::string& mode, const char* who);

}  // namespace attn::callbacks
