// The wasmgate JavaScript guest SDK: maps the `guest` exports of wit/app.wit to the methods of one
// class and wraps the `host` imports, so an app reads like a `main.asc` with plain JS values.
//
// AMF values arrive and leave as plain JS values (objects, arrays, numbers, strings, booleans,
// null): the host speaks JSON text at the boundary and this module parses and stringifies it.
// Client, timer and call ids are u64 in WIT (BigInt in componentize-js); apps see them as
// Numbers, which hold them exactly (the host counts from 1).
import * as h from 'wasmgate:app/host@0.1.0';

/** The answer to a connect: return one of these from `onConnect`. */
export const Connect = Object.freeze({
  accept: Object.freeze({ tag: 'accept' }),
  /** Decide later with `host.accept` / `host.reject` / `host.redirect`. */
  pending: Object.freeze({ tag: 'pending' }),
  reject: (description) => ({ tag: 'reject', val: String(description) }),
  redirect: (url, description = '') => ({
    tag: 'redirect',
    val: { url: String(url), description: String(description) },
  }),
});

/** The answer to a publish, play or shared-object connect. */
export const Access = Object.freeze({
  allow: Object.freeze({ tag: 'allow' }),
  deny: (description) => ({ tag: 'deny', val: String(description) }),
});

/** The answer to a data message or a shared-object send. */
export const Data = Object.freeze({
  relay: Object.freeze({ tag: 'relay' }),
  drop: Object.freeze({ tag: 'drop' }),
  /** Relay with these arguments (an array) instead; the handler name stays. */
  rewrite: (args) => ({ tag: 'rewrite', val: JSON.stringify(Array.from(args)) }),
});

/** The answer to a client's change of a shared-object slot. */
export const SoChange = Object.freeze({
  allow: Object.freeze({ tag: 'allow' }),
  deny: (reason) => ({ tag: 'deny', val: String(reason) }),
  /** Apply this value instead. */
  rewrite: (value) => ({ tag: 'rewrite', val: JSON.stringify(value ?? null) }),
});

/** The text of whatever a host call or a handler threw. */
function message(e) {
  if (typeof e === 'string') return e;
  // componentize-js throws `result` errors from imports as an Error whose `payload` is the text.
  if (e && typeof e.payload === 'string') return e.payload;
  if (e && typeof e.message === 'string') return e.message;
  return String(e);
}

/** Calls a host function returning `result<T, string>`; its error becomes a thrown Error. */
function hostResult(f) {
  try {
    return f();
  } catch (e) {
    throw new Error(message(e));
  }
}

