/** Process checks shared by the tests that start real processes. */
import { readFileSync } from 'node:fs';

/**
 * Gone means kill(pid, 0) fails with ESRCH, or the process is a zombie: an
 * orphaned grandchild is reaped by init, and some inits (this sandbox's)
 * never reap; a zombie runs nothing and holds nothing but its pid.
 */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
