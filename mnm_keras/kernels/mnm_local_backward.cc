// MnmLocalBackward: the op, its shape function and its CPU kernel (equations in
// mnm_local_backward.h).
#include "mnm_local_backward.h"

#include <algorithm>

#include "mnm_local_tf.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace mnm_keras {
namespace {

// Back-propagates through z^{l+1} = act_l(M^l z^l) for one sequence, from the last layer
// to the first: with g = dz^{l+1} * act_l' (1 - (z^{l+1})^2 for tanh, 1 for the linear last
// layer), dM^l += g (z^l)^T and dz^l += (M^l)^T g. d_activations holds dL/dz^l for every l
// on entry (the gradients that reach each activation directly) and, on return, the totals;
// d_activations's z^0 slot is then the keys' gradient. gate: [max D] scratch.
template <typename T>
void MemoryBackward(const LocalSizes& s, const T* const* memory, const T* activations,
                    T* d_activations, T* d_memory, T* gate) {
  for (int64_t l = s.layers - 1; l >= 0; --l) {
    const int64_t rows = s.dims[l + 1], cols = s.dims[l];
    for (int64_t i = 0; i < s.heads; ++i) {
      const T* z_out = activations + s.activation_offset(l + 1) + i * rows;
      const T* d_out = d_activations + s.activation_offset(l + 1) + i * rows;
      const T* z_in = activations + s.activation_offset(l) + i * cols;
      T* d_in = d_activations + s.activation_offset(l) + i * cols;
      for (int64_t j = 0; j < rows; ++j) {
        gate[j] = l < s.layers - 1 ? d_out[j] * (T(1) - z_out[j] * z_out[j]) : d_out[j];
      }
      OuterAccumulate(rows, cols, T(1), gate, z_in, d_memory + s.memory_offset(l));
      MatTVecAccumulate(rows, cols, memory[l], gate, d_in);
    }
  }
}


// Back-propagates MNM-p's write of sequence e (LocalWriteFactors) from d_mem = dL/dM_t:
// with M_t = M_{t-1} - sum_i a_i b_i^T, a_i = s_i e_i, s_i = beta / (H n_i),
// e_i = z^{l+1}_i - target^l_i, n_i = ||z^l_i||^2 + eps:
//   da_i = -dM_t b_i,  db_i = -dM_t^T a_i,  de_i = s_i da_i,  ds_i = da_i . e_i,
//   dbeta += ds_i / (H n_i),  dn_i = -ds_i s_i / n_i,
//   dz^l_i += db_i + 2 dn_i z^l_i (normalised writes),  dz^{l+1}_i += de_i,
//   dtarget^l_i = -de_i.
// Adds to d_activations (z^0 .. z^L of the write keys), d_targets and d_rates.
// d_a, d_b: [max D] scratch.
template <typename T>
void LocalWriteBackward(const LocalSizes& s, int64_t e, const LocalStepScratch<T>& w,
                        const T* d_mem, T* d_activations, T* d_targets, T* d_rates, T* d_a,
                        T* d_b) {
  const int64_t heads = s.heads, layers = s.layers, output_size = s.output_size();
  const T* writes = w.writes.data() + e * s.activation_size();
  const T* factors = w.factors.data() + e * output_size;
  const T* targets = w.targets.data() + e * output_size;
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t rows = s.dims[l + 1], cols = s.dims[l];
    const T* dm = d_mem + s.memory_offset(l);
    const T rate = w.rates[e * layers + l];
    for (int64_t i = 0; i < heads; ++i) {
      const T* a = factors + s.output_offset(l) + i * rows;
      const T* z_in = writes + s.activation_offset(l) + i * cols;
      const T* z_out = writes + s.activation_offset(l + 1) + i * rows;
      const T* target = targets + s.output_offset(l) + i * rows;
      T* dz_in = d_activations + s.activation_offset(l) + i * cols;
      T* dz_out = d_activations + s.activation_offset(l + 1) + i * rows;
      T* d_target = d_targets + s.output_offset(l) + i * rows;
      MatVec(rows, cols, dm, z_in, d_a);  // -da
      std::fill_n(d_b, cols, T(0));
      MatTVecAccumulate(rows, cols, dm, a, d_b);  // -db
      const T norm = w.norms[(e * layers + l) * heads + i];
      const T step = rate / T(heads) / norm;
      T d_step = 0;
      for (int64_t j = 0; j < rows; ++j) d_step -= d_a[j] * (z_out[j] - target[j]);
      d_rates[l] += d_step / (T(heads) * norm);
      for (int64_t k = 0; k < cols; ++k) dz_in[k] -= d_b[k];
      if (s.normalize) {
        const T d_norm = -d_step * step / norm;
        for (int64_t k = 0; k < cols; ++k) dz_in[k] += T(2) * d_norm * z_in[k];
      }
      for (int64_t j = 0; j < rows; ++j) {
        const T d_error = -step * d_a[j];
        dz_out[j] += d_error;
        d_target[j] -= d_error;
      }
    }
  }
}

