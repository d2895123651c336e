/**
 * Where the engine keeps its database and run folders:
 *   --data-dir flag > OVERNIGHT_DATA_DIR > the OS default
 *   (Linux: $XDG_DATA_HOME/overnight or ~/.local/share/overnight;
 *    macOS: ~/Library/Application Support/Overnight; Windows: %APPDATA%\Overnight).
 * Electron passes its userData folder as the flag.
 */
import os from 'node:os';
import { join, resolve } from 'node:path';

export interface DataDirSources {
  flag?: string | undefined;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  home?: string;
}

export function resolveDataDir(src: DataDirSources = {}): string {
  const env = src.env ?? process.env;
  if (src.flag) return resolve(src.flag);
  if (env.OVERNIGHT_DATA_DIR) return resolve(env.OVERNIGHT_DATA_DIR);
  return defaultDataDir(src.platform ?? process.platform, src.home ?? os.homedir(), env);
}

export function defaultDataDir(
  platform: NodeJS.Platform,
  home: string,
  env: NodeJS.ProcessEnv = {},
): string {
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'Overnight');
  if (platform === 'win32')
    return join(env.APPDATA ?? join(home, 'AppData', 'Roaming'), 'Overnight');
  return join(env.XDG_DATA_HOME || join(home, '.local', 'share'), 'overnight');
}
