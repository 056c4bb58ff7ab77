/** Every subcommand module registers itself on the program here, one line each. */
import type { Command } from 'commander';

export function registerCommands(program: Command): void {
  void program;
}
