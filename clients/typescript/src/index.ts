/**
 * `@murmuration/client`: TypeScript clients of Murmuration.
 *
 * * {@link HeliosClient}: Helios-Starling over WebSocket `/starling`;
 * * {@link ChatClient}: GradAgenda chat over WebSocket `/chat`;
 * * {@link TimeStickClient}: TimeStick over HTTP `/timestick/…`.
 *
 * No runtime dependency: browsers and React Native have `WebSocket` and `fetch`; on Node 20
 * pass a WebSocket implementation (`import { WebSocket } from "ws"`) as the `WebSocket` option.
 *
 * @module
 */

export * from "./errors.js";
export { Emitter, type EventMap, type Listener } from "./events.js";
export {
  type ConnectionOptions,
  type ConnectionState,
  type StateChange,
  type WebSocketConstructor,
  type WebSocketLike,
  FATAL_CLOSE_CODES,
} from "./connection.js";
export { type BackoffOptions, type Provider, type Timing, type TokenProvider, backoffDelay, uuid } from "./util.js";
export * from "./helios.js";
export * from "./chat.js";
export * from "./timestick.js";
