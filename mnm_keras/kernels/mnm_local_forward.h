// MnmLocalForward: the MNM recurrence (section 3) over a whole sequence, for the sequences
// [first, first + count) of the batch, with MNM-p's write (equation 4) or, with the
// attribute gradient_write, MNM-g's (equations 2-3).
//
// For t = 0 .. S-1 and every sequence b (mnm_keras/core.py, recurrent_step):
//   gates  = x_t W_x + v^r_{t-1} W_r + h_{t-1} U + b_c        (x_t W_x: `projected`)
//   c_t    = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g);   h_t = sigmoid(o) * tanh(c_t)
//   [k^r; k^w; v^w; beta'_t] = tanh(h_t W_i + b_i);         beta_t = sigmoid(beta'_t W_beta + b_beta)
//   z^0 = k^w, z^{l+1} = act_l(M^l_{t-1} z^l)                (section 3.2)
//   M^l_t  = M^l_{t-1} - sum_i a^l_i (z^l_i)^T,  with
//     MNM-p: a^l_i = (beta^l_t / H)(z^{l+1}_i - q^l(v^w_i)) / n^l_i
//     MNM-g: a^l_i = beta_t delta^{l+1}_i / n_i, delta the gradient of
//            (1/H) sum_i ||z^L_i - v^w_i||^2 at M^l z^l (GradientWriteFactors)
//   v^r_t  = (1/H) sum_i f_{phi_t}(k^r_i)
//   meta  += [(1/H) sum_i ||f_{phi_t}(k^w_i) - v^w_i||^2, 1]   (equation 5, with compute_meta)
// At a step whose keep is 0 the state is kept and the write factors are zeros (Keras's
// masking rule, as core._masked_step).
#ifndef MNM_KERAS_KERNELS_MNM_LOCAL_FORWARD_H_
#define MNM_KERAS_KERNELS_MNM_LOCAL_FORWARD_H_

#include <cstdint>
#include <vector>

#include "mnm_local_common.h"

namespace mnm_keras {

// Inputs of the forward pass (row-major arrays; shapes in the op's registration).
template <typename T>
struct LocalForwardInputs {
  const T* projected;  // [S, B, 4 d_h]
  const T* keeps;      // [S, B]: 1 at real steps, 0 at masked ones
  const T* h;          // [B, d_h]: h_{-1}
  const T* c;          // [B, d_h]
  const T* read;       // [B, d_v]: v^r_{-1}
  const T* meta;       // [B, 2]: (sum of meta terms, number of steps)
  std::vector<const T*> memory;  // L x [B, D_{l+1}, D_l]: phi_{-1}
};

// Outputs of the forward pass.
template <typename T>
struct LocalForwardOutputs {
  T* hs;     // [S, B, d_h]: h_t
  T* cs;     // [S, B, d_h]: c_t
  T* reads;  // [S, B, d_v]: v^r_t
  T* meta;   // [B, 2]: after the last step
  std::vector<T*> memory;     // L x [B, D_{l+1}, D_l]: phi after the last step
  std::vector<T*> factors_a;  // L x [S, B, H, D_{l+1}]: a^l of every step's write
  std::vector<T*> factors_b;  // L x [S, B, H, D_l]: b^l = z^l of every step's write
};

// Runs the sequences [first, first + count) of the batch, count <= kBlock, through all S
// steps. Reads only their rows and writes only their rows, so blocks run concurrently.
template <typename T>
void LocalForwardBlock(const LocalSizes& s, const LocalParams<T>& p,
                       const LocalForwardInputs<T>& in, const LocalForwardOutputs<T>& out,
                       int64_t first, int64_t count);

}  // namespace mnm_keras

#endif  // MNM_KERAS_KERNELS_MNM_LOCAL_FORWARD_H_
