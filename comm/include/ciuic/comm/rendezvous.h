// Rendezvous: who am I, how many are we, where is the store.
//
// Read from the environment, in this order of precedence:
//   1. RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//      (torchrun and ciuic-launch set these);
//   2. Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE
//      or SLURM_TASKS_PER_NODE; the store runs on the job's first node
//      (the first host of SLURM_JOB_NODELIST / SLURM_NODELIST, e.g. "gpu[03-07,9]" -> "gpu03")
//      on port MASTER_PORT or 20000 + SLURM_JOB_ID % 20000;
//   3. Open MPI (mpirun): OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE;
//      MASTER_ADDR (and MASTER_PORT, default 29500) must be exported (mpirun -x).
// Without any of them: one process (rank 0 of 1, its store on a free loopback port).
// MASTER_ADDR / MASTER_PORT override the Slurm defaults. CIUIC_INIT_METHOD=file:///shared/dir
// uses a FileStore there instead of the TCP store. CIUIC_STORE_TOKEN, when set,
// is required by the TCP store from every client.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "ciuic/comm/store.h"

namespace ciuic::comm {

struct RendezvousInfo {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string store_file;  // non-empty: FileStore directory (CIUIC_INIT_METHOD=file://...)
  std::string token;       // CIUIC_STORE_TOKEN
  std::string source;      // "env", "slurm" or "openmpi"
};

// Looks up one variable; tests pass their own map.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// ValueError naming the variable for missing, malformed or inconsistent values
// (rank outside [0, world size), a port outside 1..65535, ...).
RendezvousInfo rendezvous_from_env(const EnvLookup& env = process_env());

// The first host of a Slurm node list: "a[1-3,7],b" -> "a1", "n[003-004]" -> "n003".
std::string slurm_first_host(const std::string& nodelist);

// Rank 0 serves a TCPStore (listening on master_addr only); every rank returns a
// client. Or a FileStore for file:// rendezvous. `server` receives rank 0's server,
// which must outlive every collective that might still use the store.
StorePtr make_store(const RendezvousInfo& info, Milliseconds timeout, std::shared_ptr<TCPStoreServer>* server);

// This process's store for the rendezvous in its environment, made on first use
// (timeout: the first caller's) and kept until the process exits, so rank 0 serves
// it as long as it runs. Every init_process_group of the process uses it, each
// under its own key prefix.
StorePtr process_store(Milliseconds timeout = std::chrono::seconds(300));

}  // namespace ciuic::comm
