// token-auth (JavaScript): connect, publish and play only with a token listed in
// `settings.tokens`, like the Rust guests/token-auth. The token is the first extra connect
// argument (`ffmpeg -rtmp_conn S:tok`, `rtmpdump -C S:tok`) or `token=` in the connect URL's
// query or the stream name's query.
//
// Settings: `tokens = ["..."]`; `connect_token = "optional"` lets clients connect without a
// token and present it with the stream name instead (`play("key?token=...")`);
// `decide_after_ms = N` answers connects `pending` and decides N ms later from a timer, the way
// an app waiting for an external auth service would.
//
// Client-callable `whoami()` answers what the host knows about the caller; `remember(key,
// value)` / `recall(key)` use the instance's key-value store (connects are counted there too,
// `connects()` reads the count).
//
// Build: scripts/build-js-guest.sh guests/js/token-auth
import { Access, App, Connect, exportApp, host, queryParam } from '../sdk/wasmgate.js';

class TokenAuth extends App {
  tokens = [];
  optionalAtConnect = false;
  decideAfterMs = 0;
  /** Clients that presented a valid token at connect: id -> token. */
  authorized = new Map();

  start(app, instance, settings) {
    if (!Array.isArray(settings.tokens)) {
      throw new Error('settings.tokens must be an array of strings');
    }
    this.tokens = settings.tokens.filter((t) => typeof t === 'string');
    this.optionalAtConnect = settings.connect_token === 'optional';
    this.decideAfterMs = Math.min(Number(settings.decide_after_ms) || 0, 60000);
    host.info(`token-auth (JS) started for ${app}/${instance} with ${this.tokens.length} tokens`);
  }

  valid(token) {
    return typeof token === 'string' && token !== '' && this.tokens.includes(token);
  }

  checkConnect(client, args) {
    const token = typeof args[0] === 'string' ? args[0] : queryParam(client.query, 'token');
    if (token === undefined) {
      return this.optionalAtConnect ? Connect.accept : Connect.reject('Missing token.');
    }
    if (!this.valid(token)) {
      host.warn(`client ${client.id} (${client.address}): invalid token`);
      return Connect.reject('Invalid token.');
    }
    this.authorized.set(client.id, token);
    return Connect.accept;
  }

  onConnect(client, args) {
    const n = Number(host.kv.get('connects') ?? '0') + 1;
    host.kv.set('connects', String(n));
    const decision = this.checkConnect(client, args);
    if (this.decideAfterMs === 0) return decision;
    // Decided later from a timer, as an app asking an external auth service would.
    host.setTimeout(() => {
      if (decision.tag === 'reject') host.reject(client.id, decision.val);
      else host.accept(client.id);
    }, this.decideAfterMs);
    return Connect.pending;
  }

  onDisconnect(client) {
    this.authorized.delete(client);
  }

  streamAccess(client, query) {
    if (this.authorized.has(client)) return Access.allow;
    const token = queryParam(query, 'token');
    if (token === undefined) return Access.deny('Missing token.');
    return this.valid(token) ? Access.allow : Access.deny('Invalid token.');
  }

  onPublish(client, stream, query) {
    return this.streamAccess(client, query);
  }

  onPlay(client, stream, query) {
    return this.streamAccess(client, query);
  }

  methods = {
    whoami(client) {
      return host.client(client) ?? null;
    },
    connects() {
      return Number(host.kv.get('connects') ?? '0');
    },
    remember(client, key, value) {
      if (typeof key !== 'string' || typeof value !== 'string') {
        throw new Error('remember(key, value) takes two strings');
      }
      host.kv.set(key, value);
      return null;
    },
    recall(client, key) {
      return host.kv.get(String(key)) ?? null;
    },
  };
}

export const guest = exportApp(new TokenAuth());