function parse(text, fallback) {
  if (text === undefined || text === '') return fallback;
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

const big = (n) => BigInt(n);
const num = (n) => Number(n);

function clientInfo(c) {
  return {
    id: num(c.id),
    address: c.address,
    transport: c.transport,
    app: c.app,
    instance: c.instance,
    query: c.query,
    tcUrl: c.tcUrl,
    pageUrl: c.pageUrl,
    swfUrl: c.swfUrl,
    flashVer: c.flashVer,
  };
}

/** A shared object of the instance: `temporary("name")` or `persistent("name")`. */
export class SharedObject {
  constructor(name, persistent = false) {
    this.name = String(name);
    this.persistent = Boolean(persistent);
  }
  static temporary(name) {
    return new SharedObject(name, false);
  }
  static persistent(name) {
    return new SharedObject(name, true);
  }
  #wit() {
    return { name: this.name, persistent: this.persistent };
  }
  /** The slot's value, `undefined` when unset. */
  get(key) {
    const v = hostResult(() => h.soGet(this.#wit(), String(key)));
    return v === undefined ? undefined : JSON.parse(v);
  }
  set(key, value) {
    hostResult(() => h.soSet(this.#wit(), String(key), JSON.stringify(value ?? null)));
  }
  /** True when the slot was there. */
  delete(key) {
    return hostResult(() => h.soDelete(this.#wit(), String(key)));
  }
  /** Slot names, sorted. */
  keys() {
    return hostResult(() => h.soKeys(this.#wit()));
  }
  /** `handler(...args)` to every subscriber. */
  send(handler, ...args) {
    hostResult(() => h.soSend(this.#wit(), String(handler), JSON.stringify(args)));
  }
  lock() {
    hostResult(() => h.soLock(this.#wit()));
  }
  unlock() {
    hostResult(() => h.soUnlock(this.#wit()));
  }
}

// Timer callbacks by id. Bounded: a timer the host fires is removed (one-shot) or stays until
// cleared (repeat), and no more than MAX_TIMERS wait at once.
const MAX_TIMERS = 10000;
const timers = new Map();

function startTimer(fn, ms, repeat) {
  if (timers.size >= MAX_TIMERS) throw new Error(`more than ${MAX_TIMERS} timers`);
  const delay = Math.max(0, Math.min(Math.floor(Number(ms) || 0), 0xffffffff));
  const id = num(h.setTimer(delay, repeat));
  if (fn) timers.set(id, { fn, repeat });
  return id;
}

/** What the host offers the app; every call acts on the app's own instance. */
export const host = Object.freeze({
  trace: (msg) => h.log('trace', String(msg)),
  debug: (msg) => h.log('debug', String(msg)),
  info: (msg) => h.log('info', String(msg)),
  warn: (msg) => h.log('warn', String(msg)),
  error: (msg) => h.log('error', String(msg)),
  /** The app.toml `[settings]` table. */
  settings: () => parse(h.settings(), {}),

  /** Decide a connect answered with `Connect.pending`. */
  accept: (client) => h.accept(big(client)),
  reject: (client, description) => h.reject(big(client), String(description)),
  redirect: (client, url, description = '') =>
    h.redirect(big(client), String(url), String(description)),

  /** `Client.call(method, null, ...args)` without a result; throws when the client is gone. */
  call: (client, method, ...args) => {
    hostResult(() => h.callClient(big(client), String(method), JSON.stringify(args), false));
  },
  /** `Client.call` with a responder; the answer arrives in `onCallResult` with the id returned. */
  callWithResult: (client, method, ...args) =>
    num(hostResult(() => h.callClient(big(client), String(method), JSON.stringify(args), true))),
  /** `method(...args)` on every client of the instance. */
  broadcast: (method, ...args) => h.broadcast(String(method), JSON.stringify(args)),
  disconnect: (client, reason = '') => h.disconnect(big(client), String(reason)),

  /**
   * Runs `fn()` once after `ms` (or, without `fn`, calls the app's `onTimer(id)`); returns the
   * id for `clearTimer`.
   */
  setTimeout: (fn, ms) => startTimer(fn, ms, false),
  /** Runs `fn()` every `ms` until `clearTimer`. */
  setInterval: (fn, ms) => startTimer(fn, ms, true),
  clearTimer: (id) => {
    timers.delete(num(id));
    h.clearTimer(big(id));
  },

  /** The instance's key-value store (strings); `get` gives `undefined` for a missing key. */
  kv: Object.freeze({
    get: (key) => h.kvGet(String(key)),
    set: (key, value) => h.kvSet(String(key), String(value)),
    delete: (key) => h.kvDelete(String(key)),
    keys: () => h.kvKeys(),
  }),

  clients: () => Array.from(h.clients(), num),
  /** What the host knows of a client, `undefined` when it is gone. */
  client: (client) => {
    const c = h.getClient(big(client));
    return c === undefined ? undefined : clientInfo(c);
  },
  streams: () => h.streams().map((s) => ({ ...s })),

  /** Records `stream`; returns the file's path under the record folder. */
  recordStart: (stream, name = '') => hostResult(() => h.recordStart(String(stream), String(name))),
  recordStop: (stream) => h.recordStop(String(stream)),
});

/** `name` from a `a=1&b=2` query string, `undefined` when absent. */
export function queryParam(query, name) {
  const q = String(query || '').replace(/^\?/, '');
  if (q === '') return undefined;
  const v = new URLSearchParams(q).get(name);
  return v === null ? undefined : v;
}

/**
 * An application: override the handlers you need. Every one has a default (connects, publishes
 * and plays are allowed, data relayed). Client-callable methods (`NetConnection.call`) go to
 * `onCall`, which by default looks `method` up in `this.methods` ({ name(client, ...args) }).
 * A handler that throws is answered with its message where the contract has an error (start,
 * calls); a decision handler that throws refuses (connect, publish, play, shared-object use and
 * change) or drops (data, shared-object send), logged, so a bug in an auth check fails closed.
 */
export class App {
  start(app, instance, settings) {}
  stop() {}
  onConnect(client, args) {
    return Connect.accept;
  }
  onDisconnect(client) {}
  onPublish(client, stream, query) {
    return Access.allow;
  }
  onUnpublish(client, stream) {}
  onPlay(client, stream, query) {
    return Access.allow;
  }
  onStop(client, stream) {}
  onCall(client, method, args) {
    const methods = this.methods;
    if (methods && Object.hasOwn(methods, method) && typeof methods[method] === 'function') {
      return methods[method].call(this, client, ...args);
    }
    throw new Error(`Method not found (${method}).`);
  }
  onCallResult(client, callId, ok, value) {}
  onTimer(id) {}
  onData(client, stream, handler, args) {
    return Data.relay;
  }
  onSoConnect(client, so) {
    return Access.allow;
  }
  onSoChange(client, so, key, value) {
    return SoChange.allow;
  }
  onSoSend(client, so, handler, args) {
    return Data.relay;
  }
}

/** What a client is told when a decision handler threw. */
const APP_ERROR = 'Application error.';

/**
 * Runs handler `f`: `dflt` when it returns nothing, `failed` (logged) when it throws.
 */
function guarded(what, dflt, failed, f) {
  try {
    const r = f();
    return r === undefined ? dflt : r;
  } catch (e) {
    h.log('error', `${what}: ${message(e)}`);
    return failed;
  }
}

const so = (s) => new SharedObject(s.name, s.persistent);
const list = (text) => {
  const v = parse(text, []);
  return Array.isArray(v) ? v : [];
};

/** The `guest` export for `app` (an instance of an `App` subclass): `export const guest = exportApp(new MyApp())`. */
export function exportApp(app) {
  return {
    start(name, instance, settings) {
      try {
        app.start(name, instance, parse(settings, {}));
      } catch (e) {
        // A thrown string is a `result` error in componentize-js.
        throw message(e);
      }
    },
    stop() {
      guarded('stop', undefined, undefined, () => app.stop());
    },
    // A decision handler that throws fails closed (refused, logged); the others keep the default.
    onConnect(client, args) {
      return guarded('onConnect', Connect.accept, Connect.reject(APP_ERROR), () => app.onConnect(clientInfo(client), list(args)));
    },
    onDisconnect(client) {
      guarded('onDisconnect', undefined, undefined, () => app.onDisconnect(num(client)));
    },
    onPublish(client, stream, query) {
      return guarded('onPublish', Access.allow, Access.deny(APP_ERROR), () => app.onPublish(num(client), stream, query));
    },
    onUnpublish(client, stream) {
      guarded('onUnpublish', undefined, undefined, () => app.onUnpublish(num(client), stream));
    },
    onPlay(client, stream, query) {
      return guarded('onPlay', Access.allow, Access.deny(APP_ERROR), () => app.onPlay(num(client), stream, query));
    },
    onStop(client, stream) {
      guarded('onStop', undefined, undefined, () => app.onStop(num(client), stream));
    },
    onCall(client, method, args) {
      let value;
      try {
        value = app.onCall(num(client), method, list(args));
      } catch (e) {
        throw message(e);
      }
      return JSON.stringify(value ?? null);
    },
    onCallResult(client, callId, ok, value) {
      guarded('onCallResult', undefined, undefined, () =>
        app.onCallResult(num(client), num(callId), ok, parse(value, null)),
      );
    },
    onTimer(id) {
      const n = num(id);
      const t = timers.get(n);
      if (t === undefined) {
        guarded('onTimer', undefined, undefined, () => app.onTimer(n));
        return;
      }
      if (!t.repeat) timers.delete(n);
      guarded('timer', undefined, undefined, () => t.fn());
    },
    onData(client, stream, handler, args) {
      return guarded('onData', Data.relay, Data.drop, () => app.onData(num(client), stream, handler, list(args)));
    },
    onSoConnect(client, s) {
      return guarded('onSoConnect', Access.allow, Access.deny(APP_ERROR), () => app.onSoConnect(num(client), so(s)));
    },
    onSoChange(client, s, key, value) {
      const v = value === undefined ? undefined : parse(value, null);
      return guarded('onSoChange', SoChange.allow, SoChange.deny(APP_ERROR), () => app.onSoChange(num(client), so(s), key, v));
    },
    onSoSend(client, s, handler, args) {
      return guarded('onSoSend', Data.relay, Data.drop, () => app.onSoSend(num(client), so(s), handler, list(args)));
    },
  };
}
