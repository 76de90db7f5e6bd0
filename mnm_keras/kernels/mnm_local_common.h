// The MNM recurrence (paper, section 3) for one block of sequences, with either write rule:
// MNM-p (the local rule of equation 4) or MNM-g (one gradient step, equations 2-3): the
// arithmetic that the fused ops MnmLocalForward and MnmLocalBackward share.
//
// Pure functions over plain arrays (Eigen for the products): no TensorFlow types, no global
// or static state, so
// blocks of the batch run on different threads at once. Each function's comment gives the
// equations it computes; mnm_keras/core.py (recurrent_step) and mnm_keras/memory.py are
// the reference they are tested against, in float64.
//
// Notation. B batch, S steps, d_h controller units, d_k key size, d_v value size, H heads,
// L memory layers of sizes D_0 = d_k, D_1, ..., D_L = d_v, I = 2 H d_k + H d_v + d_k the
// width of the interface (equation 1). Every matrix is row-major. Kernels are
// [inputs, outputs] and applied as x W + b (as Keras). Memory layer l of one sequence is
// M^l [D_{l+1}, D_l], applied as M^l z. The hidden memory layers use tanh, the last one is
// linear (the configurations this kernel covers; core.py checks before choosing it).
#ifndef MNM_KERAS_KERNELS_MNM_LOCAL_COMMON_H_
#define MNM_KERAS_KERNELS_MNM_LOCAL_COMMON_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "Eigen/Core"

namespace mnm_keras {

// epsilon of the normalised writes: mnm_keras.memory.NORMALIZATION_EPSILON.
constexpr double kNormalizationEpsilon = 1e-3;

// Sequences processed together by one thread: the dense products read each weight row
// once per block instead of once per sequence. Fixed, so that the reduction of the weight
// gradients over blocks (in block order) does not depend on the number of threads.
constexpr int64_t kBlock = 8;

// The sizes and options of one MNM, read from the op's inputs and attributes.
struct LocalSizes {
  int64_t batch = 0;
  int64_t steps = 0;
  int64_t units = 0;   // d_h
  int64_t heads = 0;   // H
  int64_t layers = 0;  // L
  // Learned feedback functions q^l: L, or L - 1 when the last layer's target is v itself
  // (MNM-p); 0 for MNM-g.
  int64_t feedback = 0;
  std::vector<int64_t> dims;  // D_0 .. D_L
  bool gradient = false;      // MNM-g's write (equations 2-3) instead of MNM-p's (equation 4)
  bool normalize = true;
  bool compute_meta = true;

