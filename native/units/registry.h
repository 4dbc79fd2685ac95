// The registry of layer types, and what the shared code asks of a unit's kind. A kind is its UnitKind object
// (units/unit.h: what it computes), defined in its file beside this one; a unit points at it (Unit::kind), and a
// kind's own file tests for it by address (u.kind == &gru_kind). registry.cpp lists the layer types of the JS spec.
#pragma once
#include <string>

namespace of {

// How the shared code views a kind's rows (Unit's predicates): plain (rows, O); conv-like: a dense map per output
// position of gathered inputs; norm: per position over the last axis (the norms, and the embedding tables, whose
// output is T positions of D values); recurrent: a gated recurrence over T steps.
enum class UnitFamily { Plain, ConvLike, Norm, Recurrent };

struct UnitKind;   // units/unit.h
struct LayerType;  // units/unit.h

UnitFamily unit_family(const UnitKind* kind);
// The layer type of a JS spec's `type` string; nullptr: none of that name.
const LayerType* find_layer_type(const std::string& name);

}  // namespace of
