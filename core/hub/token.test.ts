// Where the hub token is kept: a 0600 file (web/CLI), or OS-encrypted (desktop), never plain
// text when the OS cannot encrypt. The "OS" here is AES-256-GCM from node:crypto with a key held
// in memory, standing in for Electron's safeStorage, which cannot run in CI.
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { encryptedSecretStore, fileSecretStore, type Encryptor } from './token.ts';

const dir = mkdtempSync(join(tmpdir(), 'overnight-token-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function aes(available: boolean): Encryptor {
  const key = randomBytes(32);
  return {
    isEncryptionAvailable: () => available,
    encryptString(plain) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
      return Buffer.concat([iv, c.getAuthTag(), body]);
    },
    decryptString(b) {
      const d = createDecipheriv('aes-256-gcm', key, b.subarray(0, 12));
      d.setAuthTag(b.subarray(12, 28));
      return Buffer.concat([d.update(b.subarray(28)), d.final()]).toString('utf8');
    },
  };
}

describe('hub token store', () => {
  test('file store: 0600, read back, cleared', async () => {
    const path = join(dir, 'hub-token');
    const s = fileSecretStore(path);
    await s.write('hf_abcdefgh123');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(await s.read(), 'hf_abcdefgh123');
    await s.write(null);
    assert.ok(!existsSync(path));
    assert.equal(await s.read(), null);
  });

  test('encrypted store: the file never holds the token in plain text', async () => {
    const path = join(dir, 'hub-token.enc');
    const s = encryptedSecretStore(aes(true), path);
    await s.write('hf_secretsecret42');
    assert.ok(!readFileSync(path).toString('latin1').includes('hf_secretsecret42'));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(await s.read(), 'hf_secretsecret42');
    // Another machine's key cannot read it: as if no token.
    assert.equal(await encryptedSecretStore(aes(true), path).read(), null);
  });

  test('encrypted store without OS encryption refuses to save and writes nothing', async () => {
    const path = join(dir, 'none.enc');
    const s = encryptedSecretStore(aes(false), path);
    await assert.rejects(s.write('hf_secretsecret42'), /secret store is not available/);
    assert.ok(!existsSync(path));
  });
});