  int64_t key() const { return dims.front(); }
  int64_t value() const { return dims.back(); }
  int64_t gates() const { return 4 * units; }
  int64_t interface() const { return 2 * heads * key() + heads * value() + key(); }
  // Rates beta_t: one per layer (MNM-p) or one in all (MNM-g).
  int64_t rates() const { return gradient ? 1 : layers; }
  // Offset of layer l in one sequence's flat memory, and the total.
  int64_t memory_offset(int64_t l) const {
    int64_t offset = 0;
    for (int64_t m = 0; m < l; ++m) offset += dims[m + 1] * dims[m];
    return offset;
  }
  int64_t memory_size() const { return memory_offset(layers); }
  // Offset of z^l [H, D_l] among the activations z^0 .. z^L of H heads, and the total.
  int64_t activation_offset(int64_t l) const {
    int64_t offset = 0;
    for (int64_t m = 0; m < l; ++m) offset += heads * dims[m];
    return offset;
  }
  int64_t activation_size() const { return activation_offset(layers + 1); }
  // Offset of layer l's output-sized vectors [H, D_{l+1}] (targets, write factors a^l).
  int64_t output_offset(int64_t l) const {
    int64_t offset = 0;
    for (int64_t m = 0; m < l; ++m) offset += heads * dims[m + 1];
    return offset;
  }
  int64_t output_size() const { return output_offset(layers); }
};

// The trainable weights the recurrence reads (the input projection x W_x is hoisted out
// and the output projection stays outside, as in core.py).
template <typename T>
struct LocalParams {
  const T* read_kernel = nullptr;       // W_r [d_v, 4 d_h]: the read-out's rows of the LSTM kernel
  const T* recurrent_kernel = nullptr;  // U [d_h, 4 d_h]
  const T* controller_bias = nullptr;   // b_c [4 d_h]
  const T* interface_kernel = nullptr;  // W_i [d_h, I]
  const T* interface_bias = nullptr;    // b_i [I]
  const T* rate_kernel = nullptr;       // W_beta [d_k, R]: R = L (MNM-p) or 1 (MNM-g)
  const T* rate_bias = nullptr;         // b_beta [R]
  std::vector<const T*> feedback_kernels;  // Q^l [d_v, D_{l+1}]
  std::vector<const T*> feedback_biases;   // q^l [D_{l+1}]
};

// Gradients of LocalParams, same shapes.
template <typename T>
struct LocalParamGrads {
  T* read_kernel = nullptr;
  T* recurrent_kernel = nullptr;
  T* controller_bias = nullptr;
  T* interface_kernel = nullptr;
  T* interface_bias = nullptr;
  T* rate_kernel = nullptr;
  T* rate_bias = nullptr;
  std::vector<T*> feedback_kernels;
  std::vector<T*> feedback_biases;
};

// Sizes of the LocalParams' tensors, in the order of LocalParamGrads' fields.
inline std::vector<int64_t> ParamSizes(const LocalSizes& s) {
  std::vector<int64_t> sizes = {s.value() * s.gates(), s.units * s.gates(), s.gates(),
                                s.units * s.interface(), s.interface(), s.key() * s.rates(),
                                s.rates()};
  for (int64_t l = 0; l < s.feedback; ++l) sizes.push_back(s.value() * s.dims[l + 1]);
  for (int64_t l = 0; l < s.feedback; ++l) sizes.push_back(s.dims[l + 1]);
  return sizes;
}

// LocalParamGrads over one flat buffer laid out as ParamSizes.
template <typename T>
LocalParamGrads<T> GradsIn(const LocalSizes& s, T* buffer) {
  LocalParamGrads<T> g;
  std::vector<int64_t> sizes = ParamSizes(s);
  std::vector<T*> parts;
  for (int64_t size : sizes) {
    parts.push_back(buffer);
    buffer += size;
  }
  g.read_kernel = parts[0];
  g.recurrent_kernel = parts[1];
  g.controller_bias = parts[2];
  g.interface_kernel = parts[3];
  g.interface_bias = parts[4];
  g.rate_kernel = parts[5];
  g.rate_bias = parts[6];
  for (int64_t l = 0; l < s.feedback; ++l) g.feedback_kernels.push_back(parts[7 + l]);
  for (int64_t l = 0; l < s.feedback; ++l) {
    g.feedback_biases.push_back(parts[7 + s.feedback + l]);
  }
  return g;
}

// tanh and the logistic sigmoid. float: the rational approximation that Eigen, and so
// TensorFlow's and XLA's CPU kernels, use for float32 (odd polynomial of degree 13 over an
// even one of degree 6 on [-7.9988, 7.9988], exact to a few ulp); branch-free, so the
// loops that apply it are vectorised. double: the C library's functions.
inline float Tanh(float x) {
  constexpr float kClamp = 7.99881172180175781f;
  const float small = x;
  x = std::min(std::max(x, -kClamp), kClamp);
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return std::abs(small) < 0.0004f ? small : p / q;
}

inline double Tanh(double x) { return std::tanh(x); }

// sigmoid(x) = (1 + tanh(x / 2)) / 2.
inline float Sigmoid(float x) { return 0.5f + 0.5f * Tanh(0.5f * x); }

inline double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// ---------------------------------------------------------------- dense products, per block
// Products of row-major arrays through Eigen (the headers TensorFlow ships), single-threaded:
// the threads split the batch, not the products, and Eigen's order of additions depends on
// the sizes only.
template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Rows = Eigen::Map<RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ConstRows = Eigen::Map<const RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using Vector = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstVector = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

// Y[e] += X[e] W for the n sequences of a block: X [n, in] (row stride x_stride),
// W [in, out], Y [n, out] (row stride y_stride).
template <typename T>
void DenseAccumulate(int64_t n, int64_t in, int64_t out, const T* x, int64_t x_stride,
                     const T* w, T* y, int64_t y_stride) {
  Rows<T>(y, n, out, Eigen::OuterStride<>(y_stride)).noalias() +=
      ConstRows<T>(x, n, in, Eigen::OuterStride<>(x_stride)) *
      ConstRows<T>(w, in, out, Eigen::OuterStride<>(out));
}

// dX[e] += W dY[e] (the transpose product): dX [n, in], W [in, out], dY [n, out].
template <typename T>
void DenseBackwardInput(int64_t n, int64_t in, int64_t out, const T* dy, int64_t dy_stride,
                        const T* w, T* dx, int64_t dx_stride) {
  Rows<T>(dx, n, in, Eigen::OuterStride<>(dx_stride)).noalias() +=
      ConstRows<T>(dy, n, out, Eigen::OuterStride<>(dy_stride)) *
      ConstRows<T>(w, in, out, Eigen::OuterStride<>(out)).transpose();
}

// dW += sum_e X[e]^T dY[e]: dW [in, out].
template <typename T>
void DenseBackwardKernel(int64_t n, int64_t in, int64_t out, const T* x, int64_t x_stride,
                         const T* dy, int64_t dy_stride, T* dw) {
  Rows<T>(dw, in, out, Eigen::OuterStride<>(out)).noalias() +=
      ConstRows<T>(x, n, in, Eigen::OuterStride<>(x_stride)).transpose() *
      ConstRows<T>(dy, n, out, Eigen::OuterStride<>(dy_stride));
}

// -------------------------------------------------------- memory products, one sequence
// y = M z: M [rows, cols], z [cols], y [rows].
template <typename T>
void MatVec(int64_t rows, int64_t cols, const T* m, const T* z, T* y) {
  Vector<T>(y, rows).noalias() =
      ConstRows<T>(m, rows, cols, Eigen::OuterStride<>(cols)) * ConstVector<T>(z, cols);
}

// dz += M^T d: M [rows, cols], d [rows], dz [cols].
template <typename T>
void MatTVecAccumulate(int64_t rows, int64_t cols, const T* m, const T* d, T* dz) {
  Vector<T>(dz, cols).noalias() +=
      ConstRows<T>(m, rows, cols, Eigen::OuterStride<>(cols)).transpose() *
      ConstVector<T>(d, rows);
}

// M += sign * a b^T: M [rows, cols], a [rows], b [cols].
template <typename T>
void OuterAccumulate(int64_t rows, int64_t cols, T sign, const T* a, const T* b, T* m) {
  Rows<T>(m, rows, cols, Eigen::OuterStride<>(cols)).noalias() +=
      (sign * ConstVector<T>(a, rows)) * ConstVector<T>(b, cols).transpose();
}

// ------------------------------------------------------------ one block's step, forward
// What one step computes for the n sequences of a block, kept for the backward pass.
// Per sequence e (offsets e * size):
template <typename T>
struct LocalStepScratch {
  std::vector<T> gates;    // [n, 4 d_h]: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
  std::vector<T> cell;     // [n, d_h]: c_t
  std::vector<T> hidden;   // [n, d_h]: h_t
  std::vector<T> vectors;  // [n, I]: tanh(h_t W_i + b_i) = [k^r; k^w; v^w; beta'_t]
  std::vector<T> rates;    // [n, R]: beta^l_t (MNM-p), beta_t (MNM-g)
  std::vector<T> targets;  // [n, sum_l H D_{l+1}]: target^l = q^l(v^w) (equation 4; MNM-p)
  std::vector<T> writes;   // [n, sum_l H D_l]: z^0 = k^w, z^{l+1} = act(M^l_{t-1} z^l)
  // [n, R, H] (R = rates(): one slot per layer for MNM-p, one for MNM-g): with normalised
  // writes ||z^l||^2 + eps (MNM-p) or sum_l (||z^l||^2 + eps) (MNM-g), else 1.
  std::vector<T> norms;
  // MNM-g: [n, sum_l H D_{l+1}]: delta^{l+1} = dL^up/d(M^l z^l) at output_offset(l), and
  // the back-propagated (M^l)^T delta^{l+1} at output_offset(l - 1), l = 1 .. L - 1.
  std::vector<T> deltas;
  std::vector<T> backs;
  std::vector<T> factors;  // [n, sum_l H D_{l+1}]: a^l of the write
  std::vector<T> reads;    // [n, sum_l H D_l]: y^0 = k^r, y^{l+1} = act(M^l_t y^l)
  std::vector<T> recalls;  // [n, sum_l H D_l]: u^0 = k^w, u^{l+1} = act(M^l_t u^l)

