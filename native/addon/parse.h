// Parsing of JS arguments into native structs (parse.cpp), shared by the ModelWrap methods and the fit and
// inference workers. Each throws a typed JS error (ERR_CONFIG, ERR_SHAPE, ...) on bad input.
#pragma once
#include <napi.h>

#include <vector>

#include "estimators/estimator.h"
#include "model/model.h"
#include "model/train.h"

namespace of::addon {

// A data set copied into native memory: what a call reads after it returns (fit, predictAsync) or while JS runs
// (a JS loss) must not live in an ArrayBuffer that JS can transfer (detach) or shrink meanwhile; N-API cannot pin
// one against either.
struct OwnedData {
    std::vector<float> x, values;
    std::vector<int32_t> labels;
    DataRef ref;  // points into the vectors above
};

EstimatorConfig parse_estimator(Napi::Env env, const Napi::Value& v);
OptimizerConfig parse_optimizer(Napi::Env env, const Napi::Value& v);
// x (rows, inputs) for a forward pass; sizes checked against the model.
DataRef parse_inputs(Napi::Env env, const Model& m, const Napi::Value& x, const Napi::Value& rows);
// x (rows, inputs) and y (labels or values) of a data set; validated against the model.
DataRef parse_data(Napi::Env env, const Model& m, const Napi::Value& x, const Napi::Value& y, const Napi::Value& rows);
// The same, copied into `out` (y may be empty for inputs only); out.ref points into it.
void own_data(Napi::Env env, const Model& m, const Napi::Value& x, const Napi::Value& y, const Napi::Value& rows,
              OwnedData* out);
void own_inputs(Napi::Env env, const Model& m, const Napi::Value& x, const Napi::Value& rows, OwnedData* out);

}  // namespace of::addon
