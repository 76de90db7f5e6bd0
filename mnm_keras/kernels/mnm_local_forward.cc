// MnmLocalForward: the op, its shape function and its CPU kernel (equations in
// mnm_local_forward.h).
#include "mnm_local_forward.h"

#include <algorithm>

#include "mnm_local_tf.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace mnm_keras {

template <typename T>
void LocalForwardBlock(const LocalSizes& s, const LocalParams<T>& p,
                       const LocalForwardInputs<T>& in, const LocalForwardOutputs<T>& out,
                       int64_t first, int64_t count) {
  const int64_t batch = s.batch, dh = s.units, dv = s.value(), dk = s.key();
  const int64_t heads = s.heads, width = s.interface();
  LocalStepScratch<T> w(s);
  for (int64_t e = 0; e < count; ++e) {
    const int64_t b = first + e;
    out.meta[2 * b] = in.meta[2 * b];
    out.meta[2 * b + 1] = in.meta[2 * b + 1];
    for (int64_t l = 0; l < s.layers; ++l) {
      const int64_t n = s.dims[l + 1] * s.dims[l];
      std::copy(in.memory[l] + b * n, in.memory[l] + (b + 1) * n, out.memory[l] + b * n);
    }
  }
  std::vector<T*> memory(s.layers);  // one sequence's M^l: rows of the final_memory outputs
  for (int64_t t = 0; t < s.steps; ++t) {
    // The state before step t: the initial state, or the outputs of step t - 1.
    const T* h = t == 0 ? in.h + first * dh : out.hs + ((t - 1) * batch + first) * dh;
    const T* c = t == 0 ? in.c + first * dh : out.cs + ((t - 1) * batch + first) * dh;
    const T* read = t == 0 ? in.read + first * dv : out.reads + ((t - 1) * batch + first) * dv;
    ControllerForward(s, p, count, in.projected + (t * batch + first) * s.gates(), s.gates(),
                      h, dh, c, dh, read, dv, &w);
    for (int64_t e = 0; e < count; ++e) {
      const int64_t b = first + e, row = t * batch + b;
      T* h_out = out.hs + row * dh;
      T* c_out = out.cs + row * dh;
      T* read_out = out.reads + row * dv;
      if (in.keeps[row] == T(0)) {  // a masked step keeps the state and writes nothing
        std::copy(h + e * dh, h + (e + 1) * dh, h_out);
        std::copy(c + e * dh, c + (e + 1) * dh, c_out);
        std::copy(read + e * dv, read + (e + 1) * dv, read_out);
        for (int64_t l = 0; l < s.layers; ++l) {
          std::fill_n(out.factors_a[l] + row * heads * s.dims[l + 1], heads * s.dims[l + 1], T(0));
          std::fill_n(out.factors_b[l] + row * heads * s.dims[l], heads * s.dims[l], T(0));
        }
        continue;
      }
      // The sequence's memory phi_{t-1}, written in place into phi_t.
      for (int64_t l = 0; l < s.layers; ++l) {
        memory[l] = out.memory[l] + b * s.dims[l + 1] * s.dims[l];
      }
      T* writes = w.writes.data() + e * s.activation_size();
      MemoryForward(s, memory.data(), w.vectors.data() + e * width + heads * dk, writes);
      WriteFactors(s, e, memory.data(), &w);
      const T* factors = w.factors.data() + e * s.output_size();
      ApplyWrite(s, factors, writes, memory.data());
      ScatterFactors(s, row, factors, writes, out.factors_a, out.factors_b);
      const T meta = ReadAndRecall(s, e, memory.data(), &w, read_out);
      std::copy(w.hidden.data() + e * dh, w.hidden.data() + (e + 1) * dh, h_out);
      std::copy(w.cell.data() + e * dh, w.cell.data() + (e + 1) * dh, c_out);
      if (s.compute_meta) {
        out.meta[2 * b] += meta;
        out.meta[2 * b + 1] += T(1);
      }
    }
  }
}

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("MnmLocalForward")
    .MNM_LOCAL_INPUTS
    .Output("hs: T")
    .Output("cs: T")
    .Output("reads: T")
    .Output("final_meta: T")
    .Output("final_memory: L * T")
    .Output("factors_a: L * T")
    .Output("factors_b: L * T")
    .MNM_LOCAL_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle projected, h, read;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &projected));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &h));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 2, &read));
      int64_t layers, heads;
      TF_RETURN_IF_ERROR(c->GetAttr("L", &layers));
      TF_RETURN_IF_ERROR(c->GetAttr("num_heads", &heads));
      DimensionHandle steps = c->Dim(projected, 0), batch = c->Dim(projected, 1);
      c->set_output(0, c->MakeShape({steps, batch, c->Dim(h, 1)}));
      c->set_output(1, c->MakeShape({steps, batch, c->Dim(h, 1)}));
      c->set_output(2, c->MakeShape({steps, batch, c->Dim(read, 1)}));
      c->set_output(3, c->input(5));
      for (int64_t l = 0; l < layers; ++l) {
        ShapeHandle m;
        TF_RETURN_IF_ERROR(c->WithRank(c->input(6 + l), 3, &m));
        c->set_output(4 + l, m);
        c->set_output(4 + layers + l, c->MakeShape({steps, batch, heads, c->Dim(m, 1)}));
        c->set_output(4 + 2 * layers + l, c->MakeShape({steps, batch, heads, c->Dim(m, 2)}));
      }
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
The MNM recurrence over a sequence, MNM-p or (gradient_write) MNM-g
(mnm_keras/kernels/mnm_local_forward.h): every step's
controller state h_t, c_t and read-out v^r_t, the final meta-loss accumulator and memory,
and every step's write factors (a^l, b^l), from which MnmLocalBackward rebuilds the memory.
)doc");

