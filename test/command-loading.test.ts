/**
 * tools/commands/for-argv.ts registers only the command a command line names
 * (issue 10: start-up memory and time). Each entry must register exactly the
 * top-level command of that name, with the same subcommands as the full
 * registration, and every top-level command must have an entry, so that none
 * quietly pays for loading all the others.
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMAND_LOADERS, registerCommandsFor } from '../tools/commands/for-argv.js';
import { registerCommands } from '../tools/commands/index.js';

function full(): Command {
  const program = new Command('vmsnap');
  registerCommands(program);
  return program;
}

const subcommands = (command: Command | undefined) => command?.commands.map((c) => c.name()) ?? [];

/** Every leaf command's path and options, so a command loaded alone offers exactly what the full registration does (--key-file too). */
function optionsByLeaf(command: Command | undefined, path = ''): string[] {
  if (!command) return [];
  const here = `${path} ${command.name()}`.trim();
  if (command.commands.length === 0) return [`${here}: ${command.options.map((o) => o.flags).join(' ')}`];
  return command.commands.flatMap((sub) => optionsByLeaf(sub, here));
}

describe('registering only the named command', () => {
  it('has an entry for every top-level command', () => {
    expect(Object.keys(COMMAND_LOADERS).sort()).toEqual(
      full()
        .commands.map((c) => c.name())
        .sort(),
    );
  });

  for (const name of Object.keys(COMMAND_LOADERS)) {
    it(`${name}: registers that command alone, with the same subcommands`, async () => {
      const program = new Command('vmsnap');
      await registerCommandsFor(program, ['node', 'vmsnap', name]);
      expect(program.commands.map((c) => c.name())).toEqual([name]);
      expect(subcommands(program.commands[0])).toEqual(subcommands(full().commands.find((c) => c.name() === name)));
      expect(optionsByLeaf(program.commands[0])).toEqual(optionsByLeaf(full().commands.find((c) => c.name() === name)));
    });
  }

  it('offers --key-file on the commands that read a snapshot, not on those that make their own guest or read a core', () => {
    const leaves = full().commands.flatMap((command) => optionsByLeaf(command));
    const withKey = (path: string) => leaves.some((leaf) => leaf.startsWith(`${path}: `) && leaf.includes('--key-file'));
    for (const path of ['info', 'restore', 'verify', 'tags dump', 'export core', 'push', 'save']) expect(withKey(path), path).toBe(true);
    for (const path of ['demo', 'run', 'migrate send', 'migrate receive', 'import core']) expect(withKey(path), path).toBe(false);
  });

  it('registers every command for no command, an option or an unknown name', async () => {
    for (const argv of [
      ['node', 'vmsnap'],
      ['node', 'vmsnap', '--help'],
      ['node', 'vmsnap', 'nosuch'],
    ]) {
      const program = new Command('vmsnap');
      await registerCommandsFor(program, argv);
      expect(program.commands.length).toBe(full().commands.length);
    }
  });
});
