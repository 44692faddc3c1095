// Per-process memory: Hub endpoints that just failed, and repos we already warned about.

const UNREACHABLE_TTL_MS = 60_000;
const unreachableUntil = new Map<string, number>();
const warned = new Set<string>();

/** Remember that `hubUrl` failed at the network level, so cached files skip it for a minute. */
export function markUnreachable(hubUrl: string): void {
  unreachableUntil.set(hubUrl, Date.now() + UNREACHABLE_TTL_MS);
}

export function markReachable(hubUrl: string): void {
  unreachableUntil.delete(hubUrl);
}

export function recentlyUnreachable(hubUrl: string): boolean {
  const until = unreachableUntil.get(hubUrl);
  return until !== undefined && until > Date.now();
}

/** console.warn once per key for the life of the process. */
export function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(message);
}

/** Forget failures and warnings (tests, or after reconnecting). */
export function resetHubSession(): void {
  unreachableUntil.clear();
  warned.clear();
}
