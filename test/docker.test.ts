import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ENVIRONMENT_VARIABLES, FLAGS, loadConfig } from '../apps/coordinator/src/config/config';
import { AGENT_ENVIRONMENT, RUN_OPTIONS } from '../apps/site-agent/src/commands/run';

// There is no Docker engine where these tests run, so they check the files
// against the apps' real flags and environment variables instead of running them.
const ROOT = join(__dirname, '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string; target?: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

const compose = parseYaml(read('docker/compose.yaml'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const AGENTS = ['hospital-a', 'hospital-b', 'hospital-c', 'hospital-d', 'hospital-e', 'hospital-f'];

/** Returns the value after `flag` in an argument list, or undefined. */
function flagValue(args: readonly string[], flag: string): string | undefined {
  const index = args.indexOf(flag);
  return index >= 0 ? args[index + 1] : undefined;
}

/** Flags (arguments starting with --) of an argument list. */
function flagsOf(args: readonly string[]): string[] {
  return args.filter((arg) => arg.startsWith('--'));
}

/** Instructions of a Dockerfile with continuation lines joined, grouped by build stage. */
function stages(path: string): { name: string; from: string; lines: string[] }[] {
  const text = read(path).replace(/\\\n\s*/g, ' ');
  const result: { name: string; from: string; lines: string[] }[] = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) result.push({ name: from[2] ?? '', from: from[1], lines: [] });
    else result.at(-1)!.lines.push(line);
  }
  return result;
}

function instruction(lines: string[], keyword: string): string[] {
  return lines.filter((l) => l.toUpperCase().startsWith(`${keyword} `)).map((l) => l.slice(keyword.length + 1).trim());
}

function jsonArray(text: string): string[] {
  return JSON.parse(text.replace(/^CMD\s+/, '')) as string[];
}

describe('docker/compose.yaml', () => {
  it('has PostgreSQL, the coordinator and six agents', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['coordinator', 'postgres', ...AGENTS].sort());
  });

  describe('coordinator service', () => {
    const service = compose.services.coordinator;
    const args = service.command!;

    it('passes only flags the coordinator accepts, and a valid configuration', () => {
      for (const flag of flagsOf(args)) expect(Object.keys(FLAGS), flag).toContain(flag);
      // Variables from docker/.env get stand-in values; literal values are used as they are.
      const env = Object.fromEntries(
        Object.entries(service.environment!).map(([key, value]) => [key, value.replace(/\$\{[^}]+\}/g, 'stand-in-secret-0123456789')]),
      );
      const config = loadConfig(args, env);
      expect(config.host).toBe('0.0.0.0');
      expect(config.database.type).toBe('postgres');
    });

    it('sets only environment variables the coordinator reads', () => {
      for (const key of Object.keys(service.environment!)) expect(ENVIRONMENT_VARIABLES, key).toContain(key);
      expect(Object.keys(service.environment!)).toContain('COVNET_ADMIN_TOKEN');
    });

    it('reaches PostgreSQL at its service name and port', () => {
      const url = new URL(service.environment!.DATABASE_URL.replace('${POSTGRES_PASSWORD}', 'secret'));
      expect(url.hostname).toBe('postgres');
      expect(url.port).toBe('5432');
      expect(url.username).toBe(compose.services.postgres.environment!.POSTGRES_USER);
      expect(url.pathname).toBe(`/${compose.services.postgres.environment!.POSTGRES_DB}`);
      expect(service.depends_on?.postgres.condition).toBe('service_healthy');
    });

    it('publishes the port it listens on', () => {
      const port = flagValue(args, '--port');
      expect(service.ports).toEqual([`${port}:${port}`]);
    });

    it('mounts every file its flags name', () => {
      const mounted = service.volumes!.map((v) => v.split(':')[1]);
      for (const flag of ['--data-dir', '--initial-model', '--experiments']) expect(mounted, flag).toContain(flagValue(args, flag));
      for (const volume of service.volumes!) {
        const [source, , mode] = volume.split(':');
        if (source.startsWith('.')) expect(mode, volume).toBe('ro');
        if (source.startsWith('../')) expect(existsSync(join(ROOT, 'docker', source)), volume).toBe(true);
      }
    });

    it('names an experiment of the mounted consortium file', () => {
      const consortium = service.volumes!.find((v) => v.split(':')[1] === flagValue(args, '--experiments'))!.split(':')[0];
      const experiments = (parseYaml(readFileSync(join(ROOT, 'docker', consortium), 'utf8')) as { experiments: { name: string }[] }).experiments;
      expect(experiments.map((e) => e.name)).toContain(flagValue(args, '--experiment'));
    });
  });

  describe.each(AGENTS)('agent %s', (name) => {
    const service = compose.services[name];
    const args = service.command!;

    it('runs with flags the agent accepts', () => {
      expect(args[0]).toBe('run');
      for (const flag of flagsOf(args)) expect(Object.keys(RUN_OPTIONS), flag).toContain(flag.slice(2));
    });

    it('sets only environment variables the agent reads', () => {
      for (const key of Object.keys(service.environment!)) expect(AGENT_ENVIRONMENT, key).toContain(key);
      expect(service.environment!.COVNET_SITE_TOKEN).toContain(`HOSPITAL_${name.slice(-1).toUpperCase()}_TOKEN`);
    });

    it('reaches the coordinator at its service name and port', () => {
      const url = new URL(flagValue(args, '--coordinator')!);
      expect(url.hostname).toBe('coordinator');
      expect(url.port).toBe(flagValue(compose.services.coordinator.command!, '--port'));
    });

    it('mounts its own archive read-only and keeps state in a volume', () => {
      expect(service.volumes).toContain(`./archives/${name}:${flagValue(args, '--archive')}:ro`);
      const state = service.volumes!.find((v) => v.startsWith(`${name}-state:`))!;
      expect(state).toBeDefined();
      expect(compose.volumes).toHaveProperty([`${name}-state`]);
      const stateDir = state.split(':')[1];
      expect(flagValue(args, '--status-file')!.startsWith(`${stateDir}/`)).toBe(true);
      expect(flagValue(args, '--audit-log')!.startsWith(`${stateDir}/`)).toBe(true);
    });

    it('builds the CPU image', () => {
      expect(service.build).toEqual({ context: '..', dockerfile: 'docker/site-agent.Dockerfile', target: 'cpu' });
    });
  });
});

