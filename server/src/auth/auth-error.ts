/**
 * A request its sender's sign-in does not allow: not signed in (401) or not an administrator
 * (403). The session guards pass it on; the API's error handler answers with its status and
 * code, as for any other error with a code.
 */
export class AuthError extends Error {
  constructor(
    readonly status: 401 | 403,
    readonly code: 'UNAUTHENTICATED' | 'FORBIDDEN',
    message: string,
  ) {
    super(message);
  }
}
