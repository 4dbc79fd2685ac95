/**
 * Backend information and control: which backends were compiled in, which one runs, and why; the size of
 * the native thread pool. `ONEFORWARD_BACKEND` (auto|cpu|cuda) sets the default choice.
 */
import { BackendError } from './errors';
import * as fs from 'fs';
import * as path from 'path';
import { native, nativeBinary, type NativeBackendInfo } from './native';
import { invalidArg, is } from './validate';

/** Backends a model can ask for. `auto` picks CUDA when compiled in and usable, else the CPU. */
export const BACKENDS = ['auto', 'cpu', 'cuda'] as const;
/**
 * A backend a model can ask for: `'auto'`, `'cpu'` or `'cuda'`.
 * @useDeclaredType
 */
export type BackendName = (typeof BACKENDS)[number];

/**
 * What {@link info} reports.
 * @interface
 */
export type BackendInfo = NativeBackendInfo & {
  /** CPU devices (always 1) and CUDA devices (0 without CUDA). */
  devices: {
    /** CPU devices: always 1. */
    cpu: number;
    /** CUDA devices this process can use. */
    cuda: number;
  };
  /** Whether the MPI addon was built (an MPI was found at install time): `of.distributed.mpi()` works. */
  mpi: boolean;
  /**
   * Which addon file runs: `prebuilt` (shipped in the package), `cmake` or `node-gyp` (built from source at install
   * or by `npx oneforward rebuild`), or `custom` (`ONEFORWARD_NATIVE`).
   */
  binary: 'prebuilt' | 'cmake' | 'node-gyp' | 'custom';
  /** The absolute path of that file. */
  binaryPath: string;
};

/** Reports the compiled backends, the active one and why, thread count and SIMD level. */
export function info(): BackendInfo {
  const b = native().backendInfo();
  const { kind, path: binaryPath } = nativeBinary();
  const mpi = fs.existsSync(path.join(__dirname, '..', '..', 'build', 'Release', 'oneforward_mpi.node'));
  return { ...b, devices: { cpu: 1, cuda: b.cudaDevices ?? 0 }, mpi, binary: kind, binaryPath };
}

/**
 * Sets the native thread pool size (0 = the default: `ONEFORWARD_THREADS` or the number of cores).
 * Results never depend on it: every kernel splits work so that each output is summed in a fixed order.
 * @returns the new thread count.
 */
export function setThreads(threads: number): number {
  if (!is.integer(threads) || threads < 0 || threads > 256) throw invalidArg('threads', 'integer in [0, 256]', threads);
  return native().setThreads(threads);
}

/**
 * @internal Resolves a backend request (option, else `ONEFORWARD_BACKEND`, else auto) to what will run. `'sim'` is the
 * host simulation of a device (the CUDA backend's kernels run on the CPU): for tests, not listed in {@link BACKENDS}.
 */
export function resolveBackend(requested?: string): 'cpu' | 'cuda' | 'sim' {
  const want = requested ?? process.env.ONEFORWARD_BACKEND ?? 'auto';
  if (want === 'sim') return 'sim';
  if (!(BACKENDS as readonly string[]).includes(want))
    throw invalidArg('backend', `one of ${BACKENDS.join(', ')}`, want);
  const b = native().backendInfo();
  if (want === 'cuda' && b.active !== 'cuda') {
    const hint = b.compiled.includes('cuda')
      ? '    - Check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES'
      : '    - Install the CUDA toolkit (nvcc) and cmake, then rebuild: ONEFORWARD_CUDA=1 npx oneforward rebuild';
    throw new BackendError(
      `backend 'cuda' was requested but is not available: ${b.reason}.\n  Possible solutions:\n` +
        `    - Use backend: 'cpu' or 'auto'\n${hint}`,
    );
  }
  return want === 'auto' ? (b.active === 'cuda' ? 'cuda' : 'cpu') : (want as 'cpu' | 'cuda');
}
