// Line charts on a <canvas>, drawn by hand (no library): axes with round tick values, one line per series,
// dashed lines and point markers where asked. Long series (10,000 losses) are reduced to the min and max
// of each pixel column, so a chart redraws in a millisecond or two and spikes stay visible.

export const COLORS = ["#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#9333ea", "#db2777", "#65a30d"];

const MARGIN = { left: 58, right: 18, top: 14, bottom: 42 };
const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

export class LineChart {
  /**
   * canvas: the <canvas>, sized by CSS; xLabel, yLabel: axis titles; yRange: [min, max] or null (fit the data);
   * integerX: x values are counts (iterations, epochs), so ticks are whole numbers;
   * empty: the text shown while there is nothing to draw.
   */
  constructor(canvas, { xLabel, yLabel, yRange = null, integerX = false, empty = "No data yet" }) {
    Object.assign(this, { canvas, xLabel, yLabel, yRange, integerX, empty });
    this.series = [];
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(canvas);
  }

  /** Stop redrawing on resize (the view that owns the canvas is going away). */
  destroy() {
    this.observer.disconnect();
  }

  /** series: [{label, color, points: [[x, y], ...], dashed, markers}] */
  update(series, empty = this.empty) {
    this.series = series;
    this.empty = empty;
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;

    const drawn = this.series.filter((s) => s.points.some(([, y]) => Number.isFinite(y)));
    canvas.dataset.points = drawn.reduce((n, s) => n + s.points.length, 0);
    canvas.dataset.series = drawn.length;
    if (!drawn.length) {
      ctx.fillStyle = "#8a8fa3";
      ctx.textAlign = "center";
      ctx.fillText(this.empty, width / 2, height / 2);
      return;
    }
    const box = { x: MARGIN.left, y: MARGIN.top, w: width - MARGIN.left - MARGIN.right,
      h: height - MARGIN.top - MARGIN.bottom };
    const scale = this.scales(drawn, box);
    this.axes(ctx, box, scale);
    ctx.save();
    ctx.beginPath();
    ctx.rect(box.x, box.y - 4, box.w, box.h + 8);
    ctx.clip();
    for (const s of drawn) line(ctx, s, scale);
    ctx.restore();
  }

  scales(series, box) {
    const xs = series.flatMap((s) => s.points.map(([x]) => x));
    const ys = series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
    const [xLow, xHigh] = [Math.min(...xs), Math.max(...xs)];
    const [x0, x1] = padRange(xLow, this.integerX ? Math.max(xHigh, xLow + 1) : xHigh);
    const [y0, y1] = this.yRange ?? padRange(Math.min(...ys), Math.max(...ys));
    const xTicks = ticks(x0, x1, Math.max(2, Math.floor(box.w / 90)), this.integerX ? 1 : 0);
    const yTicks = ticks(y0, y1, Math.max(2, Math.floor(box.h / 40)));
    return {
      x: (v) => box.x + ((v - x0) / (x1 - x0)) * box.w,
      y: (v) => box.y + box.h - ((v - y0) / (y1 - y0)) * box.h,
      xTicks: xTicks.filter((t) => t >= x0 && t <= x1),
      yTicks: yTicks.filter((t) => t >= y0 && t <= y1),
    };
  }

  axes(ctx, box, scale) {
    ctx.strokeStyle = "#e6e8ef";
    ctx.fillStyle = "#5b6072";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of scale.yTicks) {
      const y = Math.round(scale.y(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(box.x, y);
      ctx.lineTo(box.x + box.w, y);
      ctx.stroke();
      ctx.fillText(tickLabel(t), box.x - 8, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of scale.xTicks) {
      ctx.fillText(tickLabel(t), scale.x(t), box.y + box.h + 7);
    }
    ctx.strokeStyle = "#9aa0b4";
    ctx.beginPath();
    ctx.moveTo(box.x + 0.5, box.y);
    ctx.lineTo(box.x + 0.5, box.y + box.h + 0.5);
    ctx.lineTo(box.x + box.w, box.y + box.h + 0.5);
    ctx.stroke();
    ctx.fillStyle = "#3b3f4e";
    ctx.fillText(this.xLabel, box.x + box.w / 2, box.y + box.h + 24);
    ctx.save();
    ctx.translate(14, box.y + box.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(this.yLabel, 0, 0);
    ctx.restore();
  }
}

/** One series: a polyline through its points, reduced to min/max per pixel column when dense. */
function line(ctx, s, scale) {
  ctx.strokeStyle = s.color;
  ctx.lineWidth = s.width ?? 1.5;
  ctx.setLineDash(s.dashed ? [6, 4] : []);
  ctx.beginPath();
  let column = null;
  let started = false;
  const flush = () => {
    if (!column) return;
    const { px, first, low, high, last } = column;
    for (const py of [first, low, high, last]) {
      if (started) ctx.lineTo(px, py);
      else ctx.moveTo(px, py);
      started = true;
    }
  };
  for (const [x, y] of s.points) {
    if (!Number.isFinite(y)) { // a diverged value: leave a gap
      flush();
      column = null;
      started = false;
      continue;
    }
    const px = Math.round(scale.x(x));
    const py = scale.y(y);
    if (column && column.px === px) {
      column.low = Math.min(column.low, py);
      column.high = Math.max(column.high, py);
      column.last = py;
    } else {
      flush();
      column = { px, first: py, low: py, high: py, last: py };
    }
  }
  flush();
  ctx.stroke();
  ctx.setLineDash([]);
  if (s.markers && s.points.length <= 60) {
    ctx.fillStyle = s.color;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) continue;
      ctx.beginPath();
      ctx.arc(scale.x(x), scale.y(y), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

function padRange(low, high) {
  if (low === high) return [low - (Math.abs(low) || 1) * 0.5, high + (Math.abs(high) || 1) * 0.5];
  const pad = (high - low) * 0.04;
  return [low - pad, high + pad];
}

/** About `count` round tick values (1, 2 or 5 times a power of ten apart, at least minStep) in [low, high]. */
function ticks(low, high, count, minStep = 0) {
  const raw = Math.max((high - low) / count, minStep);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function tickLabel(t) {
  if (Math.abs(t) >= 10000) return `${t / 1000}k`;
  return String(Number(t.toPrecision(6)));
}

/** An HTML legend: a swatch (solid or dashed) and a label per entry. */
export function legend(entries) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const { label, color, dashed } of entries) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = dashed ? "swatch dashed" : "swatch";
    swatch.style.setProperty("--color", color);
    item.append(swatch, label);
    list.append(item);
  }
  return list;
}
