// A C ABI over libtorch's own c10d, for loam's `dist` module (trainer/src/dist/c10d.rs):
// TCPStore (rendezvous and the fault protocol's keys), ProcessGroupGloo (CPU tensors; when
// Gloo's headers were found) and ProcessGroupNCCL (GPU tensors; when CUDA's headers were). Nothing here is ours but the
// glue: every collective is PyTorch's, so loam speaks to the same launchers and fabrics.
//
// Conventions: a function that can fail returns a malloc'd error message (free it with
// loam_c10d_free_string) or nullptr on success; C++ exceptions never cross into Rust.
// Tensors are tch's `C_tensor` pointers, which are `at::Tensor*`.

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef LOAM_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef LOAM_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

struct loam_store {
  c10::intrusive_ptr<c10d::Store> store;
};
struct loam_pg {
  c10::intrusive_ptr<c10d::Backend> backend;
};
struct loam_work {
  c10::intrusive_ptr<c10d::Work> work;
};

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// Runs `f`, turning any exception into an error string. c10::Error's what() carries a C++
// backtrace after its message; the first line is what a user needs.
template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_string(e.what());
  } catch (...) {
    return copy_string("unknown C++ exception in c10d");
  }
}

at::Tensor& tensor(void* t) {
  return *static_cast<at::Tensor*>(t);
}

} // namespace

extern "C" {

void loam_c10d_free_string(char* s) {
  std::free(s);
}

bool loam_c10d_has_gloo() {
#ifdef LOAM_WITH_GLOO
  return true;
#else
  return false;
#endif
}

bool loam_c10d_has_nccl() {
#ifdef LOAM_WITH_NCCL
  return true;
#else
  return false;
#endif
}

// ── TCPStore ──────────────────────────────────────────────────────────────────────────────

// Connects to (or, with is_server, hosts) the TCPStore at host:port. `world` > 0 makes the
// server wait until that many clients have joined (torchrun's agent store: is_server false,
// world 0). A non-empty `prefix` wraps it in a PrefixStore, as torch.distributed does for
// each torchrun restart attempt.
char* loam_store_connect(
    const char* host,
    uint16_t port,
    bool is_server,
    int64_t world,
    int64_t timeout_ms,
    const char* prefix,
    loam_store** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    if (world > 0) {
      opts.numWorkers = static_cast<std::size_t>(world);
    }
    opts.waitWorkers = world > 0;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = new loam_store{store};
  });
}

// A second client connection to the same store (for a thread of its own).
char* loam_store_clone(loam_store* s, loam_store** out) {
  return guarded([&] { *out = new loam_store{s->store->clone()}; });
}

void loam_store_free(loam_store* s) {
  delete s;
}

char* loam_store_set(loam_store* s, const char* key, const uint8_t* data, size_t len) {
  return guarded([&] { s->store->set(key, std::vector<uint8_t>(data, data + len)); });
}

// Blocks until `key` exists (up to the store's timeout). The value is malloc'd: free it with
// loam_c10d_free_string.
char* loam_store_get(loam_store* s, const char* key, uint8_t** data, size_t* len) {
  return guarded([&] {
    std::vector<uint8_t> v = s->store->get(key);
    *len = v.size();
    *data = static_cast<uint8_t*>(std::malloc(v.size() + 1));
    if (!v.empty()) {
      std::memcpy(*data, v.data(), v.size());
    }
  });
}

char* loam_store_add(loam_store* s, const char* key, int64_t delta, int64_t* out) {
  return guarded([&] { *out = s->store->add(key, delta); });
}

char* loam_store_check(loam_store* s, const char* key, bool* exists) {
  return guarded([&] { *exists = s->store->check({std::string(key)}); });
}

// ── process groups ────────────────────────────────────────────────────────────────────────

// Gloo over TCP, bound to the address `hostname` resolves to (the one the peers reach this
// rank at; empty: this machine's hostname, else loopback, as torch.distributed does). Collectives that wait longer than `timeout_ms` fail instead of hanging.
char* loam_pg_gloo(
    loam_store* s,
    int rank,
    int size,
    int64_t timeout_ms,
    const char* hostname,
    loam_pg** out) {
#ifdef LOAM_WITH_GLOO
  return guarded([&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    opts->devices.push_back(
        hostname[0] == '\0' ? c10d::ProcessGroupGloo::createDefaultDevice()
                             : c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    // One thread runs one collective at a time: loam issues them in order.
    opts->threads = 1;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, opts);
    *out = new loam_pg{pg};
  });
#else
  (void)s;
  (void)rank;
  (void)size;
  (void)timeout_ms;
  (void)hostname;
  (void)out;
  return copy_string(
      "this loam was built without Gloo (its headers were not found at build time); "
      "run scripts/setup_dist.sh and rebuild");
#endif
}

// NCCL on CUDA device `device` (LOCAL_RANK's GPU), made the current device first.
char* loam_pg_nccl(
    loam_store* s,
    int rank,
    int size,
    int64_t timeout_ms,
    int device,
    loam_pg** out) {
#ifdef LOAM_WITH_NCCL
  return guarded([&] {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, size, opts);
    *out = new loam_pg{pg};
  });
#else
  (void)s;
  (void)rank;
  (void)size;
  (void)timeout_ms;
  (void)device;
  (void)out;
  return copy_string(
      "this loam was built without NCCL (CUDA's headers were not found at build time); "
      "rebuild after scripts/setup.sh, or train on the CPU (Gloo)");
#endif
}

void loam_pg_free(loam_pg* pg) {
  delete pg;
}

// Sum of `t` over all ranks, in place, started asynchronously: wait on `*out`.
char* loam_pg_allreduce_sum(loam_pg* pg, void* t, loam_work** out) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{tensor(t)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    *out = new loam_work{pg->backend->allreduce(tensors, opts)};
  });
}

// `t` of rank `root` into `t` of every rank.
char* loam_pg_broadcast(loam_pg* pg, void* t, int root, loam_work** out) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{tensor(t)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    *out = new loam_work{pg->backend->broadcast(tensors, opts)};
  });
}

// Rank `root`'s `inputs[r]` into `output` of rank r (all the same shape). Only the root
// passes inputs (n = world size); the others pass n = 0.
char* loam_pg_scatter(
    loam_pg* pg,
    void* output,
    void* const* inputs,
    size_t n,
    int root,
    loam_work** out) {
  return guarded([&] {
    std::vector<at::Tensor> outputs{tensor(output)};
    std::vector<std::vector<at::Tensor>> in;
    if (n > 0) {
      in.emplace_back();
      for (size_t i = 0; i < n; i++) {
        in[0].push_back(tensor(inputs[i]));
      }
    }
    c10d::ScatterOptions opts;
    opts.rootRank = root;
    *out = new loam_work{pg->backend->scatter(outputs, in, opts)};
  });
}

// Blocks until the collective is done (on a GPU: until it is ordered before later work on
// the current stream). A failed or timed-out collective is an error.
char* loam_work_wait(loam_work* w) {
  return guarded([&] { w->work->wait(); });
}

void loam_work_free(loam_work* w) {
  delete w;
}

} // extern "C"
