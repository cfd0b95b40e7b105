// The umbrella header: everything a model definition needs.
#pragma once

#include "ciuic/allocator.h"
#include "ciuic/autograd.h"
#include "ciuic/device.h"
#include "ciuic/dtype.h"
#include "ciuic/error.h"
#include "ciuic/ops.h"
#include "ciuic/random.h"
#include "ciuic/stream.h"
#include "ciuic/tensor.h"
#include "ciuic/gradcheck.h"
#include "ciuic/nn.h"
#include "ciuic/optim.h"
#include "ciuic/io.h"
#include "ciuic/checkpoint.h"
#include "ciuic/amp.h"
#include "ciuic/cudnn.h"
