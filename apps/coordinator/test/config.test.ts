import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config';

const REQUIRED = ['--data-dir', '/tmp/covnet', '--sites', '/tmp/sites.json', '--initial-model', '/tmp/model.cvnw'];

describe('loadConfig', () => {
  describe('when only the required flags are given', () => {
    it('applies the defaults', () => {
      const config = loadConfig(REQUIRED, {});
      expect(config).toMatchObject({
        host: '127.0.0.1',
        port: 8080,
        dataDir: '/tmp/covnet',
        experiment: 'default',
        rounds: 3,
        minSites: 2,
        roundTimeoutS: 600,
        exitWhenDone: false,
        logLevel: 'info',
      });
      expect(config.database).toEqual({ type: 'sqlite', path: '/tmp/covnet/coordinator.sqlite' });
    });
  });

  describe('when flags are given', () => {
    it('parses both --flag value and --flag=value', () => {
      const config = loadConfig([...REQUIRED, '--port=0', '--rounds', '5', '--learning-rate', '0.0005', '--exit-when-done'], {});
      expect(config.port).toBe(0);
      expect(config.rounds).toBe(5);
      expect(config.learningRate).toBe(0.0005);
      expect(config.exitWhenDone).toBe(true);
    });

    it('reads DATABASE_URL and LOG_LEVEL', () => {
      const config = loadConfig(REQUIRED, { DATABASE_URL: 'postgres://127.0.0.1:5432/test', LOG_LEVEL: 'debug' });
      expect(config.database).toEqual({ type: 'postgres', url: 'postgres://127.0.0.1:5432/test' });
      expect(config.logLevel).toBe('debug');
    });
  });

  describe('when a flag is invalid', () => {
    it.each([
      [['--sites', '/s', '--initial-model', '/m'], '--data-dir'],
      [[...REQUIRED, '--rounds', 'two'], '--rounds'],
      [[...REQUIRED, '--rounds', '1.5'], '--rounds'],
      [[...REQUIRED, '--min-sites', '0'], '--min-sites'],
      [[...REQUIRED, '--port', '70000'], '--port'],
      [[...REQUIRED, '--round-timeout-s'], '--round-timeout-s'],
      [[...REQUIRED, '--experiment', 'has space'], '--experiment'],
      [[...REQUIRED, '--colour', 'blue'], '--colour'],
      [[...REQUIRED, '--rounds', '2', '--rounds', '3'], '--rounds'],
    ])('names the flag in %j', (argv, flag) => {
      expect(() => loadConfig(argv, {})).toThrow(flag);
    });

    it('rejects a DATABASE_URL of another scheme without echoing it', () => {
      expect(() => loadConfig(REQUIRED, { DATABASE_URL: 'mysql://user:secret@host/db' })).toThrow(/DATABASE_URL has scheme "mysql"/);
      expect(() => loadConfig(REQUIRED, { DATABASE_URL: 'mysql://user:secret@host/db' })).not.toThrow(/secret/);
    });
  });
});
