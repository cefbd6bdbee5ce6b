// What one look of video mode for a region in motion costs on a 1920x1080 desktop: the heat
// map's hot cells and the region finder, with no cell hot (typing: a glyph changed once) and
// with one (every look then walks all 8,100 cells). `node server/bench/video-look-micro.mjs`
// after a build.
import { HeatMap } from '../dist/stream/heat-map.js';
import { findVideoRegion } from '../dist/stream/video/region-finder.js';

const W = 1920;
const H = 1080;
const LOOKS = 20_000;
const clock = { t: 0, now: () => clock.t };
const heat = new HeatMap(clock);
heat.resize(W, H);
const glyph = { x: 100, y: 100, w: 9, h: 18 };

function looks(label) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < LOOKS; i++) {
    const cells = heat.hotCells();
    if (cells) findVideoRegion(cells, W, H);
  }
  const us = Number(process.hrtime.bigint() - start) / LOOKS / 1000;
  console.log(JSON.stringify({ case: label, looks: LOOKS, usPerLook: Number(us.toFixed(2)) }));
}

heat.touch(glyph);
looks('nothing hot (a glyph typed once)');
for (let i = 0; i < 5; i++) {
  clock.t += 30;
  heat.touch(glyph);
}
looks('one hot cell');
