// Which way a monitored quantity should go, shared by the callbacks that watch one
// (keras/src/callbacks/monitor_callback.py): "min", "max", or "auto" from the name.
#pragma once

#include <string>

namespace attn::callbacks {

// True when larger is better. An unknown mode warns and falls back to "auto", as Keras does;
// "auto" reads loss-like names as min and accuracy-like (acc, auc) as max, and throws
// std::invalid_argument naming `who` for anything else.
bool monitor_maximizes(const std::string& monitor, const std::string& mode, const char* who);

}  // namespace attn::callbacks
