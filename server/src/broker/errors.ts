/** Errors with a code a program can switch on and a status the API maps them to. */
export class BrokerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 409,
  ) {
    super(message);
  }
}
