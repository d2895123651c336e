// The measured side of `npm run bench:memory` (memory.bench.ts): one training job in a fresh
// process, opened exactly as a run opens it (core/training/run.ts trainerOpenOptions), a few
// optimizer steps, then one JSON line on stdout: the process's peak resident memory (VmHWM),
// the trainer's own buffers (trainer.memory()) and the step times. Not a test; run by the bench.
//
// Usage: node --import tsx test/bench/memory-child.ts <job.json>
import { readFileSync } from 'node:fs';
import { parseTrainingJob } from '../../contract/training.ts';
import { trainerOpenOptions } from '../../core/training/run.ts';
import { Trainer, peakRss } from '../../native/ts/binding.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';

/** VmHWM of this process from /proc (bytes), or null where there is no /proc. */
function vmHwm(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const job = parseTrainingJob(JSON.parse(readFileSync(process.argv[2]!, 'utf8')));
  const data = new TokenDataReader(job.dataPath);
  const steps = job.maxSteps ?? 1;
  const t0 = Date.now();
  const trainer = await Trainer.open(trainerOpenOptions(job, data.seqLen));
  const openMs = Date.now() - t0;
  const stepMs: number[] = [];
  try {
    for (let s = 0; s < steps; s++) {
      const windows = Array.from({ length: job.windowsPerStep }, (_, i) =>
        data.read((s * job.windowsPerStep + i) % data.nWindows),
      );
      const ts = Date.now();
      await trainer.step(windows, {
        lr: job.optimizer.lr,
        beta1: job.optimizer.beta1,
        beta2: job.optimizer.beta2,
        eps: job.optimizer.eps,
        weightDecay: job.optimizer.weightDecay,
        clipNorm: job.optimizer.clipNorm,
      });
      stepMs.push(Date.now() - ts);
    }
    const out = {
      vmHwm: vmHwm(),
      peakRss: peakRss(),
      maxRss: process.resourceUsage().maxRSS * 1024,
      memory: trainer.memory(),
      openMs,
      stepMs,
    };
    process.stdout.write(`BENCH_MEMORY ${JSON.stringify(out)}\n`);
  } finally {
    trainer.close();
    data.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
