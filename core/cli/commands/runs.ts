/**
 * `overnight train` and `overnight runs list|show|resume|pause|cancel`.
 * `train` (and `runs resume`) stay attached: a live progress line (step, loss, tokens/s, ETA)
 * until the run completes, fails or stops. Ctrl-C checkpoints and stops (the run is paused and
 * can be resumed with `overnight runs resume <id>`); a second Ctrl-C cancels it.
 */
import { readFileSync } from 'node:fs';
import {
  etaSeconds,
  formatDuration,
  peakMemory,
  presetChoices,
  presetConfig,
  type PresetChoice,
  type Run,
  type RunMetric,
} from '../../../contract/index.ts';
import { UsageError, type CliCommand, type CliContext } from '../command.ts';
import { formatBytes, keyValues, table } from '../format.ts';

/** One progress line: step, loss, tokens/s and ETA from the pace of the recent steps. */
export function progressLine(run: Pick<Run, 'totalSteps'>, recent: readonly RunMetric[]): string {
  const last = recent.at(-1);
  if (!last) return 'starting…';
  const eta = formatDuration(etaSeconds(recent, run.totalSteps, recent.length) ?? NaN);
  const tps =
    last.tokensPerSecond >= 1000
      ? `${(last.tokensPerSecond / 1000).toFixed(1)}k`
      : last.tokensPerSecond.toFixed(0);
  return `step ${last.step}/${run.totalSteps}  loss ${last.loss.toFixed(4)}  ${tps} tok/s  ETA ${eta}`;
}

/** The run's estimate before it starts: memory against the device, checkpointing, window fill. */
export function estimateLine(run: Pick<Run, 'estimate' | 'totalSteps'>): string {
  const e = run.estimate;
  if (!e) return `estimate: none stored; ${run.totalSteps} steps`;
  const m = e.memory;
  const parts = [
    `estimate: about ${formatBytes(m.totalBytes)} of ${formatBytes(m.deviceFreeBytes)} free on ${m.device} (${m.verdict})`,
  ];
  if (e.checkpointing !== undefined)
    parts.push(`activation checkpointing ${e.checkpointing ? 'on' : 'off'}`);
  parts.push(
    `${e.totalSteps} steps, ${e.trainWindows} windows` +
      (e.fillRatio !== undefined ? ` ${(100 * e.fillRatio).toFixed(1)}% full` : ''),
  );
  return parts.join('; ');
}

/** After the run: the highest memory a step measured, next to the estimate. */
export function peakLine(run: Pick<Run, 'estimate'>, metrics: readonly RunMetric[]): string {
  const peak = peakMemory(metrics);
  if (peak === null) return 'measured peak memory: no step reported one';
  const est = run.estimate?.memory.totalBytes;
  return (
    `measured peak memory: ${formatBytes(peak)}` +
    (est ? ` (estimate ${formatBytes(est)}, ${(((est - peak) / peak) * 100).toFixed(0)}% off)` : '')
  );
}

function describeRun(r: Run): string {
  return keyValues([
    ['id', r.id],
    ['name', r.name],
    ['state', r.stateReason ? `${r.state}: ${r.stateReason}` : r.state],
    ['progress', `step ${r.step} of ${r.totalSteps}`],
    ['model', r.modelId],
    ['dataset', r.datasetId],
    [
      'best val loss',
      r.bestValLoss === null ? '-' : `${r.bestValLoss.toFixed(4)} at step ${r.bestStep}`,
    ],
    ['adapter', r.adapterPath ?? '-'],
    ['folder', r.folder],
    ['created', r.createdAt],
    ['notes', r.notes || '-'],
  ]);
}

/** States after which an attached CLI stops watching (a failed run that will retry is queued again at once). */
const settled = new Set<Run['state']>([
  'completed',
  'cancelled',
  'paused',
  'interrupted',
  'failed',
]);