describe('docker/coordinator.Dockerfile', () => {
  const all = stages('docker/coordinator.Dockerfile');
  const stage = all.at(-1)!;

  it('runs as a non-root user with a health check on its port', () => {
    expect(stage.from).toMatch(/^node:20\.\d+/);
    expect(instruction(stage.lines, 'USER')).toEqual(['node']);
    const cmd = jsonArray(instruction(stage.lines, 'CMD')[0]);
    const port = flagValue(cmd, '--port');
    expect(instruction(stage.lines, 'EXPOSE')).toEqual([port]);
    // The check reads the port and the TLS settings from the coordinator's own
    // flags (test/coordinator-health-check.test.ts runs it), so it names an entry that exists.
    const health = instruction(stage.lines, 'HEALTHCHECK')[0];
    const check = jsonArray(health.slice(health.indexOf('CMD') + 4));
    expect(check[0]).toBe('/app/node_modules/.bin/tsx');
    expect(existsSync(join(ROOT, check[1].replace('/app/', '')))).toBe(true);
    for (const flag of flagsOf(cmd)) expect(Object.keys(FLAGS), flag).toContain(flag);
  });

  it('starts the real entry point', () => {
    const entrypoint = jsonArray(instruction(stage.lines, 'ENTRYPOINT')[0]);
    expect(entrypoint[0]).toBe('/app/node_modules/.bin/tsx');
    expect(existsSync(join(ROOT, entrypoint[1].replace('/app/', '')))).toBe(true);
  });

  it('copies the native kernels built with g++', () => {
    const native = all.find((s) => s.name === 'native-kernels')!;
    expect(native.lines.join('\n')).toMatch(/apt-get install[^\n]* g\+\+/);
    expect(instruction(native.lines, 'RUN')).toContain('node build.cjs');
    const lines = stage.lines.join('\n');
    expect(lines).toContain('COPY libs/native-kernels/src libs/native-kernels/src');
    const copied = lines.indexOf('COPY --from=native-kernels /app/libs/native-kernels/build libs/native-kernels/build');
    expect(copied).toBeGreaterThan(lines.indexOf('npm ci'));
  });

  it('copies only paths that exist', () => {
    for (const copy of instruction(all.flatMap((s) => s.lines), 'COPY').filter((line) => !line.startsWith('--from'))) {
      const sources = copy.split(/\s+/).slice(0, -1).filter((part) => !part.startsWith('--'));
      for (const source of sources) expect(existsSync(join(ROOT, source)), source).toBe(true);
    }
  });
});