  explicit LocalStepScratch(const LocalSizes& s)
      : gates(kBlock * s.gates()),
        cell(kBlock * s.units),
        hidden(kBlock * s.units),
        vectors(kBlock * s.interface()),
        rates(kBlock * s.rates()),
        targets(kBlock * s.output_size()),
        writes(kBlock * s.activation_size()),
        norms(kBlock * s.rates() * s.heads),
        deltas(s.gradient ? kBlock * s.output_size() : 0),
        backs(s.gradient ? kBlock * s.output_size() : 0),
        factors(kBlock * s.output_size()),
        reads(kBlock * s.activation_size()),
        recalls(kBlock * s.activation_size()) {}
};

// The controller, the interface and the write targets for a block (section 3.1,
// equation 1, section 3.4):
//   gates = x_t W_x + v^r_{t-1} W_r + h_{t-1} U + b_c;  i, f, o = sigmoid, g = tanh
//   c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
//   [k^r; k^w; v^w; beta'_t] = tanh(h_t W_i + b_i);  beta_t = sigmoid(beta'_t W_beta + b_beta)
//   MNM-p: target^l_i = act_l(v^w_i Q^l + q^l) for l < F (tanh for hidden layers, linear for
//   the last); with F = L - 1 the last layer's target is v^w_i itself. MNM-g: no targets.
// projected, h, c, read: the block's rows, with row strides 4 d_h, d_h, d_h, d_v.
template <typename T>
void ControllerForward(const LocalSizes& s, const LocalParams<T>& p, int64_t n,
                       const T* projected, int64_t projected_stride, const T* h, int64_t h_stride,
                       const T* c, int64_t c_stride, const T* read, int64_t read_stride,
                       LocalStepScratch<T>* w) {
  const int64_t dh = s.units, g4 = s.gates(), width = s.interface();
  const int64_t heads = s.heads, dk = s.key(), dv = s.value(), layers = s.layers;
  const int64_t num_rates = s.rates();
  T* gates = w->gates.data();
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t q = 0; q < g4; ++q) {
      gates[e * g4 + q] = projected[e * projected_stride + q] + p.controller_bias[q];
    }
  }
  DenseAccumulate(n, dv, g4, read, read_stride, p.read_kernel, gates, g4);
  DenseAccumulate(n, dh, g4, h, h_stride, p.recurrent_kernel, gates, g4);
  for (int64_t e = 0; e < n; ++e) {
    T* gate = gates + e * g4;
    for (int64_t q = 0; q < dh; ++q) {
      const T i = Sigmoid(gate[q]), f = Sigmoid(gate[dh + q]);
      const T g = Tanh(gate[2 * dh + q]), o = Sigmoid(gate[3 * dh + q]);
      gate[q] = i;
      gate[dh + q] = f;
      gate[2 * dh + q] = g;
      gate[3 * dh + q] = o;
      const T cell = f * c[e * c_stride + q] + i * g;
      w->cell[e * dh + q] = cell;
      w->hidden[e * dh + q] = o * Tanh(cell);
    }
  }
  T* vectors = w->vectors.data();
  for (int64_t e = 0; e < n; ++e) {
    std::copy(p.interface_bias, p.interface_bias + width, vectors + e * width);
  }
  DenseAccumulate(n, dh, width, w->hidden.data(), dh, p.interface_kernel, vectors, width);
  for (int64_t q = 0; q < n * width; ++q) vectors[q] = Tanh(vectors[q]);
  T* rates = w->rates.data();
  const int64_t rate_offset = 2 * heads * dk + heads * dv;
  for (int64_t e = 0; e < n; ++e) {
    std::copy(p.rate_bias, p.rate_bias + num_rates, rates + e * num_rates);
  }
  DenseAccumulate(n, dk, num_rates, vectors + rate_offset, width, p.rate_kernel, rates,
                  num_rates);
  for (int64_t q = 0; q < n * num_rates; ++q) rates[q] = Sigmoid(rates[q]);
  if (s.gradient) return;
  const int64_t values_offset = 2 * heads * dk, total = s.output_size();
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t size = s.dims[l + 1], offset = s.output_offset(l);
    for (int64_t e = 0; e < n; ++e) {
      for (int64_t i = 0; i < heads; ++i) {
        T* target = w->targets.data() + e * total + offset + i * size;
        const T* value = vectors + e * width + values_offset + i * dv;
        if (l < s.feedback) {
          std::copy(p.feedback_biases[l], p.feedback_biases[l] + size, target);
          DenseAccumulate<T>(1, dv, size, value, dv, p.feedback_kernels[l], target, size);
          if (l < layers - 1) {
            for (int64_t q = 0; q < size; ++q) target[q] = Tanh(target[q]);
          }
        } else {
          std::copy(value, value + dv, target);  // the last layer's target is v^w
        }
      }
    }
  }
}