/** Follow a run until it settles; Ctrl-C pauses it (checkpoint + stop), a second Ctrl-C cancels. */
async function watch(ctx: CliContext, id: string): Promise<Run> {
  const events = ctx.engine().events;
  const tty = process.stdout.isTTY && !ctx.json;
  let run = (await ctx.call('runs.show', { id })).run;
  const recent: RunMetric[] = [];
  let lastPrint = 0;
  const print = (force = false) => {
    if (ctx.json) return;
    const line = progressLine(run, recent);
    if (tty) ctx.io.stdout(`\r\x1b[K${line}`);
    else if (force || Date.now() - lastPrint > 5000) {
      ctx.io.stdout(`${line}\n`);
      lastPrint = Date.now();
    }
  };
  return new Promise<Run>((resolve) => {
    let interrupts = 0;
    let finished = false;
    const onSigint = () => {
      interrupts++;
      const verb = interrupts === 1 ? 'runs.pause' : 'runs.cancel';
      ctx.io.stderr(
        `\n${interrupts === 1 ? 'checkpointing and stopping… (Ctrl-C again to cancel)' : 'cancelling…'}\n`,
      );
      void ctx.call(verb, { id }).catch((e: Error) => ctx.io.stderr(`error: ${e.message}\n`));
    };
    if (settled.has(run.state)) {
      // Already over (e.g. `runs resume` of a completed run): no event will come.
      resolve(run);
      return;
    }
    process.on('SIGINT', onSigint);
    const offs = [
      events.subscribe('runs.step', (p) => {
        if (p.id !== id) return;
        recent.push(...p.metrics);
        if (recent.length > 20) recent.splice(0, recent.length - 20);
        print();
      }),
      events.subscribe('runs.eval', (p) => {
        if (p.id === id && !ctx.json)
          ctx.io.stdout(
            `${tty ? '\r\x1b[K' : ''}eval at step ${p.step}: validation loss ${p.valLoss.toFixed(4)}\n`,
          );
      }),
      events.subscribe('runs.state', (r) => {
        if (r.id !== id) return;
        run = r;
        // Let the supervisor finish the transition (a failed run that retries is queued at once).
        setImmediate(() => {
          void ctx.call('runs.show', { id }).then(({ run: now }) => {
            if (finished || !settled.has(now.state)) return;
            finished = true;
            run = now;
            print(true); // the last progress line, also when output is not a terminal
            for (const off of offs) off();
            process.off('SIGINT', onSigint);
            resolve(now);
          });
        });
      }),
    ];
    print(true);
  });
}

async function attach(ctx: CliContext, id: string): Promise<void> {
  const final = await watch(ctx, id);
  const metrics = await ctx.call('runs.metrics', { id });
  ctx.print(
    final,
    () =>
      `\n${final.state}${final.stateReason ? `: ${final.stateReason}` : ''}` +
      (final.adapterPath ? `\nadapter: ${final.adapterPath}` : '') +
      `\n${peakLine(final, metrics)}`,
  );
  if (final.state === 'failed') throw new Error(final.stateReason ?? 'the run failed');
}