describe('docker/site-agent.Dockerfile', () => {
  const all = stages('docker/site-agent.Dockerfile');

  it('has a CUDA variant with tfjs-node-gpu and a CPU variant with tfjs-node', () => {
    const gpu = all.find((s) => s.name === 'gpu')!;
    const cpu = all.find((s) => s.name === 'cpu')!;
    expect(gpu.from).toMatch(/^nvidia\/cuda:11\.8\.\d+-cudnn8-runtime/);
    expect(gpu.lines.join('\n')).toContain('@tensorflow/tfjs-node-gpu@4.22.0');
    expect(cpu.from).toMatch(/^node:20\.\d+/);
    expect(cpu.lines.join('\n')).toContain('@tensorflow/tfjs-node@4.22.0');
  });

  it('builds the native kernels with a compiler before installing the workspace', () => {
    const sources = all.find((s) => s.name === 'sources')!.lines.join('\n');
    expect(sources).toMatch(/apt-get install[^\n]* g\+\+/);
    expect(sources.indexOf('COPY libs/native-kernels libs/native-kernels')).toBeGreaterThan(-1);
    expect(sources.indexOf('COPY libs/native-kernels libs/native-kernels')).toBeLessThan(sources.indexOf('npm ci'));
  });

  describe.each(['gpu', 'cpu'])('variant %s', (name) => {
    const stage = all.find((s) => s.name === name)!;
    const cmd = jsonArray(instruction(stage.lines, 'CMD')[0]);

    it('runs as a non-root user', () => {
      const [user] = instruction(stage.lines, 'USER');
      expect(user).toBe('covnet');
      expect(stage.lines.join('\n')).toMatch(/useradd --uid 10001/);
    });

    it('checks health with the status file that run writes', () => {
      const health = instruction(stage.lines, 'HEALTHCHECK')[0];
      const check = JSON.parse(health.slice(health.indexOf('CMD') + 4)) as string[];
      expect(check.slice(2, 3)).toEqual(['status']);
      expect(flagValue(check, '--status-file')).toBe(flagValue(cmd, '--status-file'));
      expect(check).toContain('--check');
    });

    it('runs with flags the agent accepts, reading the archive at /archive', () => {
      expect(cmd[0]).toBe('run');
      for (const flag of flagsOf(cmd)) expect(Object.keys(RUN_OPTIONS), flag).toContain(flag.slice(2));
      expect(flagValue(cmd, '--archive')).toBe('/archive');
      const entrypoint = jsonArray(instruction(stage.lines, 'ENTRYPOINT')[0]);
      expect(existsSync(join(ROOT, entrypoint[1].replace('/app/', '')))).toBe(true);
    });
  });
});
