/**
 * The Socket.IO event maps both ends build on. Type-level tests (expectTypeOf, checked by the
 * type check) keep the maps, their zod schemas and the runtime name list in step; the
 * runtime tests check what the gateway relies on from the schemas.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import {
  AckMsg,
  AttachRequest,
  VideoErrorMsg,
  CLIENT_EVENT_NAMES,
  ClientEventSchemas,
  type AttachResult,
  type ClientEventName,
  type ClientEventSchemaMap,
  type ClientToServerEvents,
  type CursorMsg,
  type ErrorResult,
  type ServerStatusMsg,
  type ServerToClientEvents,
  type SessionStatusMsg,
  type ShadowMsg,
  type SessionWarningMsg,
} from '../src/index.js';

type Payload<E extends ClientEventName> = Parameters<ClientToServerEvents[E]>[0];

describe('client → server events', () => {
  it('the runtime list names exactly the events of the map', () => {
    expectTypeOf(CLIENT_EVENT_NAMES).toEqualTypeOf<readonly (keyof ClientToServerEvents)[]>();
    expectTypeOf<keyof typeof ClientEventSchemas>().toEqualTypeOf<keyof ClientToServerEvents>();
    expect([...CLIENT_EVENT_NAMES].sort()).toEqual(
      [
        'ack',
        'attach',
        'audio',
        'clipboard',
        'heartbeat',
        'key',
        'mic',
        'pointer',
        'refresh',
        'resize',
        'videoError',
      ].sort(),
    );
  });

  it('each schema yields exactly the payload type the event declares', () => {
    expectTypeOf<z.infer<typeof ClientEventSchemas.attach>>().toEqualTypeOf<Payload<'attach'>>();
    expectTypeOf<z.infer<typeof ClientEventSchemas.key>>().toEqualTypeOf<Payload<'key'>>();
    expectTypeOf<z.infer<typeof ClientEventSchemas.pointer>>().toEqualTypeOf<Payload<'pointer'>>();
    expectTypeOf<z.infer<typeof ClientEventSchemas.clipboard>>().toEqualTypeOf<
      Payload<'clipboard'>
    >();
    expectTypeOf<z.infer<typeof ClientEventSchemas.ack>>().toEqualTypeOf<Payload<'ack'>>();
    expectTypeOf<z.infer<typeof ClientEventSchemas.resize>>().toEqualTypeOf<Payload<'resize'>>();
    expectTypeOf<z.infer<typeof ClientEventSchemas.videoError>>().toEqualTypeOf<
      Payload<'videoError'>
    >();
    expectTypeOf<z.infer<typeof ClientEventSchemas.mic>>().toEqualTypeOf<Payload<'mic'>>();
    expectTypeOf(ClientEventSchemas.refresh).toEqualTypeOf<null>();
    expectTypeOf(ClientEventSchemas.heartbeat).toEqualTypeOf<null>();
  });

  it('a schema map missing an event, naming an extra one, or mistyping one fails the build', () => {
    const { heartbeat: _dropped, ...missing } = ClientEventSchemas;
    // @ts-expect-error heartbeat is missing
    expectTypeOf(missing).toExtend<ClientEventSchemaMap>();
    // @ts-expect-error `wheel` is no event of ClientToServerEvents
    ({ ...ClientEventSchemas, wheel: null }) satisfies ClientEventSchemaMap;
    // @ts-expect-error the key event's payload is not an attach request
    ({ ...ClientEventSchemas, key: AttachRequest }) satisfies ClientEventSchemaMap;
  });

  it('attach answers through its callback with a result or an error', () => {
    type Reply = Parameters<Parameters<ClientToServerEvents['attach']>[1]>[0];
    expectTypeOf<Reply>().toEqualTypeOf<AttachResult | ErrorResult>();
    expectTypeOf<Parameters<ClientToServerEvents['heartbeat']>>().toEqualTypeOf<[() => void]>();
    expectTypeOf<Parameters<ClientToServerEvents['refresh']>>().toEqualTypeOf<[]>();
  });

  it('every payload schema refuses keys it does not know', () => {
    const valid: { [E in ClientEventName]?: unknown } = {
      attach: { sessionId: 's1' },
      key: { keysym: 0x61, down: true },
      pointer: { x: 1, y: 2, buttons: 0 },
      clipboard: { text: 'hi' },
      ack: { seq: 1 },
      resize: { width: 800, height: 600 },
      videoError: { regionId: 0, reason: 'EncodingError: decode failed' },
      audio: { codec: 'opus' },
      // binary: a spread copy is a plain object, which the schema refuses like an extra key
      mic: new Uint8Array(640),
    };
    for (const name of CLIENT_EVENT_NAMES) {
      const schema = ClientEventSchemas[name];
      if (!schema) continue;
      const payload = valid[name] as Record<string, unknown>;
      expect(schema.safeParse(payload).success, name).toBe(true);
      expect(schema.safeParse({ ...payload, extra: 1 }).success, name).toBe(false);
    }
    expect(AckMsg.safeParse({ seq: -1 }).success).toBe(false);
    // video capability: only codec families the server knows, each once at most
    expect(AttachRequest.safeParse({ sessionId: 's', video: ['avc1'] }).success).toBe(true);
    expect(AttachRequest.safeParse({ sessionId: 's', video: ['theora'] }).success).toBe(false);
    expect(AttachRequest.safeParse({ sessionId: 's', video: ['avc1', 'avc1'] }).success).toBe(
      false,
    );
    expect(VideoErrorMsg.safeParse({ regionId: 0, reason: 'x'.repeat(501) }).success).toBe(false);
  });
});

describe('server → client events', () => {
  it('carries frames as bytes and everything else as typed messages', () => {
    expectTypeOf<Parameters<ServerToClientEvents['frame']>>().toEqualTypeOf<
      [ArrayBuffer | Uint8Array]
    >();
    expectTypeOf<Parameters<ServerToClientEvents['cursor']>>().toEqualTypeOf<[CursorMsg]>();
    expectTypeOf<Parameters<ServerToClientEvents['session']>>().toEqualTypeOf<[SessionStatusMsg]>();
    expectTypeOf<Parameters<ServerToClientEvents['shadow']>>().toEqualTypeOf<[ShadowMsg]>();
    expectTypeOf<Parameters<ServerToClientEvents['warning']>>().toEqualTypeOf<
      [SessionWarningMsg]
    >();
    expectTypeOf<Parameters<ServerToClientEvents['server']>>().toEqualTypeOf<[ServerStatusMsg]>();
    expectTypeOf<Parameters<ServerToClientEvents['error']>>().toEqualTypeOf<
      [{ code: string; message: string }]
    >();
  });

  it('names exactly these events', () => {
    expectTypeOf<keyof ServerToClientEvents>().toEqualTypeOf<
      | 'frame'
      | 'cursor'
      | 'clipboard'
      | 'session'
      | 'notice'
      | 'shadow'
      | 'warning'
      | 'server'
      | 'error'
      | 'audio'
    >();
  });
});
