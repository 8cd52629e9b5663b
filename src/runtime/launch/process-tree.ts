/**
 * Signals to a worker's whole process group, and the last sweep of what a
 * worker leaves behind. Each worker leads its own group (spawned detached),
 * so a group signal reaches whatever it spawned too.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** How often the final sweep looks whether a worker's leftover processes have gone (no event exists for them). */
const SWEEP_INTERVAL_MS = 50;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Sends `signal` to a whole process group; false when the group is gone. */
export function signalGroup(pgid: number | undefined, signal: NodeJS.Signals | 0): boolean {
  if (pgid === undefined) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether any process of the group still lives. A zombie does not count: an
 * orphan that has died waits for init to reap it, and some inits (in
 * containers, often) never do. Linux's /proc tells them apart; without it,
 * any member counts.
 */
export function groupAlive(pgid: number | undefined): boolean {
  if (!signalGroup(pgid, 0)) return false;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return true;
  }
  for (const pid of pids) {
    try {
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
    } catch {
      // it exited meanwhile
    }
  }
  return false;
}

/**
 * The last step: whatever is left in a worker's process group (the worker
 * is gone, something it spawned may not be) gets SIGTERM, and SIGKILL once
 * the grace since the first SIGTERM has run out.
 */
export async function sweep(pgids: readonly (number | undefined)[], termSentAt: number | undefined, graceMs: number): Promise<void> {
  let left = pgids.filter(groupAlive);
  if (left.length === 0) return;
  if (termSentAt === undefined) {
    for (const pgid of left) signalGroup(pgid, 'SIGTERM');
    termSentAt = Date.now();
  }
  while (left.length > 0 && Date.now() - termSentAt < graceMs) {
    await sleep(SWEEP_INTERVAL_MS);
    left = left.filter(groupAlive);
  }
  for (const pgid of left) signalGroup(pgid, 'SIGKILL');
}
