import type {
  AdminDesktop,
  AdminPool,
  AdminSession,
  AuditEntry,
  ConnectResult,
  Entitlement,
  Group,
  LoginAnswer,
  Me,
  MyDesktop,
  Pool,
  User,
} from '@vdi/shared';

/*
 * What each REST route answers, by method and path, in the shared types the server's routes
 * are typed with (server/src/api). A path may carry ids (`/api/admin/pools/${id}`) and a
 * query string. Routes that answer 204 give undefined; a path not listed here, unknown.
 */

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

type GetAnswer<P> = P extends '/api/auth/me'
  ? Me
  : P extends '/api/desktops'
    ? MyDesktop[]
    : P extends '/api/admin/users'
      ? User[]
      : P extends '/api/admin/groups'
        ? Group[]
        : P extends '/api/admin/pools'
          ? AdminPool[]
          : P extends `/api/admin/pools/${string}/desktops`
            ? AdminDesktop[]
            : P extends `/api/admin/pools/${string}`
              ? AdminPool
              : P extends '/api/admin/entitlements'
                ? Entitlement[]
                : P extends '/api/admin/sessions'
                  ? AdminSession[]
                  : P extends `/api/admin/desktops/${string}/snapshots`
                    ? string[]
                    : P extends '/api/admin/audit'
                      ? AuditEntry[]
                      : unknown;

type PostAnswer<P> = P extends '/api/auth/login'
  ? LoginAnswer
  : P extends `/api/pools/${string}/connect`
    ? ConnectResult
    : P extends '/api/admin/users'
      ? User
      : P extends '/api/admin/groups'
        ? Group
        : P extends '/api/admin/pools'
          ? Pool
          : P extends '/api/admin/entitlements'
            ? Entitlement
            : P extends `/api/${string}`
              ? undefined
              : unknown;

type PatchAnswer<P> = P extends `/api/admin/users/${string}`
  ? User
  : P extends `/api/admin/pools/${string}`
    ? Pool
    : unknown;

type PutAnswer<P> = P extends `/api/admin/groups/${string}/members` ? Group : unknown;

/** The answer of `method path` (query string ignored). */
export type AnswerOf<M extends string, P extends string> = P extends `${infer Path}?${string}`
  ? AnswerOf<M, Path>
  : M extends 'GET'
    ? GetAnswer<P>
    : M extends 'POST'
      ? PostAnswer<P>
      : M extends 'PATCH'
        ? PatchAnswer<P>
        : M extends 'PUT'
          ? PutAnswer<P>
          : M extends 'DELETE'
            ? undefined
            : unknown;
