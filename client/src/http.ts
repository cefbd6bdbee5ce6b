/**
 * The REST client: same-origin cookies, the CSRF header on every state-changing call, and
 * one error type carrying the server's `{ error: { code, message } }`.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    /** the server's error code (POOL_FULL, SESSIONS_ACTIVE, …), or NETWORK / HTTP_<status> */
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RequestOptions {
  body?: unknown;
  /** the sign-in call handles its own 401 (wrong password); everything else redirects */
  redirectOn401?: boolean;
  signal?: AbortSignal;
}

let onUnauthorized: () => void = () => {};

/** Called on any 401 (session expired, signed out elsewhere) unless the call opts out. */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export async function request<T>(
  method: Method,
  path: string,
  opts: RequestOptions = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  // CSRF guard: a cross-site page cannot send a custom header without a CORS preflight.
  if (method !== 'GET') headers['X-Requested-With'] = 'vdi';
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(
      0,
      'NETWORK',
      'Cannot reach the server. Check your connection and try again.',
    );
  }
  if (res.status === 401 && opts.redirectOn401 !== false) onUnauthorized();
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('Content-Type') ?? '';
  if (!type.includes('json')) return undefined as T;
  return (await res.json()) as T;
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = res.statusText || `Request failed (${res.status})`;
  let details: unknown;
  try {
    const body = (await res.json()) as {
      error?: { code?: unknown; message?: unknown; details?: unknown };
    };
    if (body.error) {
      if (typeof body.error.code === 'string') code = body.error.code;
      if (typeof body.error.message === 'string' && body.error.message)
        message = body.error.message;
      details = body.error.details;
    }
  } catch {
    // not JSON (a proxy's error page): keep the status text
  }
  if (res.status === 429) {
    const retry = res.headers.get('Retry-After');
    if (retry && /^\d+$/.test(retry) && !/try again/i.test(message)) {
      message = `${message} (try again in ${retry} s)`;
    }
  }
  return new ApiError(res.status, code, message, details);
}

export const api = {
  get: <T>(path: string, opts?: RequestOptions) => request<T>('GET', path, opts),
  post: <T = void>(path: string, body?: unknown, opts?: RequestOptions) =>
    request<T>('POST', path, { ...opts, body }),
  put: <T = void>(path: string, body?: unknown) => request<T>('PUT', path, { body }),
  patch: <T = void>(path: string, body?: unknown) => request<T>('PATCH', path, { body }),
  del: (path: string) => request<void>('DELETE', path),
};

/** A message for any thrown value, for showing to the user. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** `encodeURIComponent` for one path segment. */
export const seg = encodeURIComponent;