// Scratch of GradientWriteBackward for one sequence: dL/ddelta and dL/da (one vector per
// layer and head, laid out as the deltas) and dL/db; empty for MNM-p.
template <typename T>
struct GradientWriteWork {
  std::vector<T> d_deltas, d_a, d_b;
  explicit GradientWriteWork(const LocalSizes& s)
      : d_deltas(s.gradient ? s.output_size() : 0),
        d_a(s.gradient ? s.output_size() : 0),
        d_b(s.gradient ? *std::max_element(s.dims.begin(), s.dims.end()) : 0) {}
};

// Back-propagates MNM-g's write of sequence e (GradientWriteFactors, second order) from
// d_mem = dL/dM_t, which it turns into dL/dM_{t-1} but for the forward pass of the write
// keys (MemoryBackward adds that). With a^l_i = s_i delta^{l+1}_i, s_i = beta / n_i:
//   da^l_i = -dM^l_t z^l_i,  dz^l_i += -(dM^l_t)^T a^l_i          (M_t = M_{t-1} - sum a b^T)
//   ddelta^{l+1}_i = s_i da^l_i,  ds_i = sum_l da^l_i . delta^{l+1}_i,
//   dbeta += sum_i ds_i / n_i,  dn_i = -ds_i s_i / n_i,  dz^l_i += 2 dn_i z^l_i (normalised)
// then through the deltas' recursion, l = 1 .. L - 1 (delta^l = r^l * (1 - (z^l)^2),
// r^l = (M^l_{t-1})^T delta^{l+1}):
//   dr^l = ddelta^l * (1 - (z^l)^2),  dz^l += -2 ddelta^l * r^l * z^l,
//   ddelta^{l+1} += M^l_{t-1} dr^l,  dM^l_{t-1} += delta^{l+1} (dr^l)^T
// and delta^L = (2/H)(z^L - v): dz^L += (2/H) ddelta^L,  dv -= (2/H) ddelta^L.
// memory: M_{t-1}. Adds to d_mem, d_activations, d_values ([H, d_v]) and d_rates ([1]).
template <typename T>
void GradientWriteBackward(const LocalSizes& s, int64_t e, const T* const* memory,
                           const LocalStepScratch<T>& w, T* d_mem, T* d_activations,
                           T* d_values, T* d_rates, GradientWriteWork<T>* work) {
  const int64_t heads = s.heads, layers = s.layers, output_size = s.output_size();
  const int64_t dv = s.value();
  const T* writes = w.writes.data() + e * s.activation_size();
  const T* factors = w.factors.data() + e * output_size;
  const T* deltas = w.deltas.data() + e * output_size;
  const T* backs = w.backs.data() + e * output_size;
  const T rate = w.rates[e];
  T* d_deltas = work->d_deltas.data();
  T* d_a = work->d_a.data();
  T* d_b = work->d_b.data();
  // First every layer's da and db from dM_t, before d_mem takes the deltas' terms.
  for (int64_t i = 0; i < heads; ++i) {
    T d_step = 0;
    const T norm = w.norms[e * heads + i];
    const T step = rate / norm;
    for (int64_t l = 0; l < layers; ++l) {
      const int64_t rows = s.dims[l + 1], cols = s.dims[l];
      const int64_t offset = s.output_offset(l) + i * rows;
      const T* dm = d_mem + s.memory_offset(l);
      const T* z_in = writes + s.activation_offset(l) + i * cols;
      T* dz_in = d_activations + s.activation_offset(l) + i * cols;
      MatVec(rows, cols, dm, z_in, d_a + offset);  // -da
      std::fill_n(d_b, cols, T(0));
      MatTVecAccumulate(rows, cols, dm, factors + offset, d_b);  // -db
      for (int64_t k = 0; k < cols; ++k) dz_in[k] -= d_b[k];
      for (int64_t j = 0; j < rows; ++j) {
        d_step -= d_a[offset + j] * deltas[offset + j];
        d_deltas[offset + j] = -step * d_a[offset + j];
      }
    }
    d_rates[0] += d_step / norm;
    if (s.normalize) {
      const T d_norm = -d_step * step / norm;
      for (int64_t l = 0; l < layers; ++l) {
        const T* z = writes + s.activation_offset(l) + i * s.dims[l];
        T* dz = d_activations + s.activation_offset(l) + i * s.dims[l];
        for (int64_t k = 0; k < s.dims[l]; ++k) dz[k] += T(2) * d_norm * z[k];
      }
    }
  }
  // The deltas' recursion, from delta^1 (computed last) to delta^L (first).
  for (int64_t i = 0; i < heads; ++i) {
    for (int64_t l = 1; l < layers; ++l) {
      const int64_t rows = s.dims[l + 1], cols = s.dims[l];
      const T* d_lower = d_deltas + s.output_offset(l - 1) + i * cols;
      const T* back = backs + s.output_offset(l - 1) + i * cols;
      const T* z = writes + s.activation_offset(l) + i * cols;
      T* dz = d_activations + s.activation_offset(l) + i * cols;
      T* d_back = d_b;
      for (int64_t k = 0; k < cols; ++k) {
        d_back[k] = d_lower[k] * (T(1) - z[k] * z[k]);
        dz[k] -= T(2) * d_lower[k] * back[k] * z[k];
      }
      const int64_t upper = s.output_offset(l) + i * rows;
      Vector<T>(d_deltas + upper, rows).noalias() +=
          ConstRows<T>(memory[l], rows, cols, Eigen::OuterStride<>(cols)) *
          ConstVector<T>(d_back, cols);
      OuterAccumulate(rows, cols, T(1), deltas + upper, d_back, d_mem + s.memory_offset(l));
    }
    const T scale = T(2) / static_cast<T>(heads);
    const T* d_last = d_deltas + s.output_offset(layers - 1) + i * dv;
    T* dz_last = d_activations + s.activation_offset(layers) + i * dv;
    for (int64_t j = 0; j < dv; ++j) {
      dz_last[j] += scale * d_last[j];
      d_values[i * dv + j] -= scale * d_last[j];
    }
  }
}

}  // namespace

