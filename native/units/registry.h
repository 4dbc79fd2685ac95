// The registry of unit kinds and layer types: the enum every caller tests, and the lookups into the tables of
// registry.cpp (the only place that lists every kind). What a kind implements is in units/unit.h; each kind's
// code is one file beside this one.
#pragma once
#include <cstdint>
#include <string>

namespace of {

// What a model computes with, one per unit (model.h's Unit::kind).
enum class UnitKind {
    Dense,
    Conv2d,
    MaxPool2d,
    AvgPool2d,
    Rnn,
    Gru,
    Lstm,
    Lif,
    Repeat,
    TimeMean,
    GraphConv,
    Concat,
    Dropout,
    LayerNorm,
    BatchNorm,
    GroupNorm,
    Embedding,            // token ids -> rows of a table
    PositionalEmbedding,  // + a learned table, one row per position
    SeqDense,             // dense applied per position of a sequence
    AttentionQkv,         // multiHeadAttention's projections, per position: D -> 3D (Q, K, V) ...
    AttentionOut,         // ... and D -> D after attend
    Attend,               // multiHeadAttention's softmax(Q K^T / sqrt(d_h) + mask) V per head; no parameters
    Adapter,              // dense with a low-rank adapter (units/adapter.cpp) ...
    SeqAdapter            // ... and per position of a sequence
};

// How the shared code views a kind's rows (Unit's predicates): plain (rows, O); conv-like: a dense map per output
// position of gathered inputs; norm: per position over the last axis (the norms, and the embedding tables, whose
// output is T positions of D values); recurrent: a gated recurrence over T steps.
enum class UnitFamily { Plain, ConvLike, Norm, Recurrent };

struct UnitOps;    // units/unit.h
struct LayerType;  // units/unit.h

const UnitOps& unit_ops(UnitKind kind);
UnitFamily unit_family(UnitKind kind);
// The layer type of a JS spec's `type` string; nullptr: none of that name.
const LayerType* find_layer_type(const std::string& name);

}  // namespace of