// z^0_i = key_i, z^{l+1}_i = act_l(M^l z^l_i) for one sequence and its H heads (section
// 3.2): act_l = tanh for l < L - 1, linear for the last layer. memory: the sequence's L
// matrices (memory[l] is M^l); activations [sum_l H D_l] (z^0 written from keys [H, D_0]).
template <typename T>
void MemoryForward(const LocalSizes& s, const T* const* memory, const T* keys, T* activations) {
  const int64_t heads = s.heads;
  std::copy(keys, keys + heads * s.dims[0], activations);
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t rows = s.dims[l + 1], cols = s.dims[l];
    for (int64_t i = 0; i < heads; ++i) {
      const T* z = activations + s.activation_offset(l) + i * cols;
      T* out = activations + s.activation_offset(l + 1) + i * rows;
      MatVec(rows, cols, memory[l], z, out);
      if (l < s.layers - 1) {
        for (int64_t j = 0; j < rows; ++j) out[j] = Tanh(out[j]);
      }
    }
  }
}

// One step's write factors of one sequence, between the ops' per-layer arrays
// (L x [S, B, H, D_{l+1}] for a, L x [S, B, H, D_l] for b) at `row` = t B + b and the flat
// layout of one sequence (a at output_offset(l), b at activation_offset(l)).
template <typename T>
void GatherFactors(const LocalSizes& s, int64_t row, const std::vector<const T*>& a,
                   const std::vector<const T*>& b, T* flat_a, T* flat_b) {
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t a_size = s.heads * s.dims[l + 1], b_size = s.heads * s.dims[l];
    std::copy(a[l] + row * a_size, a[l] + (row + 1) * a_size, flat_a + s.output_offset(l));
    std::copy(b[l] + row * b_size, b[l] + (row + 1) * b_size, flat_b + s.activation_offset(l));
  }
}

