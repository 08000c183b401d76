// Small time-series charts (uPlot, ~50 KB) fed from the snapshot's `series` columns.
// Each chart is created once and given new data on every refresh.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const WIDTH = 340;
const HEIGHT = 150;

function makeChart(parent, title, label, color, { time = true } = {}) {
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.chart = label;
  const h = document.createElement("h3");
  h.textContent = title;
  box.append(h);
  parent.append(box);
  const opts = {
    width: WIDTH,
    height: HEIGHT,
    scales: { x: { time } },
    legend: { show: false },
    series: [{}, { label, stroke: color, width: 2, spanGaps: true, points: { show: !time } }],
    axes: [{ size: 28 }, { size: 44 }],
  };
  return new uPlot(opts, [[], []], box);
}

/** The dashboard's charts: latency, messages/s and patterns over time, and a learning curve. */
export class Charts {
  constructor(seriesParent, curveParent) {
    this.latency = makeChart(seriesParent, "Latency to a peer (ms, signed ping)", "latency_ms", "#2f6fdf");
    this.rate = makeChart(seriesParent, "Messages received per second", "msgs_per_s", "#17753a");
    this.patterns = makeChart(seriesParent, "Patterns known", "patterns", "#9a6a00");
    this.curve = makeChart(curveParent, "", "return", "#8a1010", { time: false });
  }

  update(snap) {
    const s = snap.series;
    this.latency.setData([s.t, s.latency_ms]);
    this.rate.setData([s.t, s.msgs_per_s]);
    this.patterns.setData([s.t, s.patterns]);
    this.curve.setData([snap.curve.map((_, i) => i + 1), snap.curve]);
  }
}
