// TensorFlow glue shared by the MnmLocalForward and MnmLocalBackward kernels: reading the
// sizes and weights from an op's inputs, checking their shapes, and running blocks of the
// batch on the op's CPU thread pool.
#ifndef MNM_KERAS_KERNELS_MNM_LOCAL_TF_H_
#define MNM_KERAS_KERNELS_MNM_LOCAL_TF_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mnm_local_common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/lib/core/errors.h"
#include "tensorflow/core/util/work_sharder.h"

namespace mnm_keras {

// The inputs both ops share, in this order: projected [S, B, 4 d_h], keeps [S, B], h [B, d_h],
// c [B, d_h], read [B, d_v], meta [B, 2], memory L x [B, D_{l+1}, D_l], read_kernel
// [d_v, 4 d_h], recurrent_kernel [d_h, 4 d_h], controller_bias [4 d_h], interface_kernel
// [d_h, I], interface_bias [I], rate_kernel [d_k, R], rate_bias [R] (R = L rates for MNM-p,
// 1 for MNM-g), feedback_kernels F x [d_v, D_{l+1}], feedback_biases F x [D_{l+1}]
// (F = 0 for MNM-g). The attribute gradient_write chooses MNM-g's write over MNM-p's.
#define MNM_LOCAL_INPUTS                 \
  Input("projected: T")                  \
      .Input("keeps: T")                 \
      .Input("h: T")                     \
      .Input("c: T")                     \
      .Input("read: T")                  \
      .Input("meta: T")                  \
      .Input("memory: L * T")            \
      .Input("read_kernel: T")           \
      .Input("recurrent_kernel: T")      \
      .Input("controller_bias: T")       \
      .Input("interface_kernel: T")      \
      .Input("interface_bias: T")        \
      .Input("rate_kernel: T")           \
      .Input("rate_bias: T")             \
      .Input("feedback_kernels: F * T")  \
      .Input("feedback_biases: F * T")

#define MNM_LOCAL_ATTRS          \
  Attr("T: {float, double}")     \
      .Attr("L: int >= 1")       \
      .Attr("F: int >= 0")       \
      .Attr("num_heads: int >= 1") \
      .Attr("normalize: bool")   \
      .Attr("compute_meta: bool") \
      .Attr("gradient_write: bool = false")

inline ::tensorflow::Status ExpectShape(const ::tensorflow::Tensor& tensor, const char* name,
                                        const std::vector<int64_t>& dims) {
  ::tensorflow::TensorShape expected;
  for (int64_t d : dims) expected.AddDim(d);
  if (tensor.shape() != expected) {
    return ::tensorflow::errors::InvalidArgument("`", name, "` must have shape ",
                                                 expected.DebugString(), "; received ",
                                                 tensor.shape().DebugString(), ".");
  }
  return ::tensorflow::OkStatus();
}

// The attributes both ops share (MNM_LOCAL_ATTRS but the type and the list lengths), read
// once when a kernel is constructed.
struct LocalAttrs {
  int64_t heads = 1;
  bool gradient = false;
  bool normalize = true;
  bool compute_meta = true;
};

inline ::tensorflow::Status ReadLocalAttrs(::tensorflow::OpKernelConstruction* ctx,
                                           LocalAttrs* attrs) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("num_heads", &attrs->heads));
  TF_RETURN_IF_ERROR(ctx->GetAttr("normalize", &attrs->normalize));
  TF_RETURN_IF_ERROR(ctx->GetAttr("gradient_write", &attrs->gradient));
  return ctx->GetAttr("compute_meta", &attrs->compute_meta);
}

// Allocates the output `name` with the shape of `shape` and points *data at it.
template <typename T>
::tensorflow::Status AllocateOutput(::tensorflow::OpKernelContext* ctx, const char* name,
                                    const ::tensorflow::TensorShape& shape, T** data) {
  ::tensorflow::Tensor* tensor = nullptr;
  TF_RETURN_IF_ERROR(ctx->allocate_output(name, shape, &tensor));
  *data = tensor->flat<T>().data();
  return ::tensorflow::OkStatus();
}

// Allocates output list `name`'s tensor `index` with the shape of `shape`; appends its data.
template <typename T>
::tensorflow::Status AllocateListOutput(::tensorflow::OpKernelContext* ctx, const char* name,
                                        int index, const ::tensorflow::TensorShape& shape,
                                        std::vector<T*>* data) {
  ::tensorflow::OpOutputList list;
  TF_RETURN_IF_ERROR(ctx->output_list(name, &list));
  ::tensorflow::Tensor* tensor = nullptr;
  TF_RETURN_IF_ERROR(list.allocate(index, shape, &tensor));
  data->push_back(tensor->flat<T>().data());
  return ::tensorflow::OkStatus();
}

