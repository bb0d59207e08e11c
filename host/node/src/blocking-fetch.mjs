/**
 * Synchronous HTTP for synchronous component imports.
 *
 * jco calls `proxy.send` synchronously, and its async mode needs JSPI, which
 * Node 20 does not have. So a worker thread does the `fetch`, and the main
 * thread blocks in `Atomics.wait` on a shared flag until the worker has
 * posted the answer, which it then takes with `receiveMessageOnPort` (no
 * event-loop turn needed). On loopback this costs about a millisecond per
 * attempt, against 130-270 ms for a `child_process.execFileSync` per request.
 */
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';

/** How long past its own timeout the worker may be silent before we give up on it. */
const WORKER_GRACE_MS = 5_000;

export class BlockingFetch {
  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.signal = new Int32Array(new SharedArrayBuffer(4));
    this.worker = new Worker(new URL('./fetch-worker.mjs', import.meta.url), {
      workerData: { port: port2, signal: this.signal },
      transferList: [port2],
    });
    // The worker must not keep the process alive once the run is over.
    this.worker.unref();
    this.port.unref();
    this.nextId = 0;
  }

  /**
   * One HTTP attempt, blocking the calling thread until it completes.
   *
   * @param {{ url: string, method: string, headers: [string, string][], body?: Uint8Array,
   *           timeoutMs: number, maxBodyBytes: number }} request
   * @returns {{ ok: true, status: number, headers: [string, string][], body: ArrayBuffer }
   *         | { ok: false, kind: 'timeout' | 'connection-failed' | 'limit', message: string }}
   */
  request(request) {
    // Ids let a late answer to an attempt we gave up on be told apart.
    const id = ++this.nextId;
    Atomics.store(this.signal, 0, 0);
    this.port.postMessage({ ...request, id });
    const deadline = Date.now() + request.timeoutMs + WORKER_GRACE_MS;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        return { ok: false, kind: 'timeout', message: `the HTTP worker did not answer within ${request.timeoutMs} ms` };
      }
      Atomics.wait(this.signal, 0, 0, left);
      // The worker posts before it flips the flag, so the message is normally
      // there; if not yet visible, wait again (the flag stays 1: a short spin).
      // A stale answer flipped the flag too: reset it before waiting again.
      Atomics.store(this.signal, 0, 0);
      let received;
      while ((received = receiveMessageOnPort(this.port))) {
        if (received.message.id === id) return received.message;
      }
    }
  }

  close() {
    this.port.close();
    return this.worker.terminate();
  }
}

/** Blocks the thread for `ms` milliseconds (backoff between retries). */
export function sleepSync(ms) {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
