import { z } from 'zod';

/** A file of a desktop's ~/Downloads, as the files panel lists it. */
export const DesktopFileEntry = z.object({
  name: z.string(),
  /** bytes */
  size: z.number().int().min(0),
  /** ISO-8601 */
  modified: z.string(),
});
export type DesktopFileEntry = z.infer<typeof DesktopFileEntry>;

/** An upload's answer: the name it got in ~/Uploads (`name (1).ext` when taken) and its size. */
export const UploadResult = z.object({
  name: z.string(),
  bytes: z.number().int().min(0),
});
export type UploadResult = z.infer<typeof UploadResult>;
