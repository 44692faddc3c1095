// The lessons' and exercises' loading rule: the Hub model (or its cached copy) when it can be had, else a small
// model shipped in datasets/, saying which. Only a HubError (offline, not cached, unreachable) falls back; any
// other error (a broken file, a bad config) is thrown as it is.
import { HubError } from "../hub/errors.js";

export interface Loaded<P> {
  pipe: P;
  /** the Hub id or the folder the pipeline came from */
  source: string;
  /** true when the Hub model could not be had and `offlineFolder` was loaded */
  offline: boolean;
}

/** `cls.fromPretrained(hubId)`, else `cls.fromPretrained(offlineFolder)`; logs which (and why) unless `quiet`. */
export async function fromPretrainedOrOffline<P>(cls: { fromPretrained(idOrPath: string): Promise<P> }, hubId: string, offlineFolder: string,
  opts: { quiet?: boolean } = {}): Promise<Loaded<P>> {
  try {
    return { pipe: await cls.fromPretrained(hubId), source: hubId, offline: false };
  } catch (e) {
    if (!(e instanceof HubError)) throw e;
    if (!opts.quiet) console.log(`Could not load ${hubId}: ${e.message.split("\n")[0]}\nUsing ${offlineFolder} instead (see its README.md).`);
    return { pipe: await cls.fromPretrained(offlineFolder), source: offlineFolder, offline: true };
  }
}