template <typename T>
void ScatterFactors(const LocalSizes& s, int64_t row, const T* flat_a, const T* flat_b,
                    const std::vector<T*>& a, const std::vector<T*>& b) {
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t a_size = s.heads * s.dims[l + 1], b_size = s.heads * s.dims[l];
    const T* from_a = flat_a + s.output_offset(l);
    const T* from_b = flat_b + s.activation_offset(l);
    std::copy(from_a, from_a + a_size, a[l] + row * a_size);
    std::copy(from_b, from_b + b_size, b[l] + row * b_size);
  }
}

// MNM-p's write (equation 4) for one sequence, as rank-H factors
// (memory.local_write_factors):
//   a^l_i = (beta^l_t / H) (z^{l+1}_i - target^l_i) / n^l_i,   b^l_i = z^l_i,
//   n^l_i = ||z^l_i||^2 + eps with normalised writes, else 1,
// with z the activations of the write keys under M_{t-1} (MemoryForward of k^w first).
template <typename T>
void LocalWriteFactors(const LocalSizes& s, int64_t e, LocalStepScratch<T>* w) {
  const int64_t heads = s.heads, total = s.output_size();
  const T* activations = w->writes.data() + e * s.activation_size();
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t rows = s.dims[l + 1], cols = s.dims[l];
    const T rate = w->rates[e * s.layers + l];
    for (int64_t i = 0; i < heads; ++i) {
      const T* z_in = activations + s.activation_offset(l) + i * cols;
      const T* z_out = activations + s.activation_offset(l + 1) + i * rows;
      T norm = 1;
      if (s.normalize) {
        norm = static_cast<T>(kNormalizationEpsilon);
        for (int64_t k = 0; k < cols; ++k) norm += z_in[k] * z_in[k];
      }
      w->norms[(e * s.layers + l) * heads + i] = norm;
      const T step = rate / static_cast<T>(heads) / norm;
      const T* target = w->targets.data() + e * total + s.output_offset(l) + i * rows;
      T* a = w->factors.data() + e * total + s.output_offset(l) + i * rows;
      for (int64_t j = 0; j < rows; ++j) a[j] = step * (z_out[j] - target[j]);
    }
  }
}

