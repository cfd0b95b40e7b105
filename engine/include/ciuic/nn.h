// Neural-network building blocks: Module (nn/module.h), the standard layers
// (nn/layers.h) and initialisers (nn/init.h).
#pragma once

#include "ciuic/nn/init.h"
#include "ciuic/nn/layers.h"
#include "ciuic/nn/module.h"
#include "ciuic/nn/ordered_dict.h"
