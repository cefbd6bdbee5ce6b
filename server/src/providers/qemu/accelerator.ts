/**
 * KVM or TCG: which accelerator a VM gets here. 'auto' uses KVM when the device opens
 * read-write and is backed by hardware virtualisation, TCG (software emulation) otherwise,
 * and says why not KVM.
 */
import fs from 'node:fs/promises';
import { ProviderError } from '../types.js';

export type QemuAccel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: QemuAccel;
  /** why not KVM, when it is TCG */
  why?: string;
}

/** The accelerator for `option` with this KVM device; throws when 'kvm' is asked for but unusable. */
export async function chooseAccel(
  option: 'auto' | QemuAccel,
  kvmDevice: string,
): Promise<AccelChoice> {
  if (option === 'tcg') return { accel: 'tcg', why: 'TCG was asked for' };
  const opens = await kvmOpens(kvmDevice);
  if (option === 'kvm') {
    // asked for explicitly: the admin knows whether the guest suits this KVM
    if (opens !== true)
      throw new ProviderError('QEMU_KVM_UNAVAILABLE', `KVM was asked for but ${opens}`);
    return { accel: 'kvm' };
  }
  if (opens !== true) return { accel: 'tcg', why: opens };
  const backend = await kvmBackend(kvmDevice);
  if (backend !== true) return { accel: 'tcg', why: backend };
  return { accel: 'kvm' };
}

/** true, or why not: opening the device read-write is exactly what QEMU will do */
async function kvmOpens(kvmDevice: string): Promise<true | string> {
  try {
    const fh = await fs.open(kvmDevice, 'r+');
    await fh.close();
    return true;
  } catch (err) {
    return `${kvmDevice} cannot be opened read-write (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}

/**
 * /dev/kvm is not always hardware virtualisation: PVM (kvm_pvm, used by some sandboxes
 * and nested clouds) runs only PVM-aware guest kernels, and a stock kernel hangs in its
 * decompressor there. Auto mode uses KVM only over kvm_intel or kvm_amd (built in or
 * loaded, both show in /sys/module).
 */
async function kvmBackend(kvmDevice: string): Promise<true | string> {
  let modules: string[];
  try {
    modules = await fs.readdir('/sys/module');
  } catch {
    return true; // no sysfs to ask: trust the device
  }
  if (modules.includes('kvm_intel') || modules.includes('kvm_amd')) return true;
  const others = modules.filter((m) => m.startsWith('kvm_'));
  return `${kvmDevice} is not backed by kvm_intel or kvm_amd${others.length > 0 ? ` (found ${others.join(', ')})` : ''}; set accel 'kvm' to use it anyway`;
}
