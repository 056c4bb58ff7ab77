/**
 * Where a migration stream goes and comes from, named as QEMU names its
 * migration URIs: `-` (standard output or input, for a pipe or ssh),
 * `tcp:HOST:PORT` and `unix:PATH`. The source connects (`--to`), the
 * destination listens (`--listen`, like QEMU's `-incoming` or CRIU's page
 * server) and takes exactly one connection; port 0 lets the system choose,
 * and the chosen address is printed so a script can hand it to the source.
 * Over a socket the destination answers (accepted with its state digest, or
 * refused and why), as QEMU's return path does; a pipe has no way back.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import type { StateDigest } from '../../src/live/state-digest.js';
import { CliError } from '../cli-support.js';
import { parseInteger } from '../units.js';

export type Endpoint =
  | { readonly kind: 'stdio' }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** Parses `-`, `tcp:HOST:PORT` (HOST may be [IPv6]) or `unix:PATH`; `option` names the option in errors. */
export function parseEndpoint(text: string, option: string): Endpoint {
  if (text === '-') return { kind: 'stdio' };
  if (text.startsWith('unix:') && text.length > 5) return { kind: 'unix', path: text.slice(5) };
  const tcp = /^tcp:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d+)$/.exec(text);
  if (tcp) {
    const host = tcp[1].startsWith('[') ? tcp[1].slice(1, -1) : tcp[1];
    return { kind: 'tcp', host, port: parseInteger(tcp[2], `${option} port`, 0, 65535) };
  }
  throw new CliError(`${option}: "${text}" is not -, tcp:HOST:PORT or unix:PATH`, 'usage');
}

export function describeEndpoint(endpoint: Endpoint): string {
  if (endpoint.kind === 'stdio') return '-';
  if (endpoint.kind === 'unix') return `unix:${endpoint.path}`;
  return `tcp:${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
}

/** Settles once `socket` connected, or with its error (ECONNREFUSED: nobody listens there). */
export async function connectTo(endpoint: Exclude<Endpoint, { kind: 'stdio' }>): Promise<Socket> {
  if (endpoint.kind === 'tcp' && endpoint.port === 0) throw new CliError('--to: a tcp destination needs its port, not 0', 'usage');
  const socket =
    endpoint.kind === 'tcp'
      ? tcpConnect({ host: endpoint.host, port: endpoint.port, allowHalfOpen: true })
      : tcpConnect({ path: endpoint.path, allowHalfOpen: true });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
      socket.once('error', reject);
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      throw new CliError(
        `--to ${describeEndpoint(endpoint)}: nothing listens there (${code}); start \`vmsnap migrate receive --listen\` first`,
        'io',
      );
    }
    throw error;
  }
  return socket;
}

/** A listening socket that hands over its first connection and then stops listening. */
export interface Listener {
  /** Where it listens, with the port the system chose for port 0. */
  readonly address: Endpoint;
  accept(): Promise<Socket>;
  close(): void;
}

export async function listenOn(endpoint: Exclude<Endpoint, { kind: 'stdio' }>): Promise<Listener> {
  const server: Server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const listening = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (endpoint.kind === 'tcp') server.listen({ host: endpoint.host, port: endpoint.port, exclusive: true }, listening);
    else server.listen({ path: endpoint.path, exclusive: true }, listening);
  });
  const bound = server.address();
  const address: Endpoint =
    endpoint.kind === 'tcp' && bound !== null && typeof bound === 'object'
      ? { kind: 'tcp', host: endpoint.host, port: bound.port }
      : endpoint;
  const first = new Promise<Socket>((resolve, reject) => {
    server.once('connection', (socket: Socket) => {
      // One source per destination: later connections are refused (a unix socket's path goes with the server).
      server.close();
      resolve(socket);
    });
    server.once('error', reject);
  });
  first.catch(() => undefined);
  return { address, accept: () => first, close: () => server.close() };
}

/**
 * What a destination answers its source over a socket, once it is done with the stream: one JSON line, then the
 * end of the connection. A pipe has no way back, so over `-` the source learns nothing and each side reports alone.
 */
export type DestinationAnswer =
  | { readonly accepted: true; readonly state: StateDigest; readonly guest?: string }
  | { readonly accepted: false; readonly code: string; readonly message: string };

/** How long a refusing destination keeps reading, so that its answer reaches a source still sending, not a reset. */
const DRAIN_MS = 10_000;

/** Sends `answer` and ends the connection. A refusal keeps reading (and dropping) what still comes until the source closes. */
export async function answerSource(socket: Socket, answer: DestinationAnswer): Promise<void> {
  if (socket.destroyed) return;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  socket.end(`${JSON.stringify(answer)}\n`);
  if (answer.accepted) {
    await new Promise<void>((resolve) => socket.once('finish', () => resolve()));
    socket.destroy();
    return;
  }
  // The receiver's reader stopped at the bad frame and left its 'readable' listener, which would keep the socket paused.
  socket.removeAllListeners('readable');
  socket.on('data', () => undefined);
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), DRAIN_MS);
  await closed;
  clearTimeout(timer);
}

/** The destination's answer as it arrives on `socket` (while the source still sends, for a refusal); null if none came. */
export function destinationAnswer(socket: Socket): Promise<DestinationAnswer | null> {
  return new Promise((resolve) => {
    let text = '';
    const settle = (): void => {
      const line = text.split('\n')[0];
      try {
        const answer = JSON.parse(line) as DestinationAnswer;
        resolve(typeof answer === 'object' && answer !== null && typeof answer.accepted === 'boolean' ? answer : null);
      } catch {
        resolve(null);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      // Bounded: an answer is one short line.
      if (text.includes('\n') || text.length > 64 * 1024) settle();
    });
    socket.once('close', settle);
    socket.once('end', settle);
  });
}
