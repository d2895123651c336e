/**
 * Where the Hugging Face access token lives. Never in the database, never in plain text in the
 * desktop app:
 *  - web / CLI mode: `<dataDir>/hub-token`, mode 0600 (only this user can read it);
 *  - desktop app: `<userData>/hub-token.enc`, encrypted by the OS secret store through
 *    Electron's safeStorage (Keychain, DPAPI, libsecret/kwallet); electron/main.ts passes
 *    `encryptedSecretStore(safeStorage, path)` to the engine. When the OS offers no encryption,
 *    setting a token is refused rather than written in plain text.
 */
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { OvernightError } from '../../contract/index.ts';

export interface SecretStore {
  readonly kind: 'os-secret-store' | 'file';
  read(): Promise<string | null>;
  write(token: string | null): Promise<void>;
}

async function readOrNull(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch {
    return null;
  }
}

export function fileSecretStore(path: string): SecretStore {
  return {
    kind: 'file',
    async read() {
      const b = await readOrNull(path);
      const t = b?.toString('utf8').trim();
      return t ? t : null;
    },
    async write(token) {
      if (token === null) {
        await rm(path, { force: true });
        return;
      }
      await writeFile(path, `${token}\n`, { mode: 0o600 });
      await chmod(path, 0o600); // writeFile's mode applies only when it creates the file
    },
  };
}

/** The part of Electron's `safeStorage` this needs (so core never imports electron). */
export interface Encryptor {
  isEncryptionAvailable(): boolean;
  encryptString(plain: string): Buffer;
  decryptString(encrypted: Buffer): string;
}

export function encryptedSecretStore(enc: Encryptor, path: string): SecretStore {
  return {
    kind: 'os-secret-store',
    async read() {
      const b = await readOrNull(path);
      if (!b || b.length === 0 || !enc.isEncryptionAvailable()) return null;
      try {
        return enc.decryptString(b) || null;
      } catch {
        return null; // encrypted by another user / machine: as if none
      }
    },
    async write(token) {
      if (token === null) {
        await rm(path, { force: true });
        return;
      }
      if (!enc.isEncryptionAvailable()) {
        throw new OvernightError(
          'UNSUPPORTED',
          "this system's secret store is not available, so the token cannot be stored safely",
        );
      }
      await writeFile(path, enc.encryptString(token), { mode: 0o600 });
      await chmod(path, 0o600);
    },
  };
}

/** A Hugging Face token: "hf_" and letters/digits; anything else is refused before it is stored. */
export function checkToken(token: string): string {
  const t = token.trim();
  if (!/^[A-Za-z0-9_-]{8,400}$/.test(t)) {
    throw new OvernightError(
      'INVALID_INPUT',
      'that is not a Hugging Face access token (expected something like hf_AbC123…, no spaces)',
    );
  }
  return t;
}
