/** The xDS parts of the command line: usage errors (exit 2) and help. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../../examples/dubbo/harness.js';

function run(...args: string[]): { code: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [cliPath(), ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe('waypost CLI: control and proxy --xds', () => {
  it('lists the commands and options in --help', () => {
    const r = run('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('proxy --xds HOST:PORT');
    expect(r.stdout).toContain('control --config PATH... --xds-listen HOST:PORT');
    expect(r.stdout).toContain('--node ID');
  });

  it.each([
    [['control', '--config', '.'], /control needs --xds-listen HOST:PORT/],
    [['control', '--xds-listen', '127.0.0.1:1'], /control needs --config PATH/],
    [['control', '--config', '.', '--xds-listen', 'nowhere'], /--xds-listen wants HOST:PORT, not "nowhere"/],
    [['control', '--config', '.', '--xds-listen', '127.0.0.1:1', '--node', 'x'], /--xds and --node are options of proxy/],
    [['proxy', '--xds', '127.0.0.1:1', '--config', '.'], /either --config PATH\.\.\. or --xds HOST:PORT, not both/],
    [['proxy', '--xds', 'host-without-port'], /--xds wants HOST:PORT/],
    [['proxy', '--xds', 'unix:'], /--xds wants unix:PATH with a path, not "unix:"/],
    [['control', '--config', '.', '--xds-listen', 'unix://'], /--xds-listen wants unix:PATH with a path/],
    [['proxy', '--config', '.', '--node', 'n'], /--node goes with --xds/],
    [['proxy', '--xds', '127.0.0.1:1', '--bind', '0.0.0.0'], /--bind goes with --config/],
    [['proxy', '--config', '.', '--xds-listen', '127.0.0.1:1'], /--xds-listen is an option of control/],
    [['proxy'], /proxy needs --config PATH .* or --xds HOST:PORT/],
  ])('%j is a usage error', (args, message) => {
    const r = run(...args);
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(2);
  });
});