// MNM-g's write (equations 2-3) for one sequence, as rank-H factors
// (memory.gradient_write_factors): one gradient step of
// L^up = (1/H) sum_i ||z^L_i - v^w_i||^2 on M_{t-1}, back-propagated in closed form:
//   delta^L_i = (2/H) (z^L_i - v^w_i)                       (linear last layer)
//   r^l_i = (M^l_{t-1})^T delta^{l+1}_i,  delta^l_i = r^l_i * (1 - (z^l_i)^2),  l = L-1 .. 1
//   a^l_i = beta_t delta^{l+1}_i / n_i,   b^l_i = z^l_i,
//   n_i = sum_l (||z^l_i||^2 + eps) with normalised writes, else 1.
// memory: M_{t-1}; z: the activations of the write keys under it (MemoryForward first).
template <typename T>
void GradientWriteFactors(const LocalSizes& s, int64_t e, const T* const* memory,
                          LocalStepScratch<T>* w) {
  const int64_t heads = s.heads, total = s.output_size(), layers = s.layers, dv = s.value();
  const T* activations = w->writes.data() + e * s.activation_size();
  const T* values = w->vectors.data() + e * s.interface() + 2 * heads * s.key();
  T* deltas = w->deltas.data() + e * total;
  T* backs = w->backs.data() + e * total;
  const T rate = w->rates[e];
  for (int64_t i = 0; i < heads; ++i) {
    const T* z_last = activations + s.activation_offset(layers) + i * dv;
    T* delta = deltas + s.output_offset(layers - 1) + i * dv;
    for (int64_t j = 0; j < dv; ++j) {
      delta[j] = T(2) / static_cast<T>(heads) * (z_last[j] - values[i * dv + j]);
    }
    for (int64_t l = layers - 1; l >= 1; --l) {
      const int64_t rows = s.dims[l + 1], cols = s.dims[l];
      const T* upper = deltas + s.output_offset(l) + i * rows;
      T* back = backs + s.output_offset(l - 1) + i * cols;
      T* lower = deltas + s.output_offset(l - 1) + i * cols;
      std::fill_n(back, cols, T(0));
      MatTVecAccumulate(rows, cols, memory[l], upper, back);
      const T* z = activations + s.activation_offset(l) + i * cols;
      for (int64_t k = 0; k < cols; ++k) lower[k] = back[k] * (T(1) - z[k] * z[k]);
    }
    T norm = 1;
    if (s.normalize) {
      norm = 0;
      for (int64_t l = 0; l < layers; ++l) {
        const T* z = activations + s.activation_offset(l) + i * s.dims[l];
        norm += static_cast<T>(kNormalizationEpsilon);
        for (int64_t k = 0; k < s.dims[l]; ++k) norm += z[k] * z[k];
      }
    }
    w->norms[e * heads + i] = norm;
    const T step = rate / norm;
    for (int64_t l = 0; l < layers; ++l) {
      const int64_t rows = s.dims[l + 1], offset = s.output_offset(l) + i * rows;
      T* a = w->factors.data() + e * total + offset;
      for (int64_t j = 0; j < rows; ++j) a[j] = step * deltas[offset + j];
    }
  }
}