template <typename T>
class MnmLocalForwardOp : public OpKernel {
 public:
  explicit MnmLocalForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadLocalAttrs(ctx, &attrs_));
  }

  void Compute(OpKernelContext* ctx) override {
    LocalSizes s;
    LocalParams<T> p;
    OP_REQUIRES_OK(ctx, ReadLocalInputs<T>(ctx, attrs_, &s, &p));
    LocalForwardInputs<T> in;
    in.projected = ctx->input(0).flat<T>().data();
    in.keeps = ctx->input(1).flat<T>().data();
    in.h = ctx->input(2).flat<T>().data();
    in.c = ctx->input(3).flat<T>().data();
    in.read = ctx->input(4).flat<T>().data();
    in.meta = ctx->input(5).flat<T>().data();
    ::tensorflow::OpInputList memory;
    OP_REQUIRES_OK(ctx, ctx->input_list("memory", &memory));
    for (int64_t l = 0; l < s.layers; ++l) in.memory.push_back(memory[l].flat<T>().data());

    LocalForwardOutputs<T> out;
    const int64_t steps = s.steps, batch = s.batch, heads = s.heads;
    OP_REQUIRES_OK(ctx, AllocateOutput(ctx, "hs", TensorShape({steps, batch, s.units}), &out.hs));
    OP_REQUIRES_OK(ctx, AllocateOutput(ctx, "cs", TensorShape({steps, batch, s.units}), &out.cs));
    OP_REQUIRES_OK(ctx,
                   AllocateOutput(ctx, "reads", TensorShape({steps, batch, s.value()}), &out.reads));
    OP_REQUIRES_OK(ctx, AllocateOutput(ctx, "final_meta", TensorShape({batch, 2}), &out.meta));
    for (int64_t l = 0; l < s.layers; ++l) {
      const int64_t rows = s.dims[l + 1], cols = s.dims[l];
      OP_REQUIRES_OK(ctx, AllocateListOutput(ctx, "final_memory", l,
                                             TensorShape({batch, rows, cols}), &out.memory));
      OP_REQUIRES_OK(ctx, AllocateListOutput(ctx, "factors_a", l,
                                             TensorShape({steps, batch, heads, rows}),
                                             &out.factors_a));
      OP_REQUIRES_OK(ctx, AllocateListOutput(ctx, "factors_b", l,
                                             TensorShape({steps, batch, heads, cols}),
                                             &out.factors_b));
    }
    ForEachBlock(ctx, batch, steps * kBlock * StepCost(s), [&](int64_t first, int64_t count) {
      LocalForwardBlock<T>(s, p, in, out, first, count);
    });
  }

 private:
  LocalAttrs attrs_;
};

#define REGISTER_CPU(type)                                                             \
  REGISTER_KERNEL_BUILDER(                                                             \
      Name("MnmLocalForward").Device(::tensorflow::DEVICE_CPU).TypeConstraint<type>("T"), \
      MnmLocalForwardOp<type>)
REGISTER_CPU(float);
REGISTER_CPU(double);
#undef REGISTER_CPU

}  // namespace mnm_keras
