// chat (JavaScript): a chat room per instance, like the Rust guests/chat. Client-callable
// `join(name)`, `say(text)`, `leave()` and `members()`; every message is pushed to each member
// with `onMessage(from, text)`. `ask(name, question)` calls `ask(question)` on that member with
// a responder; the answer comes back to the asker as `onMessage(name, answer)`.
// `announce(text)` broadcasts `onAnnounce(text)` to every client of the instance, members or
// not; `remind(ms, text)` sends the caller `onMessage("server", text)` after `ms` (a timer).
//
// The member list is the temporary shared object `members` (nickname -> client id): clients
// using it see people join and leave as `onSync` changes. Only the app writes it: a client's
// change is denied. Other shared objects of the room are the clients' own, moderated: string
// values and `SharedObject.send` texts get the words in `settings.banned` masked with `***`,
// texts longer than `settings.max_text` (default 1024 bytes) are refused. Data messages a
// publisher sends with its stream (`NetStream.send("onChat", text)`, ffmpeg's `onTextData`) are
// moderated the same way on their way to the players.
//
// Build: scripts/build-js-guest.sh guests/js/chat
import { App, Data, SharedObject, SoChange, exportApp, host } from '../sdk/wasmgate.js';

const MEMBERS = 'members';
const MAX_QUESTIONS = 1000;
const MAX_REMINDERS = 1000;

const membersSo = () => SharedObject.temporary(MEMBERS);

/** Every member as [name, client id], read from the `members` shared object. */
function members() {
  const so = membersSo();
  const out = [];
  for (const name of so.keys()) {
    const id = so.get(name);
    if (typeof id === 'number') out.push([name, id]);
  }
  return out;
}

function nameOf(client) {
  const m = members().find(([, id]) => id === client);
  return m === undefined ? undefined : m[0];
}

function tellAll(from, text) {
  for (const [, id] of members()) {
    try {
      host.call(id, 'onMessage', from, text);
    } catch {
      // A member that left between the two calls is simply skipped.
    }
  }
}

/** Masks every banned word (case-insensitive) with `***`. */
function mask(text, banned) {
  let out = text;
  for (const word of banned) {
    if (word === '') continue;
    let from = 0;
    for (;;) {
      const at = out.toLowerCase().indexOf(word, from);
      if (at < 0) break;
      out = out.slice(0, at) + '***' + out.slice(at + word.length);
      from = at + 3;
    }
  }
  return out;
}

const byteLength = (s) => new TextEncoder().encode(s).length;

class Chat extends App {
  banned = [];
  maxText = 1024;
  /** Questions in flight: call id -> asker. */
  asked = new Map();
  reminders = 0;

  start(app, instance, settings) {
    const banned = settings.banned ?? [];
    if (!Array.isArray(banned) || !banned.every((w) => typeof w === 'string')) {
      throw new Error('settings.banned must be a list of words');
    }
    this.banned = banned.map((w) => w.toLowerCase());
    const max = settings.max_text ?? 1024;
    if (typeof max !== 'number' || !(max >= 0)) {
      throw new Error('settings.max_text must be a number');
    }
    this.maxText = max;
  }

  /** `text` moderated: undefined when too long, else with banned words masked. */
  moderate(text) {
    return byteLength(text) <= this.maxText ? mask(text, this.banned) : undefined;
  }

  methods = {
    join(client, name) {
      if (typeof name !== 'string' || name === '' || name.length > 64) {
        throw new Error('join(name): name must be 1 to 64 characters');
      }
      const so = membersSo();
      if (so.get(name) !== undefined) throw new Error(`The name ${name} is taken.`);
      const old = nameOf(client);
      if (old !== undefined) so.delete(old);
      so.set(name, client);
      tellAll('server', `${name} joined`);
      return { members: members().map(([n]) => n) };
    },
    say(client, text) {
      const name = nameOf(client);
      if (name === undefined) throw new Error('Join the room first.');
      const t = typeof text === 'string' ? text : '';
      if (byteLength(t) > 1024) throw new Error('Messages are limited to 1024 bytes.');
      tellAll(name, t);
      return true;
    },
    leave(client) {
      const name = nameOf(client);
      if (name === undefined) throw new Error('Not in the room.');
      membersSo().delete(name);
      tellAll('server', `${name} left`);
      return true;
    },
    members() {
      return members().map(([n]) => n);
    },
    ask(client, who, question) {
      const target = members().find(([n]) => n === who);
      if (target === undefined) throw new Error(`No member named ${who}.`);
      if (this.asked.size >= MAX_QUESTIONS) throw new Error('Too many questions in flight.');
      const id = host.callWithResult(target[1], 'ask', question ?? null);
      this.asked.set(id, client);
      return id;
    },
    announce(client, text) {
      host.broadcast('onAnnounce', String(text ?? ''));
      return true;
    },
    remind(client, ms, text) {
      if (this.reminders >= MAX_REMINDERS) throw new Error('Too many reminders.');
      this.reminders += 1;
      host.setTimeout(() => {
        this.reminders -= 1;
        try {
          host.call(client, 'onMessage', 'server', String(text ?? ''));
        } catch {
          // Gone before the reminder.
        }
      }, Math.min(Number(ms) || 0, 60000));
      return true;
    },
  };

  onCallResult(client, callId, ok, value) {
    const asker = this.asked.get(callId);
    if (asker === undefined) return;
    this.asked.delete(callId);
    const from = nameOf(client) ?? '';
    const text = !ok ? '(no answer)' : typeof value === 'string' ? value : JSON.stringify(value);
    try {
      host.call(asker, 'onMessage', from, text);
    } catch {
      // The asker left.
    }
  }

  onDisconnect(client) {
    const name = nameOf(client);
    if (name !== undefined && membersSo().delete(name)) tellAll('server', `${name} left`);
  }

  onData(client, stream, handler, args) {
    // `NetStream.send("onChat", "text")` or ffmpeg's `onTextData({type, text})`.
    const first = args[0];
    let text;
    let put;
    if (typeof first === 'string') {
      text = first;
      put = (t) => [t, ...args.slice(1)];
    } else if (first && typeof first === 'object' && typeof first.text === 'string') {
      text = first.text;
      put = (t) => [{ ...first, text: t }, ...args.slice(1)];
    } else {
      return Data.relay;
    }
    const masked = this.moderate(text);
    if (masked === undefined) {
      host.info(`${handler}: ${byteLength(text)} bytes of text dropped`);
      return Data.drop;
    }
    return masked === text ? Data.relay : Data.rewrite(put(masked));
  }

  onSoChange(client, so, key, value) {
    if (so.name === MEMBERS) return SoChange.deny(`${MEMBERS} is kept by the server`);
    if (typeof value !== 'string') return SoChange.allow;
    const masked = this.moderate(value);
    if (masked === undefined) return SoChange.deny(`${key}: ${byteLength(value)} bytes of text`);
    return masked === value ? SoChange.allow : SoChange.rewrite(masked);
  }

  onSoSend(client, so, handler, args) {
    if (typeof args[0] !== 'string') return Data.relay;
    const masked = this.moderate(args[0]);
    if (masked === undefined) {
      host.info(`${handler}: ${byteLength(args[0])} bytes of text dropped`);
      return Data.drop;
    }
    return masked === args[0] ? Data.relay : Data.rewrite([masked, ...args.slice(1)]);
  }
}

export const guest = exportApp(new Chat());