// The write factors of either rule for sequence e of the block; memory: its M_{t-1}.
template <typename T>
void WriteFactors(const LocalSizes& s, int64_t e, const T* const* memory,
                  LocalStepScratch<T>* w) {
  if (s.gradient) {
    GradientWriteFactors(s, e, memory, w);
  } else {
    LocalWriteFactors(s, e, w);
  }
}

// The write M^l_t = M^l_{t-1} - sum_i a^l_i (b^l_i)^T, in place, for one sequence.
// a [sum_l H D_{l+1}], b [sum_l H D_l] (z^0..z^{L-1}).
template <typename T>
void ApplyWrite(const LocalSizes& s, const T* a, const T* b, T* const* memory) {
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t rows = s.dims[l + 1], cols = s.dims[l];
    for (int64_t i = 0; i < s.heads; ++i) {
      OuterAccumulate(rows, cols, T(-1), a + s.output_offset(l) + i * rows,
                      b + s.activation_offset(l) + i * cols, memory[l]);
    }
  }
}

// The write undone: M^l_{t-1} = M^l_t + sum_i a^l_i (b^l_i)^T, from `now` into `before`,
// one pass over each matrix.
template <typename T>
void UndoWrite(const LocalSizes& s, const T* a, const T* b, const T* const* now,
               T* const* before) {
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t rows = s.dims[l + 1], cols = s.dims[l];
    for (int64_t j = 0; j < rows; ++j) {
      const T* source = now[l] + j * cols;
      T* target = before[l] + j * cols;
      std::copy(source, source + cols, target);
      for (int64_t i = 0; i < s.heads; ++i) {
        const T scale = a[s.output_offset(l) + i * rows + j];
        const T* right = b + s.activation_offset(l) + i * cols;
        for (int64_t k = 0; k < cols; ++k) target[k] += scale * right[k];
      }
    }
  }
}

// The read-out v^r_t = (1/H) sum_i f_{phi_t}(k^r_i) and the meta loss's term of step t
// (equation 5 with no recall delay), (1/H) sum_i ||f_{phi_t}(k^w_i) - v^w_i||^2, for one
// sequence under the written memory M_t. Returns the meta term; writes the read-out.
template <typename T>
T ReadAndRecall(const LocalSizes& s, int64_t e, const T* const* memory, LocalStepScratch<T>* w,
                T* read_out) {
  const int64_t heads = s.heads, dk = s.key(), dv = s.value(), width = s.interface();
  const T* vectors = w->vectors.data() + e * width;
  T* reads = w->reads.data() + e * s.activation_size();
  MemoryForward(s, memory, vectors, reads);  // read keys: the first H d_k entries
  const T* last = reads + s.activation_offset(s.layers);
  for (int64_t j = 0; j < dv; ++j) {
    T sum = 0;
    for (int64_t i = 0; i < heads; ++i) sum += last[i * dv + j];
    read_out[j] = sum / static_cast<T>(heads);
  }
  if (!s.compute_meta) return T(0);
  T* recalls = w->recalls.data() + e * s.activation_size();
  MemoryForward(s, memory, vectors + heads * dk, recalls);
  const T* recalled = recalls + s.activation_offset(s.layers);
  const T* values = vectors + 2 * heads * dk;
  T meta = 0;
  for (int64_t q = 0; q < heads * dv; ++q) {
    const T diff = recalled[q] - values[q];
    meta += diff * diff;
  }
  return meta / static_cast<T>(heads);
}

}  // namespace mnm_keras

#endif  // MNM_KERAS_KERNELS_MNM_LOCAL_COMMON_H_
