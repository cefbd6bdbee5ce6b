/**
 * The Files side panel (issue 13): upload files into the desktop's ~/Uploads (a button, or
 * files dropped anywhere on the viewer), each with its own progress bar and outcome, and the
 * desktop's ~/Downloads listed with a download link per file. Uploads go as the raw bytes of
 * one POST per file (XMLHttpRequest: fetch has no upload progress).
 */
import type { DesktopFileEntry, UploadResult } from '@vdi/shared';
import { clear, h } from '../dom';
import { api, errorMessage, seg } from '../http';

/** "12.3 MB" */
export function fileSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export class FilesPanel {
  readonly el: HTMLElement;
  private readonly picker = h('input', {
    type: 'file',
    multiple: true,
    hidden: true,
    attrs: { 'aria-label': 'Files to upload' },
  });
  private readonly uploads = h('ul', { class: 'file-list', attrs: { 'aria-label': 'Uploads' } });
  private readonly downloads = h('ul', {
    class: 'file-list',
    attrs: { 'aria-label': 'Downloads' },
  });
  private readonly downloadsNote = h('p', { class: 'hint', attrs: { 'aria-live': 'polite' } });

  constructor(private readonly sessionId: string) {
    const uploadBtn = h(
      'button',
      { type: 'button', class: 'btn btn-primary btn-small' },
      'Upload files…',
    );
    const refreshBtn = h('button', { type: 'button', class: 'btn btn-small' }, 'Refresh');
    this.el = h(
      'aside',
      { class: 'viewer-panel viewer-files', hidden: true, attrs: { 'aria-label': 'Files' } },
      h('h2', null, 'Files'),
      h(
        'p',
        { class: 'hint' },
        'Drop files on the desktop, or choose them: they are saved in Uploads in your home folder.',
      ),
      h('div', { class: 'panel-actions' }, uploadBtn, this.picker),
      this.uploads,
      h('h3', null, 'Downloads'),
      h(
        'p',
        { class: 'hint' },
        'Files the desktop saves in its Downloads folder can be downloaded here.',
      ),
      this.downloadsNote,
      this.downloads,
      h('div', { class: 'panel-actions' }, refreshBtn),
    );
    uploadBtn.addEventListener('click', () => this.picker.click());
    this.picker.addEventListener('change', () => {
      this.upload([...(this.picker.files ?? [])]);
      this.picker.value = '';
    });
    refreshBtn.addEventListener('click', () => void this.refresh());
  }

  /** Lets files dropped on `target` be uploaded; `opened` shows the panel. */
  acceptDrops(target: HTMLElement, opened: () => void): void {
    target.addEventListener('dragover', (e) => {
      if (!e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
      target.classList.add('drop-target');
    });
    target.addEventListener('dragleave', () => target.classList.remove('drop-target'));
    target.addEventListener('drop', (e) => {
      target.classList.remove('drop-target');
      const files = [...(e.dataTransfer?.files ?? [])];
      if (files.length === 0) return;
      e.preventDefault();
      opened();
      this.upload(files);
    });
  }

  /** Uploads each file with its own row: name, progress bar, then the outcome. */
  upload(files: File[]): void {
    for (const file of files) {
      const bar = h('progress', {
        max: Math.max(file.size, 1),
        value: 0,
        attrs: { 'aria-label': `Uploading ${file.name}` },
      });
      const status = h('small', { class: 'hint' }, 'Uploading…');
      const row = h(
        'li',
        { dataset: { state: 'uploading' } },
        h('span', { class: 'file-name' }, file.name),
        bar,
        status,
      );
      this.uploads.prepend(row);
      const xhr = new XMLHttpRequest();
      xhr.open(
        'POST',
        `/api/sessions/${seg(this.sessionId)}/files/uploads?name=${encodeURIComponent(file.name)}`,
      );
      xhr.setRequestHeader('X-Requested-With', 'vdi');
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.upload.addEventListener('progress', (e) => {
        bar.value = e.loaded;
        status.textContent = `${fileSize(e.loaded)} of ${fileSize(file.size)}`;
      });
      const finish = (state: 'done' | 'failed', text: string): void => {
        row.dataset.state = state;
        status.textContent = text;
        if (state === 'done') bar.value = bar.max;
        status.setAttribute('role', state === 'failed' ? 'alert' : 'status');
      };
      xhr.addEventListener('load', () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          const r = JSON.parse(xhr.responseText) as UploadResult;
          finish('done', `Saved as Uploads/${r.name} (${fileSize(r.bytes)})`);
        } else {
          let message = `Upload failed (${xhr.status})`;
          try {
            const body = JSON.parse(xhr.responseText) as { error?: { message?: string } };
            if (body.error?.message) message = `Upload failed: ${body.error.message}`;
          } catch {
            /* not JSON */
          }
          finish('failed', message);
        }
      });
      xhr.addEventListener('error', () =>
        finish('failed', 'Upload failed: the connection to the server was lost'),
      );
      xhr.send(file);
    }
  }

  /** Lists ~/Downloads again. */
  async refresh(): Promise<void> {
    this.downloadsNote.textContent = 'Loading…';
    try {
      const files = await api.get<DesktopFileEntry[]>(
        `/api/sessions/${seg(this.sessionId)}/files/downloads`,
      );
      clear(this.downloads);
      for (const f of files.sort((a, b) => a.name.localeCompare(b.name))) {
        this.downloads.append(
          h(
            'li',
            null,
            h(
              'a',
              {
                href: `/api/sessions/${seg(this.sessionId)}/files/downloads/${seg(f.name)}`,
                download: f.name,
              },
              f.name,
            ),
            h('small', { class: 'hint' }, fileSize(f.size)),
          ),
        );
      }
      this.downloadsNote.textContent = files.length === 0 ? 'The Downloads folder is empty.' : '';
    } catch (err) {
      this.downloadsNote.textContent = `Could not list Downloads: ${errorMessage(err)}`;
    }
  }
}
