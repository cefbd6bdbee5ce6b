import { createCipheriv } from 'node:crypto';

/** VNC authentication (security type 2): challenge and response are this long, bytes. */
export const VNC_CHALLENGE_LENGTH = 16;

/** DES keys are 8 bytes; VNC passwords beyond 8 bytes are ignored by every implementation. */
const DES_KEY_LENGTH = 8;

/**
 * The 8-byte DES key VNC derives from a password: its first 8 bytes (UTF-8 for a string),
 * zero-padded, each byte bit-reversed. The reversal is a historic quirk: the original VNC
 * code fed the key to a DES library that numbers key bits from the other end.
 */
export function vncPasswordKey(password: string | Uint8Array): Buffer {
  const bytes =
    typeof password === 'string' ? Buffer.from(password, 'utf8') : Buffer.from(password);
  const key = Buffer.alloc(DES_KEY_LENGTH);
  for (let i = 0; i < DES_KEY_LENGTH && i < bytes.length; i++) {
    key[i] = reverseBits(bytes[i] as number);
  }
  return key;
}

/**
 * DES-ECB encrypt `data` (a multiple of 8 bytes) under an 8-byte key. OpenSSL 3 keeps
 * single DES in the legacy provider only; triple DES in EDE mode with K1 = K2 = K3
 * computes E(K, D(K, E(K, x))) = E(K, x), i.e. exactly single DES.
 */
export function desEcbEncrypt(key: Uint8Array, data: Uint8Array): Buffer {
  if (key.length !== DES_KEY_LENGTH)
    throw new RangeError(`DES key must be 8 bytes, got ${key.length}`);
  if (data.length % 8 !== 0)
    throw new RangeError(`DES input must be a multiple of 8 bytes, got ${data.length}`);
  const cipher = createCipheriv('des-ede3-ecb', Buffer.concat([key, key, key]), null);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

/** The 16-byte answer to a VNC authentication challenge. */
export function vncAuthResponse(challenge: Uint8Array, password: string | Uint8Array): Buffer {
  if (challenge.length !== VNC_CHALLENGE_LENGTH) {
    throw new RangeError(
      `VNC challenge must be ${VNC_CHALLENGE_LENGTH} bytes, got ${challenge.length}`,
    );
  }
  return desEcbEncrypt(vncPasswordKey(password), challenge);
}

function reverseBits(byte: number): number {
  let out = 0;
  for (let bit = 0; bit < 8; bit++) {
    out = (out << 1) | ((byte >> bit) & 1);
  }
  return out;
}
