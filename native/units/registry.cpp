// The table of layer types of the JS spec, each defined in its file beside this one with the unit kinds it makes:
// the only place that lists them all, so a new kind is its file plus its lines here. Below the table, model/units.h's
// entry points, dispatching through each unit's kind.
#include "units/registry.h"

#include "units/unit.h"

namespace of {

extern const LayerType dense_layer, activation_layer, flatten_layer, conv2d_layer, max_pool_layer, avg_pool_layer,
    global_avg_pool_layer, rnn_layer, gru_layer, lstm_layer, lif_layer, repeat_layer, time_mean_layer, graph_conv_layer,
    residual_begin_layer, concat_begin_layer, residual_end_layer, concat_end_layer, dropout_layer, layer_norm_layer,
    batch_norm_layer, group_norm_layer, embedding_layer, positional_embedding_layer, attention_layer;

const LayerType* find_layer_type(const std::string& name) {
    static const LayerType* const types[] = {
        &dense_layer,
        &activation_layer,
        &flatten_layer,
        &conv2d_layer,
        &max_pool_layer,
        &avg_pool_layer,
        &global_avg_pool_layer,
        &rnn_layer,
        &gru_layer,
        &lstm_layer,
        &lif_layer,
        &repeat_layer,
        &time_mean_layer,
        &graph_conv_layer,
        &residual_begin_layer,
        &concat_begin_layer,
        &residual_end_layer,
        &concat_end_layer,
        &dropout_layer,
        &layer_norm_layer,
        &batch_norm_layer,
        &group_norm_layer,
        &embedding_layer,
        &positional_embedding_layer,
        &attention_layer,
    };
    for (const LayerType* t : types)
        if (name == t->name) return t;
    return nullptr;
}

UnitFamily unit_family(const UnitKind* kind) { return kind->family; }

int Unit::noise_width() const {
    const UnitKind& o = *kind;
    return o.noise_width ? o.noise_width(*this) : O;
}

void unit_linear(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                 float* cols, const SeqCtx* sq) {
    u.kind->forward(k, u, theta, in, rows, out, cols, sq);
}

void unit_train_linear(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                       float* cols, const SeqCtx* sq, const TrainCtx& t) {
    const UnitKind& o = *u.kind;
    if (o.train_forward) o.train_forward(u, theta, in, rows, out, t);
    else o.forward(k, u, theta, in, rows, out, cols, sq);
}

void unit_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
                   float* dW, float* din, float* cols, const SeqCtx* sq) {
    u.kind->backward(k, u, theta, in, rows, dv, dW, din, cols, sq);
}

void unit_train_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                         const float* dv, float* dW, float* din, float* cols, const SeqCtx* sq, const TrainCtx& t) {
    const UnitKind& o = *u.kind;
    if (!o.train_backward) return o.backward(k, u, theta, in, rows, dv, dW, din, cols, sq);
    if (din) o.train_backward(u, theta, dv, rows, din, t);
}

void unit_lr_reduce(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* S,
                    const float* w, float alpha, float* dW, float* db, float* cols, float* wexp) {
    const UnitKind& o = *u.kind;
    if (o.lr_reduce_params) return o.lr_reduce_params(k, u, theta, in, rows, S, w, alpha, dW, cols);
    o.lr_reduce(k, u, in, rows, S, w, alpha, dW, db, cols, wexp);
}

void unit_clean_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                        float* cols, const SeqCtx* sq, const float* skip) {
    if (u.concat()) concat_forward(u, out, in, skip, rows, 1);
    else unit_linear(k, u, theta, in, rows, out, cols, sq);
    unit_bias_act(k, u, theta, out, out, rows);
    if (u.ends_residual()) residual_add(k, u, out, skip, rows, 1);
}

void unit_bias_act(const KernelTable& k, const Unit& u, const float* theta, float* a, float* v, int rows) {
    const bool conv = u.positional();  // a conv's bias is per channel; recurrent units add theirs inside
    const float* bias = u.b_off < 0 || u.recurrent() ? nullptr : theta + u.b_off;
    k.bias_act_forward(a, v, bias, conv ? int(u.gemm_rows(rows)) : rows, u.gemm_cols(), u.act, u.alpha);
}

void unit_bias_row(const Unit& u, const float* theta, float* out) {
    const int C = u.gemm_cols();
    for (int64_t i = 0; i < u.O; i++) out[i] = u.b_off < 0 ? 0.0f : theta[u.b_off + i % C];
}

std::vector<UnitTensor> TensorNames::of(const Unit& u) {
    const UnitKind& o = *u.kind;
    std::vector<UnitTensor> out;
    if (!u.param() || !o.tensors) return out;
    int& n = count_[o.tensor_name];
    // an attention's output projection continues the name its input projections opened
    const int index = o.continues_name ? n - 1 : n++;
    o.tensors(u, o.tensor_name + std::to_string(index), out);
    return out;
}

}  // namespace of
