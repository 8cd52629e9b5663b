/**
 * How a worker learns that its launcher died (SIGKILL, the OOM killer), with
 * no native code: the launcher gives each worker one end of a socket pair as
 * file descriptor 3 and never writes to it. The kernel closes the launcher's
 * end when the launcher dies, however it dies, and the worker's end reads
 * EOF at once; the worker then kills its process group (itself and whatever
 * it spawned), as the launcher would have.
 *
 * The worker-side watch is a preload, passed in NODE_OPTIONS as
 * `--import=data:...`, rather than code in initProcessGroup(): it runs before
 * the first line of any Node worker (one stuck in its imports, or one that
 * never joins a process group, is covered too), in Node programs started
 * through a shell as well, and as a data: URL it needs no file on disk, so it
 * works the same from the compiled package and from the sources. Programs
 * that are not Node (a shell script's own process) are not watched; only
 * their Node descendants are.
 *
 * The preload acts only where WIDEEP_LAUNCHER_FD names a socket, and takes
 * itself out of the environment (that variable and its NODE_OPTIONS entry)
 * so that what the worker spawns does not watch a descriptor that is not its
 * own.
 */

/** The worker's descriptor for its end of the pipe (after stdin, stdout, stderr). */
export const WATCH_FD = 3;
export const LAUNCHER_FD_VAR = 'WIDEEP_LAUNCHER_FD';
/** Marks the preload's NODE_OPTIONS entry, so that it can find and remove itself. */
const MARK = 'wideep-launcher-watch';

const PRELOAD = `// ${MARK}
import { Socket } from 'node:net';
import { fstatSync, readFileSync } from 'node:fs';
const fd = Number(process.env.${LAUNCHER_FD_VAR});
delete process.env.${LAUNCHER_FD_VAR};
const options = (process.env.NODE_OPTIONS ?? '').replace(/\\s*--import=data:text\\/javascript,\\S*${MARK}\\S*/, '').trim();
if (options) process.env.NODE_OPTIONS = options;
else delete process.env.NODE_OPTIONS;
let isSocket = false;
try { isSocket = fd > 2 && fstatSync(fd).isSocket(); } catch {}
if (isSocket) {
  const pipe = new Socket({ fd, readable: true, writable: false });
  pipe.on('error', () => {});
  pipe.on('data', () => {});
  pipe.once('close', () => {
    let group = process.pid;
    try {
      const stat = readFileSync('/proc/self/stat', 'latin1');
      group = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    } catch {}
    try { process.kill(-group, 'SIGKILL'); } catch {}
    process.kill(process.pid, 'SIGKILL');
  });
  pipe.unref();
}
`;

/** The variables that install the watch in a worker, on top of `env`. */
export function launcherWatchEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const preload = `--import=data:text/javascript,${encodeURIComponent(PRELOAD)}`;
  return {
    [LAUNCHER_FD_VAR]: String(WATCH_FD),
    NODE_OPTIONS: env.NODE_OPTIONS ? `${env.NODE_OPTIONS} ${preload}` : preload,
  };
}
