/**
 * The engine's one node-llama-cpp `Llama` instance, loaded lazily on first use and cached.
 * Never downloads or builds anything: it uses the prebuilt binaries shipped with the npm
 * package (or a local build already present), picking the best GPU backend available.
 */
import type { Llama } from 'node-llama-cpp';

let llamaPromise: Promise<Llama> | null = null;

export function getSharedLlama(): Promise<Llama> {
  if (!llamaPromise) {
    llamaPromise = (async () => {
      const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
      return getLlama({
        gpu: 'auto',
        build: 'never',
        skipDownload: true,
        usePrebuiltBinaries: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.error,
      });
    })();
    llamaPromise.catch(() => {
      llamaPromise = null; // let a later call retry
    });
  }
  return llamaPromise;
}

/** Disposes the shared instance if it was loaded (engine shutdown). */
export async function disposeSharedLlama(): Promise<void> {
  const p = llamaPromise;
  llamaPromise = null;
  if (!p) return;
  const llama = await p.catch(() => null);
  await llama?.dispose();
}