template <typename T>
void LocalBackwardBlock(const LocalSizes& s, const LocalParams<T>& p,
                        const LocalForwardInputs<T>& forward,
                        const LocalBackwardInputs<T>& in, const LocalBackwardOutputs<T>& out,
                        const LocalParamGrads<T>& grads, int64_t first, int64_t count) {
  const int64_t batch = s.batch, dh = s.units, dv = s.value(), dk = s.key();
  const int64_t heads = s.heads, width = s.interface(), g4 = s.gates(), layers = s.layers;
  const int64_t memory_size = s.memory_size(), activation_size = s.activation_size();
  const int64_t output_size = s.output_size(), num_rates = s.rates();
  const int64_t widest = *std::max_element(s.dims.begin(), s.dims.end());
  const int64_t values_offset = 2 * heads * dk, rate_offset = values_offset + heads * dv;
  LocalStepScratch<T> w(s);
  // Per sequence: M_t, M_{t-1} and the gradients carried from step t + 1 to step t.
  std::vector<T> memory_now(count * memory_size), memory_before(count * memory_size);
  std::vector<T> d_memory(count * memory_size);
  std::vector<T> d_h(count * dh, T(0)), d_c(count * dh), d_read(count * dv, T(0));
  std::vector<T> d_meta(count * 2);
  for (int64_t e = 0; e < count; ++e) {
    const int64_t b = first + e;
    for (int64_t l = 0; l < layers; ++l) {
      const int64_t n = s.dims[l + 1] * s.dims[l];
      std::copy(in.memory[l] + b * n, in.memory[l] + (b + 1) * n,
                memory_now.data() + e * memory_size + s.memory_offset(l));
      std::copy(in.grad_memory[l] + b * n, in.grad_memory[l] + (b + 1) * n,
                d_memory.data() + e * memory_size + s.memory_offset(l));
    }
    std::copy(in.grad_c + b * dh, in.grad_c + (b + 1) * dh, d_c.data() + e * dh);
    d_meta[2 * e] = in.grad_meta[2 * b];
    d_meta[2 * e + 1] = in.grad_meta[2 * b + 1];
  }
  // Per step.
  std::vector<T> d_hidden(count * dh), d_interface(count * width), d_gates(count * g4);
  std::vector<char> kept(count);
  std::vector<T*> now_layers(layers), before_layers(layers);
  // Per sequence and step.
  std::vector<T> stored_a(output_size), stored_b(activation_size), read_out(dv);
  std::vector<T> d_vectors(width), d_activations(activation_size), d_targets(output_size);
  std::vector<T> d_rates(num_rates), d_rate_pre(num_rates), gate(widest), d_a(widest),
      d_b(widest);
  GradientWriteWork<T> gradient_work(s);
  for (int64_t t = s.steps - 1; t >= 0; --t) {
    const T* h = t == 0 ? forward.h + first * dh : in.hs + ((t - 1) * batch + first) * dh;
    const T* c = t == 0 ? forward.c + first * dh : in.cs + ((t - 1) * batch + first) * dh;
    const T* read =
        t == 0 ? forward.read + first * dv : in.reads + ((t - 1) * batch + first) * dv;
    ControllerForward(s, p, count, forward.projected + (t * batch + first) * g4, g4, h, dh, c,
                      dh, read, dv, &w);
    std::fill(d_interface.begin(), d_interface.end(), T(0));
    std::fill(d_gates.begin(), d_gates.end(), T(0));
    for (int64_t e = 0; e < count; ++e) {
      const int64_t b = first + e, row = t * batch + b;
      T* d_hidden_e = d_hidden.data() + e * dh;
      for (int64_t q = 0; q < dh; ++q) d_hidden_e[q] = d_h[e * dh + q] + in.grad_hs[row * dh + q];
      T* d_read_e = d_read.data() + e * dv;
      for (int64_t q = 0; q < dv; ++q) d_read_e[q] += in.grad_reads[row * dv + q];
      kept[e] = forward.keeps[row] != T(0);
      if (!kept[e]) {  // the state's gradients pass through a masked step
        std::copy(d_hidden_e, d_hidden_e + dh, d_h.data() + e * dh);
        const T* now = memory_now.data() + e * memory_size;
        std::copy(now, now + memory_size, memory_before.data() + e * memory_size);
        continue;
      }
      // 1. M_{t-1} = M_t + sum_i a_i b_i^T.
      T* now = memory_now.data() + e * memory_size;
      T* before = memory_before.data() + e * memory_size;
      for (int64_t l = 0; l < layers; ++l) {
        now_layers[l] = now + s.memory_offset(l);
        before_layers[l] = before + s.memory_offset(l);
      }
      GatherFactors(s, row, in.factors_a, in.factors_b, stored_a.data(), stored_b.data());
      UndoWrite(s, stored_a.data(), stored_b.data(), now_layers.data(), before_layers.data());
      // 2. The step again, from M_{t-1} (write) and M_t (read, meta).
      const T* vectors = w.vectors.data() + e * width;
      T* writes = w.writes.data() + e * activation_size;
      MemoryForward(s, before_layers.data(), vectors + heads * dk, writes);
      WriteFactors(s, e, before_layers.data(), &w);
      ReadAndRecall(s, e, now_layers.data(), &w, read_out.data());
      // 3. Back-propagation.
      T* d_mem = d_memory.data() + e * memory_size;
      std::fill(d_vectors.begin(), d_vectors.end(), T(0));
      // The read-out: dL/dy^L_i = dL/dv^r / H.
      std::fill(d_activations.begin(), d_activations.end(), T(0));
      T* d_last = d_activations.data() + s.activation_offset(layers);
      for (int64_t i = 0; i < heads; ++i) {
        for (int64_t j = 0; j < dv; ++j) d_last[i * dv + j] = d_read_e[j] / T(heads);
      }
      MemoryBackward(s, now_layers.data(), w.reads.data() + e * activation_size, d_activations.data(), d_mem,
                     gate.data());
      for (int64_t q = 0; q < heads * dk; ++q) d_vectors[q] += d_activations[q];
      // The meta loss's term: (1/H) sum_i ||u^L_i - v_i||^2.
      if (s.compute_meta) {
        std::fill(d_activations.begin(), d_activations.end(), T(0));
        const T* recalled = w.recalls.data() + e * activation_size + s.activation_offset(layers);
        const T scale = d_meta[2 * e] * T(2) / T(heads);
        for (int64_t q = 0; q < heads * dv; ++q) {
          const T g = scale * (recalled[q] - vectors[values_offset + q]);
          d_last[q] = g;
          d_vectors[values_offset + q] -= g;
        }
        MemoryBackward(s, now_layers.data(), w.recalls.data() + e * activation_size, d_activations.data(),
                       d_mem, gate.data());
        for (int64_t q = 0; q < heads * dk; ++q) d_vectors[heads * dk + q] += d_activations[q];
      }
      // The write, with d_mem = dL/dM_t (the read and the meta term included).
      std::fill(d_activations.begin(), d_activations.end(), T(0));
      std::fill(d_rates.begin(), d_rates.end(), T(0));
      std::fill(d_targets.begin(), d_targets.end(), T(0));
      if (s.gradient) {
        GradientWriteBackward(s, e, before_layers.data(), w, d_mem, d_activations.data(),
                              d_vectors.data() + values_offset, d_rates.data(), &gradient_work);
      } else {
        LocalWriteBackward(s, e, w, d_mem, d_activations.data(), d_targets.data(),
                           d_rates.data(), d_a.data(), d_b.data());
      }
      MemoryBackward(s, before_layers.data(), writes, d_activations.data(), d_mem, gate.data());
      for (int64_t q = 0; q < heads * dk; ++q) d_vectors[heads * dk + q] += d_activations[q];
      // The targets q^l(v^w_i) = act(v^w_i Q^l + q^l), or v^w_i itself for the last layer.
      for (int64_t l = 0; l < (s.gradient ? 0 : layers); ++l) {
        const int64_t size = s.dims[l + 1];
        for (int64_t i = 0; i < heads; ++i) {
          const T* d_target = d_targets.data() + s.output_offset(l) + i * size;
          T* d_value = d_vectors.data() + values_offset + i * dv;
          if (l >= s.feedback) {
            for (int64_t q = 0; q < dv; ++q) d_value[q] += d_target[q];
            continue;
          }
          const T* target = w.targets.data() + e * output_size + s.output_offset(l) + i * size;
          for (int64_t j = 0; j < size; ++j) {
            gate[j] = l < layers - 1 ? d_target[j] * (T(1) - target[j] * target[j]) : d_target[j];
            grads.feedback_biases[l][j] += gate[j];
          }
          const T* value = vectors + values_offset + i * dv;
          DenseBackwardKernel<T>(1, dv, size, value, dv, gate.data(), size,
                                 grads.feedback_kernels[l]);
          DenseBackwardInput<T>(1, dv, size, gate.data(), size, p.feedback_kernels[l], d_value,
                                dv);
        }
      }
      // The rates beta = sigmoid(beta' W_beta + b_beta).
      for (int64_t l = 0; l < num_rates; ++l) {
        const T rate = w.rates[e * num_rates + l];
        d_rate_pre[l] = d_rates[l] * rate * (T(1) - rate);
        grads.rate_bias[l] += d_rate_pre[l];
      }
      DenseBackwardKernel<T>(1, dk, num_rates, vectors + rate_offset, dk, d_rate_pre.data(),
                             num_rates, grads.rate_kernel);
      DenseBackwardInput<T>(1, dk, num_rates, d_rate_pre.data(), num_rates, p.rate_kernel,
                            d_vectors.data() + rate_offset, dk);
      // The interface's pre-activation: tanh' = 1 - tanh^2.
      for (int64_t q = 0; q < width; ++q) {
        d_interface[e * width + q] = d_vectors[q] * (T(1) - vectors[q] * vectors[q]);
      }
    }
    // The interface for the block: dW_i += h_t^T g, db_i += g, dh_t += W_i g.
    DenseBackwardKernel(count, dh, width, w.hidden.data(), dh, d_interface.data(), width,
                        grads.interface_kernel);
    for (int64_t e = 0; e < count; ++e) {
      for (int64_t q = 0; q < width; ++q) grads.interface_bias[q] += d_interface[e * width + q];
    }
    DenseBackwardInput(count, dh, width, d_interface.data(), width, p.interface_kernel,
                       d_hidden.data(), dh);
    // The LSTM: h_t = o tanh(c_t), c_t = f c_{t-1} + i g.
    for (int64_t e = 0; e < count; ++e) {
      const int64_t row = t * batch + first + e;
      T* d_projected = out.projected + row * g4;
      if (!kept[e]) {
        std::fill_n(d_projected, g4, T(0));
        continue;
      }
      const T* gates = w.gates.data() + e * g4;
      T* d_gate = d_gates.data() + e * g4;
      for (int64_t q = 0; q < dh; ++q) {
        const T i = gates[q], f = gates[dh + q], g = gates[2 * dh + q], o = gates[3 * dh + q];
        const T cell = Tanh(w.cell[e * dh + q]);
        const T d_hq = d_hidden[e * dh + q];
        const T d_cq = d_c[e * dh + q] + d_hq * o * (T(1) - cell * cell);
        d_gate[q] = d_cq * g * i * (T(1) - i);
        d_gate[dh + q] = d_cq * c[e * dh + q] * f * (T(1) - f);
        d_gate[2 * dh + q] = d_cq * i * (T(1) - g * g);
        d_gate[3 * dh + q] = d_hq * cell * o * (T(1) - o);
        d_c[e * dh + q] = d_cq * f;
      }
      std::copy(d_gate, d_gate + g4, d_projected);
      std::fill_n(d_h.data() + e * dh, dh, T(0));
      std::fill_n(d_read.data() + e * dv, dv, T(0));
    }
    for (int64_t e = 0; e < count; ++e) {
      for (int64_t q = 0; q < g4; ++q) grads.controller_bias[q] += d_gates[e * g4 + q];
    }
    DenseBackwardKernel(count, dh, g4, h, dh, d_gates.data(), g4, grads.recurrent_kernel);
    DenseBackwardKernel(count, dv, g4, read, dv, d_gates.data(), g4, grads.read_kernel);
    DenseBackwardInput(count, dh, g4, d_gates.data(), g4, p.recurrent_kernel, d_h.data(), dh);
    DenseBackwardInput(count, dv, g4, d_gates.data(), g4, p.read_kernel, d_read.data(), dv);
    memory_now.swap(memory_before);  // M_{t-1} is step t - 1's M_t
  }
  for (int64_t e = 0; e < count; ++e) {
    const int64_t b = first + e;
    std::copy(d_h.data() + e * dh, d_h.data() + (e + 1) * dh, out.h + b * dh);
    std::copy(d_c.data() + e * dh, d_c.data() + (e + 1) * dh, out.c + b * dh);
    std::copy(d_read.data() + e * dv, d_read.data() + (e + 1) * dv, out.read + b * dv);
    out.meta[2 * b] = d_meta[2 * e];
    out.meta[2 * b + 1] = d_meta[2 * e + 1];
    for (int64_t l = 0; l < layers; ++l) {
      const int64_t n = s.dims[l + 1] * s.dims[l];
      const T* source = d_memory.data() + e * memory_size + s.memory_offset(l);
      std::copy(source, source + n, out.memory[l] + b * n);
    }
  }
}

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::InferenceContext;

