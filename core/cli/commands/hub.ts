/**
 * `overnight models search|files|pull|recommended` and `overnight hub token`: the model hub
 * (Hugging Face; $OVERNIGHT_HUB_URL points it elsewhere, e.g. a mirror or a test server).
 */
import { OvernightError, type HubDownload, type HubFile } from '../../../contract/index.ts';
import { UsageError, type CliCommand, type CliContext } from '../command.ts';
import { formatBytes, table } from '../format.ts';

function badge(f: HubFile): string {
  const v = f.verdict;
  const arch =
    v.supported === true ? 'trainable' : v.supported === false ? 'not trainable' : 'unknown';
  return `${arch}, ${v.fit.verdict.replace(/-/g, ' ')}`;
}

function clock(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export function progressLine(d: HubDownload, width = 24): string {
  const total = d.totalBytes ?? 0;
  const frac = total > 0 ? Math.min(1, d.receivedBytes / total) : 0;
  const filled = Math.round(frac * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const state = d.state === 'verifying' ? ' verifying sha256…' : '';
  return (
    `${bar} ${String(Math.round(frac * 100)).padStart(3)}% ` +
    `${formatBytes(d.receivedBytes)} / ${total ? formatBytes(total) : '?'}  ` +
    `${formatBytes(d.bytesPerSecond)}/s  ETA ${clock(d.etaSeconds)}${state}`
  );
}

async function follow(ctx: CliContext, started: HubDownload): Promise<HubDownload> {
  const hub = ctx.engine().hub;
  const tty = Boolean(process.stderr.isTTY) && !ctx.json;
  let last = 0;
  const off = ctx.engine().events.subscribe('hub.download', (d) => {
    if (d.id !== started.id || ctx.json) return;
    if (tty) ctx.io.stderr(`\r\x1b[K${progressLine(d)}`);
    else if (Date.now() - last > 2000 || d.state !== 'downloading') {
      last = Date.now();
      ctx.io.stderr(`${progressLine(d)}\n`);
    }
  });
  const onSigint = () => {
    ctx.io.stderr('\ncancelling…\n');
    hub.downloads.cancel(started.id);
  };
  process.on('SIGINT', onSigint);
  try {
    return await hub.downloads.wait(started.id);
  } finally {
    off();
    process.off('SIGINT', onSigint);
    if (tty) ctx.io.stderr('\n');
  }
}

export const hubCommands: CliCommand[] = [
  {
    words: ['models', 'search'],
    args: ['<query>'],
    options: { sort: { type: 'string' }, limit: { type: 'string' } },
    summary: 'Search Hugging Face for GGUF models (--sort downloads|likes).',
    async run(ctx, [query], values) {
      const sort = values.sort ?? 'downloads';
      if (sort !== 'downloads' && sort !== 'likes') {
        throw new UsageError('--sort must be downloads or likes');
      }
      const limit = values.limit === undefined ? 20 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
        throw new UsageError('--limit must be a whole number from 1 to 100');
      }
      const list = await ctx.call('hub.search', { query: query!, sort, limit });
      ctx.print(list, () =>
        list.length === 0
          ? `No GGUF repositories match "${query}".`
          : table(
              ['REPOSITORY', 'DOWNLOADS', 'LIKES', 'GATED'],
              list.map((r) => [
                r.id,
                r.downloads.toLocaleString('en-US'),
                String(r.likes),
                r.gated === false ? '' : 'gated',
              ]),
            ) + '\nList its files with: overnight models files <repository>',
      );
    },
  },
  {
    words: ['models', 'files'],
    args: ['<repository>'],
    summary: "A repository's GGUF files, with size and whether each will train here.",
    async run(ctx, [repo]) {
      const r = await ctx.call('hub.files', { repo: repo! });
      ctx.print(r, () => {
        if (r.files.length === 0) return `${r.repo} has no .gguf files.`;
        const device = r.files[0]!.verdict.fit.device;
        return (
          table(
            ['FILE', 'QUANT', 'SIZE', 'WILL IT TRAIN HERE'],
            r.files.map((f) => [f.path, f.quantization ?? '?', formatBytes(f.size), badge(f)]),
          ) +
          `\nMemory badge: the training estimate at ${r.files[0]!.verdict.fit.sequenceLength} tokens on ${device}.` +
          `\nDownload with: overnight models pull ${r.files[0]!.uri}` +
          (r.gated === false
            ? ''
            : '\nThis model is gated: set a token with overnight hub token <token>.')
        );
      });
    },
  },
  {
    words: ['models', 'pull'],
    args: ['<hf:owner/repo/file.gguf>'],
    summary:
      'Download a GGUF file from Hugging Face into the model library (resumes, verifies sha256).',
    async run(ctx, [uri]) {
      const started = await ctx.call('hub.download', { uri: uri! });
      if (!ctx.json && started.resumedFrom > 0) {
        ctx.io.stderr(`resuming from ${formatBytes(started.resumedFrom)}\n`);
      }
      const done = started.state === 'completed' ? started : await follow(ctx, started);
      if (done.state !== 'completed') {
        throw new OvernightError(
          done.state === 'cancelled' ? 'CANCELLED' : 'NETWORK',
          done.error ?? `the download ended ${done.state}`,
        );
      }
      ctx.print(
        done,
        () => `Downloaded ${done.uri}\n  to ${done.destination}\n  model id ${done.modelId}`,
      );
    },
  },
  {
    words: ['models', 'recommended'],
    summary: 'Good starting models for LoRA on one GPU, and why.',
    async run(ctx) {
      const list = await ctx.call('hub.recommended', {});
      ctx.print(list, () =>
        list.map((m) => `${m.parameters.padEnd(5)} ${m.uri}\n      ${m.why}`).join('\n'),
      );
    },
  },
  {
    words: ['hub', 'token'],
    args: ['[token]'],
    options: { clear: { type: 'boolean' } },
    summary:
      'Set (or --clear) the Hugging Face access token for gated models; no argument: show whether one is set.',
    async run(ctx, [token], values) {
      const st =
        values.clear === true
          ? await ctx.call('hub.setToken', { token: null })
          : token
            ? await ctx.call('hub.setToken', { token })
            : await ctx.call('hub.tokenStatus', {});
      ctx.print(st, () =>
        st.hasToken
          ? `An access token is set (kept ${st.storage === 'file' ? 'in a file only you can read' : 'in the system secret store'}).`
          : 'No access token is set.',
      );
    },
  },
];
