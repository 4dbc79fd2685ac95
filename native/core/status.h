// Status: the error value every core function and kernel returns. Nothing in native/ throws across a
// module boundary, exits or aborts; only addon/ turns a Status into a JS exception (addon/errors.cpp).
// StatusCode is mirrored by the ERR_* codes in lib/errors.ts; never renumber or rename after release.
#pragma once
#include <string>
#include <utility>

namespace of {

enum class StatusCode {
    Ok = 0,
    Shape,        // ERR_SHAPE: sizes that do not fit together
    Config,       // ERR_CONFIG: an option out of range or a combination that makes no sense
    Data,         // ERR_DATA: non-finite inputs, labels out of range
    Backend,      // ERR_BACKEND: a backend that is absent or failed
    Checkpoint,   // ERR_CHECKPOINT
    Abort,        // ABORT_ERR: cancelled by the caller
    Numeric,      // ERR_NUMERIC: non-finite loss during training
    OutOfMemory,  // ERR_OOM
    Disposed,     // ERR_DISPOSED
    Busy,         // ERR_BUSY: the model is training on another thread
    Internal,     // ERR_INTERNAL: a bug; please report
};

struct Status {
    StatusCode code = StatusCode::Ok;
    std::string message;

    Status() = default;
    Status(StatusCode c, std::string m) : code(c), message(std::move(m)) {}
    bool ok() const { return code == StatusCode::Ok; }
    static Status Ok() { return {}; }
};

const char* status_code_name(StatusCode code);  // "ERR_SHAPE", ...

}  // namespace of

#define OF_TRY(expr)                             \
    do {                                         \
        ::of::Status of_status_ = (expr);        \
        if (!of_status_.ok()) return of_status_; \
    } while (0)

#define OF_CHECK(cond, code, msg)                                        \
    do {                                                                 \
        if (!(cond)) return ::of::Status(::of::StatusCode::code, (msg)); \
    } while (0)