REGISTER_OP("MnmLocalBackward")
    .MNM_LOCAL_INPUTS
    .Input("hs: T")
    .Input("cs: T")
    .Input("reads: T")
    .Input("final_memory: L * T")
    .Input("factors_a: L * T")
    .Input("factors_b: L * T")
    .Input("grad_hs: T")
    .Input("grad_reads: T")
    .Input("grad_c: T")
    .Input("grad_meta: T")
    .Input("grad_memory: L * T")
    .Output("d_projected: T")
    .Output("d_h: T")
    .Output("d_c: T")
    .Output("d_read: T")
    .Output("d_meta: T")
    .Output("d_memory: L * T")
    .Output("d_read_kernel: T")
    .Output("d_recurrent_kernel: T")
    .Output("d_controller_bias: T")
    .Output("d_interface_kernel: T")
    .Output("d_interface_bias: T")
    .Output("d_rate_kernel: T")
    .Output("d_rate_bias: T")
    .Output("d_feedback_kernels: F * T")
    .Output("d_feedback_biases: F * T")
    .MNM_LOCAL_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      // Each gradient has the shape of the input it is the gradient of: inputs 0 and 2..5,
      // then the L memory matrices, the 7 weights and the 2 F feedback weights.
      int64_t layers, feedback;
      TF_RETURN_IF_ERROR(c->GetAttr("L", &layers));
      TF_RETURN_IF_ERROR(c->GetAttr("F", &feedback));
      int output = 0;
      c->set_output(output++, c->input(0));
      for (int input = 2; input < 6 + layers + 7 + 2 * feedback; ++input) {
        c->set_output(output++, c->input(input));
      }
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
The gradient of MnmLocalForward (mnm_keras/kernels/mnm_local_backward.h): the gradient of
every input but `keeps`, given the gradients of every step's h_t and read-out, of the final
c, meta-loss accumulator and memory.
)doc");

