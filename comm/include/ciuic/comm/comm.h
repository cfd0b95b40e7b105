// comm/: everything for data-parallel training.
#pragma once

#include "ciuic/comm/communicator.h"
#include "ciuic/comm/reducer.h"
#include "ciuic/comm/rendezvous.h"
#include "ciuic/comm/store.h"
