/** `overnight serve`: web mode (HTTP + WebSocket on 127.0.0.1) until Ctrl+C. */
import { DEFAULT_HOST, DEFAULT_PORT, startServer } from '../../server/index.ts';
import { UsageError, type CliCommand } from '../command.ts';

export const serveCommands: CliCommand[] = [
  {
    words: ['serve'],
    options: { port: { type: 'string' }, host: { type: 'string' } },
    summary: `Serve the app to a browser (default http://${DEFAULT_HOST}:${DEFAULT_PORT}; --port 0 picks a free port).`,
    async run(ctx, _args, values) {
      const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new UsageError(
          `--port: expected an integer from 0 to 65535, got "${String(values.port)}"`,
        );
      }
      const host = typeof values.host === 'string' ? values.host : DEFAULT_HOST;
      const server = await startServer({ engine: ctx.engine(), host, port });
      ctx.engine().runs.start(); // resume interrupted runs, start the queue
      if (ctx.json) {
        ctx.io.stdout(
          JSON.stringify({
            url: server.url,
            token: server.token,
            host: server.host,
            port: server.port,
          }) + '\n',
        );
      } else {
        ctx.io.stdout(`Overnight is running at ${server.url}\n`);
        ctx.io.stdout(`Data: ${ctx.dataDir}\nPress Ctrl+C to stop.\n`);
      }
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await server.close();
    },
  },
];