template <typename T>
class MnmLocalBackwardOp : public OpKernel {
 public:
  explicit MnmLocalBackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadLocalAttrs(ctx, &attrs_));
  }

  void Compute(OpKernelContext* ctx) override {
    LocalSizes s;
    LocalParams<T> p;
    OP_REQUIRES_OK(ctx, ReadLocalInputs<T>(ctx, attrs_, &s, &p));
    const int64_t steps = s.steps, batch = s.batch, heads = s.heads;
    LocalForwardInputs<T> forward;
    forward.projected = ctx->input(0).flat<T>().data();
    forward.keeps = ctx->input(1).flat<T>().data();
    forward.h = ctx->input(2).flat<T>().data();
    forward.c = ctx->input(3).flat<T>().data();
    forward.read = ctx->input(4).flat<T>().data();
    forward.meta = ctx->input(5).flat<T>().data();

    LocalBackwardInputs<T> in;
    const std::vector<std::pair<const char*, std::vector<int64_t>>> sequences = {
        {"hs", {steps, batch, s.units}},     {"cs", {steps, batch, s.units}},
        {"reads", {steps, batch, s.value()}}, {"grad_hs", {steps, batch, s.units}},
        {"grad_reads", {steps, batch, s.value()}}, {"grad_c", {batch, s.units}},
        {"grad_meta", {batch, 2}}};
    std::vector<const T*> pointers;
    for (const auto& [name, dims] : sequences) {
      const Tensor* tensor;
      OP_REQUIRES_OK(ctx, ctx->input(name, &tensor));
      OP_REQUIRES_OK(ctx, ExpectShape(*tensor, name, dims));
      pointers.push_back(tensor->flat<T>().data());
    }
    in.hs = pointers[0];
    in.cs = pointers[1];
    in.reads = pointers[2];
    in.grad_hs = pointers[3];
    in.grad_reads = pointers[4];
    in.grad_c = pointers[5];
    in.grad_meta = pointers[6];
    ::tensorflow::OpInputList final_memory, factors_a, factors_b, grad_memory;
    OP_REQUIRES_OK(ctx, ctx->input_list("final_memory", &final_memory));
    OP_REQUIRES_OK(ctx, ctx->input_list("factors_a", &factors_a));
    OP_REQUIRES_OK(ctx, ctx->input_list("factors_b", &factors_b));
    OP_REQUIRES_OK(ctx, ctx->input_list("grad_memory", &grad_memory));
    for (int64_t l = 0; l < s.layers; ++l) {
      const int64_t rows = s.dims[l + 1], cols = s.dims[l];
      OP_REQUIRES_OK(ctx, ExpectShape(final_memory[l], "final_memory", {batch, rows, cols}));
      OP_REQUIRES_OK(ctx, ExpectShape(grad_memory[l], "grad_memory", {batch, rows, cols}));
      OP_REQUIRES_OK(ctx, ExpectShape(factors_a[l], "factors_a", {steps, batch, heads, rows}));
      OP_REQUIRES_OK(ctx, ExpectShape(factors_b[l], "factors_b", {steps, batch, heads, cols}));
      in.memory.push_back(final_memory[l].flat<T>().data());
      in.grad_memory.push_back(grad_memory[l].flat<T>().data());
      in.factors_a.push_back(factors_a[l].flat<T>().data());
      in.factors_b.push_back(factors_b[l].flat<T>().data());
    }

    // Each gradient has the shape of the input it is the gradient of.
    LocalBackwardOutputs<T> out;
    const std::vector<std::pair<const char*, T**>> state = {
        {"d_projected", &out.projected}, {"d_h", &out.h}, {"d_c", &out.c},
        {"d_read", &out.read}, {"d_meta", &out.meta}};
    const int state_inputs[] = {0, 2, 3, 4, 5};
    for (size_t index = 0; index < state.size(); ++index) {
      OP_REQUIRES_OK(ctx, AllocateOutput(ctx, state[index].first,
                                         ctx->input(state_inputs[index]).shape(),
                                         state[index].second));
    }
    ::tensorflow::OpInputList memory;
    OP_REQUIRES_OK(ctx, ctx->input_list("memory", &memory));
    for (int64_t l = 0; l < s.layers; ++l) {
      OP_REQUIRES_OK(ctx, AllocateListOutput(ctx, "d_memory", l, memory[l].shape(), &out.memory));
    }

    // Each block sums its weights' gradients into its own row; the rows are then added in
    // block order (the same result for any number of threads).
    const std::vector<int64_t> sizes = ParamSizes(s);
    int64_t total = 0;
    for (int64_t size : sizes) total += size;
    const int64_t blocks = (batch + kBlock - 1) / kBlock;
    Tensor partial;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<T>::value,
                                           TensorShape({blocks, total}), &partial));
    T* partial_data = partial.flat<T>().data();
    std::fill_n(partial_data, blocks * total, T(0));
    ForEachBlock(ctx, batch, 3 * steps * kBlock * StepCost(s), [&](int64_t first, int64_t count) {
      const LocalParamGrads<T> grads = GradsIn(s, partial_data + (first / kBlock) * total);
      LocalBackwardBlock<T>(s, p, forward, in, out, grads, first, count);
    });
    const char* names[] = {"d_read_kernel",      "d_recurrent_kernel", "d_controller_bias",
                           "d_interface_kernel", "d_interface_bias",   "d_rate_kernel",
                           "d_rate_bias"};
    const char* weight_inputs[] = {"read_kernel",      "recurrent_kernel", "controller_bias",
                                   "interface_kernel", "interface_bias",   "rate_kernel",
                                   "rate_bias"};
    std::vector<T*> targets(7);
    for (int index = 0; index < 7; ++index) {
      const Tensor* weight;
      OP_REQUIRES_OK(ctx, ctx->input(weight_inputs[index], &weight));
      OP_REQUIRES_OK(ctx, AllocateOutput(ctx, names[index], weight->shape(), &targets[index]));
    }
    ::tensorflow::OpInputList feedback_kernels, feedback_biases;
    OP_REQUIRES_OK(ctx, ctx->input_list("feedback_kernels", &feedback_kernels));
    OP_REQUIRES_OK(ctx, ctx->input_list("feedback_biases", &feedback_biases));
    for (int64_t l = 0; l < s.feedback; ++l) {
      OP_REQUIRES_OK(ctx, AllocateListOutput(ctx, "d_feedback_kernels", l,
                                             feedback_kernels[l].shape(), &targets));
    }
    for (int64_t l = 0; l < s.feedback; ++l) {
      OP_REQUIRES_OK(ctx, AllocateListOutput(ctx, "d_feedback_biases", l,
                                             feedback_biases[l].shape(), &targets));
    }
    int64_t offset = 0;
    for (size_t index = 0; index < sizes.size(); ++index) {
      T* target = targets[index];
      std::fill_n(target, sizes[index], T(0));
      for (int64_t block = 0; block < blocks; ++block) {
        const T* source = partial_data + block * total + offset;
        for (int64_t q = 0; q < sizes[index]; ++q) target[q] += source[q];
      }
      offset += sizes[index];
    }
  }

 private:
  LocalAttrs attrs_;
};

#define REGISTER_CPU(type)                                                              \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("MnmLocalBackward").Device(::tensorflow::DEVICE_CPU).TypeConstraint<type>("T"), \
      MnmLocalBackwardOp<type>)
REGISTER_CPU(float);
REGISTER_CPU(double);
#undef REGISTER_CPU

}  // namespace mnm_keras
