// Names of the status codes as JS sees them (lib/errors.ts holds the same list).
#include "core/status.h"

namespace of {

const char* status_code_name(StatusCode code) {
    switch (code) {
        case StatusCode::Ok: return "OK";
        case StatusCode::Shape: return "ERR_SHAPE";
        case StatusCode::Config: return "ERR_CONFIG";
        case StatusCode::Data: return "ERR_DATA";
        case StatusCode::Backend: return "ERR_BACKEND";
        case StatusCode::Checkpoint: return "ERR_CHECKPOINT";
        case StatusCode::Abort: return "ABORT_ERR";
        case StatusCode::Numeric: return "ERR_NUMERIC";
        case StatusCode::OutOfMemory: return "ERR_OOM";
        case StatusCode::Disposed: return "ERR_DISPOSED";
        case StatusCode::Busy: return "ERR_BUSY";
        case StatusCode::Internal: return "ERR_INTERNAL";
    }
    return "ERR_INTERNAL";
}

}  // namespace of
