// MnmLocalBackward: the gradient of MnmLocalForward, written by hand, for the sequences
// [first, first + count) of the batch.
//
// From the last step to the first, for every sequence b:
//   1. rebuild the memory before the step by undoing its write:
//        M^l_{t-1} = M^l_t + sum_i a^l_i (b^l_i)^T
//      from the factors MnmLocalForward returned (no step's memory is kept);
//   2. recompute the step from (h_{t-1}, c_{t-1}, v^r_{t-1}, M_{t-1}) (mnm_local_common.h);
//   3. back-propagate, with dL/dM_t, dL/dh_t, dL/dc_t, dL/dv^r_t and dL/dmeta carried from
//      step t + 1 (the upstream gradients of hs and reads added at step t):
//        read  v^r_t = (1/H) sum_i f_{M_t}(k^r_i):
//              delta^{L}_i = dv^r / H;  delta^l = (M^l_t)^T (delta^{l+1} * act'), and
//              dM^l_t += (delta^{l+1} * act') (y^l_i)^T
//        meta  (1/H) sum_i ||f_{M_t}(k^w_i) - v^w_i||^2: the same through M_t from
//              (2/H)(u^L_i - v^w_i) dmeta_0, and -that into dv^w_i
//        write (MNM-p; MNM-g's, second order, in mnm_local_backward.cc,
//              GradientWriteBackward) M_t = M_{t-1} - sum_i a_i b_i^T:  dM_{t-1} = dM_t,
//              da_i = -dM_t b_i,  db_i = -dM_t^T a_i;  with a_i = s_i e_i,
//              s_i = beta / (H n_i), e_i = z^{l+1}_i - target^l_i, n_i = ||z^l_i||^2 + eps:
//              de_i = s_i da_i,  ds_i = da_i . e_i,  dbeta += ds_i / (H n_i),
//              dn_i = -ds_i s_i / n_i,  dz^l_i += db_i + 2 dn_i z^l_i  (normalised writes),
//              dz^{l+1}_i += de_i,  dtarget^l_i = -de_i,
//              then through z^{l+1} = act(M^l_{t-1} z^l): dM_{t-1} += (dz^{l+1} * act') (z^l)^T,
//              dz^l += (M^l_{t-1})^T (dz^{l+1} * act'),  dk^w = dz^0
//        targets q^l(v) = act(v Q^l + q^l), rates beta = sigmoid(beta' W_beta + b_beta), the
//              interface tanh(h_t W_i + b_i) and the LSTM: their ordinary derivatives.
// At a masked step (keep 0) the state's gradients pass through unchanged.
// The weights' gradients are summed over the block's sequences in order, so the op's
// result does not depend on the number of threads.
#ifndef MNM_KERAS_KERNELS_MNM_LOCAL_BACKWARD_H_
#define MNM_KERAS_KERNELS_MNM_LOCAL_BACKWARD_H_

#include <cstdint>
#include <vector>

#include "mnm_local_common.h"
#include "mnm_local_forward.h"

namespace mnm_keras {

// What the backward pass reads besides the forward inputs.
template <typename T>
struct LocalBackwardInputs {
  const T* hs;     // [S, B, d_h]: the forward op's outputs
  const T* cs;     // [S, B, d_h]
  const T* reads;  // [S, B, d_v]
  std::vector<const T*> memory;     // L x [B, D_{l+1}, D_l]: phi after the last step
  std::vector<const T*> factors_a;  // L x [S, B, H, D_{l+1}]
  std::vector<const T*> factors_b;  // L x [S, B, H, D_l]
  const T* grad_hs;     // [S, B, d_h]: dL/dh_t (the final h's gradient added at S - 1)
  const T* grad_reads;  // [S, B, d_v]: dL/dv^r_t (likewise)
  const T* grad_c;      // [B, d_h]: dL/dc after the last step
  const T* grad_meta;   // [B, 2]
  std::vector<const T*> grad_memory;  // L x [B, D_{l+1}, D_l]
};

// The gradients: of the inputs (rows of the block's sequences) and of the weights (this
// block's sum, laid out as ParamSizes, to be summed over blocks by the caller).
template <typename T>
struct LocalBackwardOutputs {
  T* projected;  // [S, B, 4 d_h]
  T* h;          // [B, d_h]
  T* c;          // [B, d_h]
  T* read;       // [B, d_v]
  T* meta;       // [B, 2]
  std::vector<T*> memory;  // L x [B, D_{l+1}, D_l]
};

template <typename T>
void LocalBackwardBlock(const LocalSizes& s, const LocalParams<T>& p,
                        const LocalForwardInputs<T>& forward,
                        const LocalBackwardInputs<T>& in, const LocalBackwardOutputs<T>& out,
                        const LocalParamGrads<T>& grads, int64_t first, int64_t count);

}  // namespace mnm_keras

#endif  // MNM_KERAS_KERNELS_MNM_LOCAL_BACKWARD_H_
