// Everything a user of the attn library needs, in one include.
#pragma once

#include "attn/callbacks.hpp"
#include "attn/data.hpp"
#include "attn/layer.hpp"
#include "attn/layers/activation.hpp"
#include "attn/layers/attention.hpp"
#include "attn/layers/dense.hpp"
#include "attn/layers/dropout.hpp"
#include "attn/layers/input.hpp"
#include "attn/layers/multi_head_attention.hpp"
#include "attn/layers/reshaping.hpp"
#include "attn/losses.hpp"
#include "attn/metrics.hpp"
#include "attn/model.hpp"
#include "attn/optimizers.hpp"
#include "attn/random.hpp"
#include "attn/tensor.hpp"
