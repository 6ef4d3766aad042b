/**
 * A small typed event emitter (no dependency on Node's `events`).
 *
 * @module
 */
/** Subscribe with `on`, unsubscribe with the returned function or `off`. */
export class Emitter {
    #listeners = new Map();
    /** Adds a listener; returns a function that removes it. */
    on(event, listener) {
        let set = this.#listeners.get(event);
        if (!set) {
            set = new Set();
            this.#listeners.set(event, set);
        }
        set.add(listener);
        return () => this.off(event, listener);
    }
    /** Adds a listener called once. */
    once(event, listener) {
        const off = this.on(event, (v) => {
            off();
            listener(v);
        });
        return off;
    }
    /** Removes a listener. */
    off(event, listener) {
        this.#listeners.get(event)?.delete(listener);
    }
    /** Calls every listener of `event`; a throwing listener does not stop the others. */
    emit(event, value) {
        const set = this.#listeners.get(event);
        if (!set)
            return;
        for (const l of [...set]) {
            try {
                l(value);
            }
            catch (e) {
                queueMicrotask(() => {
                    throw e;
                });
            }
        }
    }
}