// Reads LocalSizes and LocalParams from the shared inputs and checks every shape.
template <typename T>
::tensorflow::Status ReadLocalInputs(::tensorflow::OpKernelContext* ctx, const LocalAttrs& attrs,
                                     LocalSizes* s, LocalParams<T>* p) {
  using ::tensorflow::errors::InvalidArgument;
  const ::tensorflow::Tensor* projected;
  const ::tensorflow::Tensor* h;
  const ::tensorflow::Tensor* read;
  TF_RETURN_IF_ERROR(ctx->input("projected", &projected));
  TF_RETURN_IF_ERROR(ctx->input("h", &h));
  TF_RETURN_IF_ERROR(ctx->input("read", &read));
  if (projected->dims() != 3 || h->dims() != 2 || read->dims() != 2) {
    return InvalidArgument("`projected` must be [S, B, 4 d_h], `h` [B, d_h] and `read` ",
                           "[B, d_v]; received ", projected->shape().DebugString(), ", ",
                           h->shape().DebugString(), ", ", read->shape().DebugString(), ".");
  }
  ::tensorflow::OpInputList memory, feedback_kernels, feedback_biases;
  TF_RETURN_IF_ERROR(ctx->input_list("memory", &memory));
  TF_RETURN_IF_ERROR(ctx->input_list("feedback_kernels", &feedback_kernels));
  TF_RETURN_IF_ERROR(ctx->input_list("feedback_biases", &feedback_biases));
  s->steps = projected->dim_size(0);
  s->batch = projected->dim_size(1);
  s->units = h->dim_size(1);
  s->heads = attrs.heads;
  s->layers = memory.size();
  s->feedback = feedback_kernels.size();
  s->gradient = attrs.gradient;
  s->normalize = attrs.normalize;
  s->compute_meta = attrs.compute_meta;
  if (s->gradient && s->feedback != 0) {
    return InvalidArgument("F (", s->feedback, " feedback functions) must be 0 with ",
                           "gradient_write (MNM-g has no feedback functions).");
  }
  if (!s->gradient && s->feedback != s->layers && s->feedback != s->layers - 1) {
    return InvalidArgument("F (", s->feedback, " feedback functions) must be L (", s->layers,
                           ") or L - 1.");
  }
  s->dims.clear();
  for (int64_t l = 0; l < s->layers; ++l) {
    if (memory[l].dims() != 3) {
      return InvalidArgument("`memory[", l, "]` must be [B, D_{l+1}, D_l]; received ",
                             memory[l].shape().DebugString(), ".");
    }
    if (l == 0) s->dims.push_back(memory[l].dim_size(2));
    s->dims.push_back(memory[l].dim_size(1));
  }
  if (s->steps < 1) return InvalidArgument("`projected` must have at least one step.");
  TF_RETURN_IF_ERROR(ExpectShape(*projected, "projected", {s->steps, s->batch, s->gates()}));
  const std::vector<std::pair<const char*, std::vector<int64_t>>> shared = {
      {"keeps", {s->steps, s->batch}},
      {"h", {s->batch, s->units}},
      {"c", {s->batch, s->units}},
      {"read", {s->batch, s->value()}},
      {"meta", {s->batch, 2}},
      {"read_kernel", {s->value(), s->gates()}},
      {"recurrent_kernel", {s->units, s->gates()}},
      {"controller_bias", {s->gates()}},
      {"interface_kernel", {s->units, s->interface()}},
      {"interface_bias", {s->interface()}},
      {"rate_kernel", {s->key(), s->rates()}},
      {"rate_bias", {s->rates()}},
  };
  std::vector<const T*> pointers;
  for (const auto& [name, dims] : shared) {
    const ::tensorflow::Tensor* tensor;
    TF_RETURN_IF_ERROR(ctx->input(name, &tensor));
    TF_RETURN_IF_ERROR(ExpectShape(*tensor, name, dims));
    pointers.push_back(tensor->flat<T>().data());
  }
  for (int64_t l = 0; l < s->layers; ++l) {
    TF_RETURN_IF_ERROR(
        ExpectShape(memory[l], "memory", {s->batch, s->dims[l + 1], s->dims[l]}));
  }
  p->read_kernel = pointers[5];
  p->recurrent_kernel = pointers[6];
  p->controller_bias = pointers[7];
  p->interface_kernel = pointers[8];
  p->interface_bias = pointers[9];
  p->rate_kernel = pointers[10];
  p->rate_bias = pointers[11];
  p->feedback_kernels.clear();
  p->feedback_biases.clear();
  for (int64_t l = 0; l < s->feedback; ++l) {
    TF_RETURN_IF_ERROR(
        ExpectShape(feedback_kernels[l], "feedback_kernels", {s->value(), s->dims[l + 1]}));
    TF_RETURN_IF_ERROR(ExpectShape(feedback_biases[l], "feedback_biases", {s->dims[l + 1]}));
    p->feedback_kernels.push_back(feedback_kernels[l].flat<T>().data());
    p->feedback_biases.push_back(feedback_biases[l].flat<T>().data());
  }
  return ::tensorflow::OkStatus();
}

// Runs block(first, count) for the blocks of kBlock sequences of the batch on the op's CPU
// thread pool. Each block is independent; `cost` is the work of one block (arithmetic
// operations), which decides how many threads share the batch.
inline void ForEachBlock(::tensorflow::OpKernelContext* ctx, int64_t batch, int64_t cost,
                         const std::function<void(int64_t, int64_t)>& block) {
  const int64_t blocks = (batch + kBlock - 1) / kBlock;
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(workers->num_threads, workers->workers, blocks, cost,
                      [&](int64_t start, int64_t limit) {
                        for (int64_t index = start; index < limit; ++index) {
                          const int64_t first = index * kBlock;
                          block(first, std::min(kBlock, batch - first));
                        }
                      });
}

// The arithmetic of one step of one sequence (multiply-adds), for ForEachBlock's cost.
inline int64_t StepCost(const LocalSizes& s) {
  int64_t cost = (s.value() + s.units) * s.gates() + s.units * s.interface();
  cost += (s.gradient ? 5 : 4) * s.heads * s.memory_size();
  for (int64_t l = 0; l < s.feedback; ++l) cost += s.heads * s.value() * s.dims[l + 1];
  return cost;
}

}  // namespace mnm_keras

#endif  // MNM_KERAS_KERNELS_MNM_LOCAL_TF_H_
