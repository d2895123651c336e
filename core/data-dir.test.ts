import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { resolveDataDir } from './data-dir.ts';

describe('resolveDataDir', () => {
  const home = '/home/ada';
  it('prefers the flag, then OVERNIGHT_DATA_DIR, then the OS default', () => {
    const env = { OVERNIGHT_DATA_DIR: '/env/dir' };
    assert.equal(
      resolveDataDir({ flag: '/flag/dir', env, platform: 'linux', home }),
      resolve('/flag/dir'),
    );
    assert.equal(resolveDataDir({ env, platform: 'linux', home }), resolve('/env/dir'));
    assert.equal(
      resolveDataDir({ env: {}, platform: 'linux', home }),
      join(home, '.local', 'share', 'overnight'),
    );
  });
  it('uses each OS convention', () => {
    assert.equal(
      resolveDataDir({ env: {}, platform: 'darwin', home }),
      join(home, 'Library', 'Application Support', 'Overnight'),
    );
    assert.equal(
      resolveDataDir({ env: { APPDATA: 'C:/Users/ada/AppData/Roaming' }, platform: 'win32', home }),
      join('C:/Users/ada/AppData/Roaming', 'Overnight'),
    );
    assert.equal(
      resolveDataDir({ env: { XDG_DATA_HOME: '/xdg' }, platform: 'linux', home }),
      join('/xdg', 'overnight'),
    );
  });
});