export const runsCommands: CliCommand[] = [
  {
    words: ['train'],
    options: {
      model: { type: 'string' },
      dataset: { type: 'string' },
      preset: { type: 'string' },
      config: { type: 'string' },
      name: { type: 'string' },
    },
    summary:
      'Train a LoRA adapter: --model <id|path> --dataset <id|path> [--preset quick|balanced|thorough|custom] [--config run.json] (a config the app wrote works as is).',
    async run(ctx, _args, v) {
      let fromFile: Record<string, unknown> = {};
      if (typeof v.config === 'string') {
        try {
          fromFile = JSON.parse(readFileSync(v.config, 'utf8')) as Record<string, unknown>;
        } catch (e) {
          throw new UsageError(`--config ${v.config}: ${(e as Error).message}`);
        }
      }
      const preset = (v.preset ?? fromFile.preset ?? 'balanced') as string;
      // Every value the config schema allows, "custom" included (a config the app wrote).
      if (!(presetChoices as readonly string[]).includes(preset)) {
        const where = typeof v.preset === 'string' ? '--preset' : `"preset" in ${v.config}`;
        throw new UsageError(
          `${where} must be one of ${presetChoices.join(', ')} (got "${preset}")`,
        );
      }
      const fields = { ...fromFile, preset } as Record<string, unknown>;
      if (typeof v.model === 'string') fields.model = v.model;
      if (typeof v.dataset === 'string') fields.dataset = v.dataset;
      if (!fields.model || !fields.dataset)
        throw new UsageError('give --model and --dataset (or both in --config)');
      const config = presetConfig(preset as PresetChoice, fields as never);
      ctx.engine().runs.start();
      const run = await ctx.call('runs.create', {
        config,
        ...(typeof v.name === 'string' ? { name: v.name } : {}),
      });
      if (!ctx.json)
        ctx.io.stdout(
          `run ${run.id} (${run.name}): ${run.totalSteps} steps, folder ${run.folder}\n${estimateLine(run)}\n`,
        );
      await attach(ctx, run.id);
    },
  },
  {
    words: ['runs', 'list'],
    options: { state: { type: 'string' } },
    summary: 'List runs, newest first.',
    async run(ctx, _a, v) {
      const list = await ctx.call(
        'runs.list',
        typeof v.state === 'string' ? { state: v.state as Run['state'] } : {},
      );
      ctx.print(list, () =>
        list.length === 0
          ? 'No runs yet. Start one with: overnight train --model <id|path> --dataset <id|path>'
          : table(
              ['ID', 'NAME', 'STATE', 'STEP', 'BEST VAL', 'CREATED'],
              list.map((r) => [
                r.id,
                r.name,
                r.state,
                `${r.step}/${r.totalSteps}`,
                r.bestValLoss === null ? '-' : r.bestValLoss.toFixed(4),
                r.createdAt.slice(0, 16).replace('T', ' '),
              ]),
            ),
      );
    },
  },
  {
    words: ['runs', 'show'],
    args: ['<id>'],
    summary: 'Show one run.',
    async run(ctx, [id]) {
      const d = await ctx.call('runs.show', { id: id! });
      ctx.print(d, () =>
        [
          describeRun(d.run),
          '',
          d.checkpoints.length
            ? table(
                ['CHECKPOINT', 'VAL LOSS', 'KIND'],
                d.checkpoints.map((c) => [
                  `step ${c.step}${c.isBest ? ' (best)' : ''}`,
                  c.valLoss?.toFixed(4) ?? '-',
                  c.kind,
                ]),
              )
            : 'No checkpoints.',
        ].join('\n'),
      );
    },
  },
  {
    words: ['runs', 'resume'],
    args: ['<id>'],
    summary:
      'Resume a paused, failed or interrupted run from its last checkpoint (or join it if already queued or running) and follow it to the end.',
    async run(ctx, [id]) {
      // The engine start recovers runs a dead engine left behind and may already queue or start
      // this one (autoResume); runs.resume then leaves it as it is (lifecycle.resumePlan).
      ctx.engine().runs.start();
      const run = await ctx.call('runs.resume', { id: id! });
      if (run.state === 'completed') {
        ctx.print(
          run,
          () =>
            `run ${run.id} (${run.name}) has already completed; nothing to resume.` +
            (run.stateReason ? `\ncompleted: ${run.stateReason}` : '') +
            (run.adapterPath ? `\nadapter: ${run.adapterPath}` : ''),
        );
        return;
      }
      if (!ctx.json)
        ctx.io.stdout(
          `run ${run.id} (${run.name}): ${run.state} at step ${run.step} of ${run.totalSteps}, folder ${run.folder}\n`,
        );
      await attach(ctx, run.id);
    },
  },
  {
    words: ['runs', 'cancel'],
    args: ['<id>'],
    summary: 'Cancel a run that is not running here (queued, paused, failed or interrupted).',
    async run(ctx, [id]) {
      const r = await ctx.call('runs.cancel', { id: id! });
      ctx.print(r, () => `${r.id}: ${r.state}`);
    },
  },
];
