// 4-bit blockwise dequantization on the CPU in one pass (see trainer/src/model/quant/nf4.rs):
//   out[i] = code[q_i] · absmax[i / blocksize]
// computed in f32 and rounded to nearest-even into out's dtype, exactly as bitsandbytes'
// portable kernel (and loam's libtorch-op path for other devices) computes it. Codes are two
// per byte, the first in the high nibble. Parallel over blocks with libtorch's threads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

template <typename T>
void dequantize(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                int64_t n, T* out) {
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  // ~64 Ki values per task: enough work to be worth a thread, small enough to balance.
  const int64_t grain = std::max<int64_t>(1, 65536 / blocksize);
  at::parallel_for(0, blocks, grain, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const float scale = absmax[b];
      const int64_t start = b * blocksize;  // even: blocksize is
      const int64_t end = std::min(start + blocksize, n);
      int64_t i = start;
      for (; i + 1 < end; i += 2) {
        const uint8_t byte = packed[i >> 1];
        out[i] = static_cast<T>(code[byte >> 4] * scale);
        out[i + 1] = static_cast<T>(code[byte & 15] * scale);
      }
      if (i < end) out[i] = static_cast<T>(code[packed[i >> 1] >> 4] * scale);
    }
  });
}

char* message(const std::string& msg) {
  char* out = static_cast<char*>(std::malloc(msg.size() + 1));
  if (out) std::memcpy(out, msg.c_str(), msg.size() + 1);
  return out;
}

}  // namespace

extern "C" {

// `packed` u8 [ceil(n/2)], `absmax` f32 [ceil(n/blocksize)], `code` f32 [16], all contiguous on
// the CPU; `out` contiguous, n values of f32, bf16 or f16. Returns null, or a malloc'd message
// (free it with loam_autograd_free).
char* loam_dequantize_4bit(const at::Tensor* packed, const at::Tensor* absmax,
                           const at::Tensor* code, int64_t blocksize, at::Tensor* out) {
  try {
    const int64_t n = out->numel();
    const int64_t blocks = (n + blocksize - 1) / blocksize;
    TORCH_CHECK(blocksize > 0 && blocksize % 2 == 0, "blocksize ", blocksize);
    TORCH_CHECK(packed->scalar_type() == at::kByte && packed->is_contiguous() &&
                    packed->numel() >= (n + 1) / 2,
                "codes: ", packed->numel(), " bytes for ", n, " values");
    TORCH_CHECK(absmax->scalar_type() == at::kFloat && absmax->is_contiguous() &&
                    absmax->numel() >= blocks,
                "absmax: ", absmax->numel(), " for ", blocks, " blocks");
    TORCH_CHECK(code->scalar_type() == at::kFloat && code->numel() == 16 && code->is_contiguous(),
                "code table");
    TORCH_CHECK(out->is_contiguous() && out->device().is_cpu() && packed->device().is_cpu(),
                "CPU tensors only");
    const uint8_t* p = packed->const_data_ptr<uint8_t>();
    const float* a = absmax->const_data_ptr<float>();
    const float* c = code->const_data_ptr<float>();
    switch (out->scalar_type()) {
      case at::kFloat:
        dequantize(p, a, c, blocksize, n, out->mutable_data_ptr<float>());
        break;
      case at::kBFloat16:
        dequantize(p, a, c, blocksize, n, out->mutable_data_ptr<c10::BFloat16>());
        break;
      case at::kHalf:
        dequantize(p, a, c, blocksize, n, out->mutable_data_ptr<c10::Half>());
        break;
      default:
        TORCH_CHECK(false, "output dtype ", out->scalar_type());
    }
    return nullptr;
  } catch (const std::exception& e) {
    return message(e.what());
  }
}

}  // extern "C"
