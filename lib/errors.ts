/**
 * Errors thrown by oneforward. Every error is a {@link OneForwardError} with a stable `code`; the native
 * engine throws instances of these same classes (registered at load time), so `instanceof` and `code`
 * work the same for errors from TypeScript validation and from C++.
 */

/** The stable error codes. Never renamed after release. */
export const ERROR_CODES = [
  'ERR_SHAPE',
  'ERR_CONFIG',
  'ERR_DATA',
  'ERR_BACKEND',
  'ERR_CHECKPOINT',
  'ABORT_ERR',
  'ERR_NUMERIC',
  'ERR_OOM',
  'ERR_DISPOSED',
  'ERR_BUSY',
  'ERR_INTERNAL',
] as const;
/** One of {@link ERROR_CODES}: the stable `code` of every error this package throws. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Base class of every error oneforward throws. */
export class OneForwardError extends Error {
  /** Stable machine-readable code, e.g. `ERR_SHAPE`. */
  code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_INTERNAL', options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Sizes that do not fit together (`ERR_SHAPE`). */
export class ShapeError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SHAPE', options);
  }
}
/** An option out of range, misspelled, or a combination that makes no sense (`ERR_CONFIG`). */
export class ConfigError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_CONFIG', options);
  }
}
/** Bad data: non-finite values, labels out of range, wrong array types (`ERR_DATA`). */
export class DataError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_DATA', options);
  }
}
/** A backend that is absent or failed, or a native module that cannot load (`ERR_BACKEND`). */
export class BackendError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_BACKEND', options);
  }
}
/** A checkpoint that cannot be read or written (`ERR_CHECKPOINT`). */
export class CheckpointError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_CHECKPOINT', options);
  }
}
/** Training was cancelled through an AbortSignal (`ABORT_ERR`, like DOM's AbortError). */
export class AbortError extends OneForwardError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, 'ABORT_ERR', options);
  }
}
/** A non-finite loss during training (`ERR_NUMERIC`); the message names the step, epoch, batch and seed. */
export class NumericError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_NUMERIC', options);
  }
}
/** An allocation failed (`ERR_OOM`). */
export class OutOfMemoryError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_OOM', options);
  }
}
/** The model was disposed (`ERR_DISPOSED`). */
export class DisposedError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_DISPOSED', options);
  }
}
/** The model is training on another thread (`ERR_BUSY`). */
export class BusyError extends OneForwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_BUSY', options);
  }
}

/** @internal code -> class, handed to the native module at load. */
export const errorClasses: Record<ErrorCode, new (message: string, options?: { cause?: unknown }) => OneForwardError> =
  {
    ERR_SHAPE: ShapeError,
    ERR_CONFIG: ConfigError,
    ERR_DATA: DataError,
    ERR_BACKEND: BackendError,
    ERR_CHECKPOINT: CheckpointError,
    ABORT_ERR: AbortError,
    ERR_NUMERIC: NumericError,
    ERR_OOM: OutOfMemoryError,
    ERR_DISPOSED: DisposedError,
    ERR_BUSY: BusyError,
    ERR_INTERNAL: class InternalError extends OneForwardError {
      constructor(message: string, options?: { cause?: unknown }) {
        super(message, 'ERR_INTERNAL', options);
      }
    },
  };

/**
 * @internal Re-throws a native error with the caller's stack appended (sharp's nativeError), so a rejected
 * promise points at the user's call site rather than at an anonymous native frame. Only the library's own errors
 * are decorated: any other value (a user's frozen Error, a Proxy) is returned untouched, never replaced by the
 * TypeError of a failed assignment.
 */
export function withCallerStack(err: unknown, callerStack: string | undefined): unknown {
  if (err instanceof OneForwardError && callerStack) {
    const frames = callerStack.split('\n').slice(1).join('\n');
    try {
      err.stack = `${err.name}: ${err.message}\n${frames}`;
    } catch {
      // a frozen error keeps its own stack
    }
  }
  return err;
}
