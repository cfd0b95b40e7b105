// Neural-network building blocks: Module (nn/module.h), the standard layers
// (nn/layers.h), containers (nn/containers.h: ModuleList, ModuleDict) and
// initialisers (nn/init.h).
#pragma once

#include "ciuic/nn/containers.h"
#include "ciuic/nn/init.h"
#include "ciuic/nn/layers.h"
#include "ciuic/nn/module.h"
#include "ciuic/nn/ordered_dict.h"
