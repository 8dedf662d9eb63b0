// A libtorch autograd Function whose backward is a Rust closure (see trainer/src/autograd.rs).
//
// tch has no custom-autograd API; libtorch's C++ does (torch::autograd::Function). Rust
// computes a function's outputs itself, without autograd, and hands them here with its
// inputs and a backward callback: `apply` returns the outputs attached to the graph, and
// when autograd reaches them it calls the callback with the output gradients. The Rust
// state lives in the graph node (a capsule in the context) and is dropped with it.
//
// Tensors cross the boundary as `at::Tensor*`, which is what tch's `C_tensor*` is.

#include <torch/csrc/autograd/custom_function.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Collects what a Rust callback returns: tensors (undefined for "no gradient") or an error.
struct Sink {
  std::vector<at::Tensor> tensors;
  std::string error;
  bool failed = false;
};

// Rust's backward: (state, gradients of the outputs, how many, where to put the gradients
// of the inputs). It pushes one tensor (or null) per input, or fails the sink.
using BackwardFn = void (*)(void* state, const at::Tensor* const* grads, size_t n, Sink* sink);
using DropFn = void (*)(void* state);

// Owns the Rust closure; dropped with the graph node that holds it.
struct RustBackward : torch::CustomClassHolder {
  void* state;
  BackwardFn backward;
  DropFn drop;
  RustBackward(void* s, BackwardFn b, DropFn d) : state(s), backward(b), drop(d) {}
  ~RustBackward() override { drop(state); }
};

struct RustFunction : public torch::autograd::Function<RustFunction> {
  static variable_list forward(
      AutogradContext* ctx,
      c10::intrusive_ptr<RustBackward> rust,
      at::TensorList inputs,
      const std::vector<at::Tensor>* outputs) {
    (void)inputs;
    ctx->saved_data["rust"] = c10::IValue::make_capsule(std::move(rust));
    return *outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto holder = ctx->saved_data["rust"].toCapsule();
    auto* rust = static_cast<RustBackward*>(holder.get());
    std::vector<const at::Tensor*> ptrs;
    ptrs.reserve(grads.size());
    for (const auto& g : grads) ptrs.push_back(&g);
    Sink sink;
    rust->backward(rust->state, ptrs.data(), ptrs.size(), &sink);
    if (sink.failed) throw std::runtime_error(sink.error);
    // One gradient per forward argument: none for the closure, then the inputs, none for
    // the outputs pointer.
    variable_list out;
    out.reserve(sink.tensors.size() + 2);
    out.emplace_back();
    for (auto& t : sink.tensors) out.push_back(std::move(t));
    out.emplace_back();
    return out;
  }
};

char* copy_message(const char* what) {
  std::string msg(what);
  char* out = static_cast<char*>(std::malloc(msg.size() + 1));
  if (out) std::memcpy(out, msg.c_str(), msg.size() + 1);
  return out;
}

}  // namespace

extern "C" {

void loam_sink_push(Sink* sink, const at::Tensor* tensor) {
  sink->tensors.push_back(tensor ? *tensor : at::Tensor());
}

void loam_sink_fail(Sink* sink, const char* msg, size_t len) {
  sink->failed = true;
  sink->error.assign(msg, len);
}

// Attaches `outputs` (computed by Rust from `inputs`) to the graph. On success writes one
// new `at::Tensor*` per output into `attached` (the caller owns them) and returns null;
// otherwise returns a malloc'd message (free it with loam_autograd_free) and drops `state`.
char* loam_autograd_apply(
    const at::Tensor* const* inputs, size_t n_inputs,
    const at::Tensor* const* outputs, size_t n_outputs,
    void* state, BackwardFn backward, DropFn drop,
    at::Tensor** attached) {
  c10::intrusive_ptr<RustBackward> rust;
  try {
    rust = c10::make_intrusive<RustBackward>(state, backward, drop);
  } catch (const std::exception& e) {
    drop(state);
    return copy_message(e.what());
  }
  try {
    std::vector<at::Tensor> in;
    in.reserve(n_inputs);
    for (size_t i = 0; i < n_inputs; ++i) in.push_back(*inputs[i]);
    std::vector<at::Tensor> out;
    out.reserve(n_outputs);
    for (size_t i = 0; i < n_outputs; ++i) out.push_back(*outputs[i]);
    variable_list result = RustFunction::apply(std::move(rust), at::TensorList(in), &out);
    for (size_t i = 0; i < n_outputs; ++i) attached[i] = new at::Tensor(std::move(result[i]));
    return nullptr;
  } catch (const std::exception& e) {
    return copy_message(e.what());
  }
}

void loam_autograd_free(char* msg) { std::free(msg); }

int loam_autograd_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

}  // extern "C"
