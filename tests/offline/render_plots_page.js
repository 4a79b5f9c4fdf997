// Opens a page written by `dvc plots show` or `dvc plots diff` in jsdom with every network request
// refused, runs its scripts, and reports, per plot, whether vega-embed drew it. Exit status 1 if any
// plot was not drawn, a request was attempted or a script failed.
//   npm install jsdom && node tests/offline/render_plots_page.js path/to/index.html
const { JSDOM, ResourceLoader, VirtualConsole } = require("jsdom");

const page = process.argv[2];
const attempted = [];
const errors = [];

class NoNetwork extends ResourceLoader {
  fetch(url) {
    attempted.push(url);
    return null;
  }
}

const console_ = new VirtualConsole();
console_.on("jsdomError", (error) => {
  // jsdom has no canvas: vega falls back to drawing nothing into it, which is not a page error
  if (!String(error.message).includes("HTMLCanvasElement.prototype.getContext")) errors.push(error.message);
});
console_.on("error", (...args) => errors.push(args.join(" ")));

// Browsers have structuredClone; jsdom's window lacks it, so lend it Node's.
const beforeParse = (window) => { window.structuredClone = globalThis.structuredClone; };

JSDOM.fromFile(page, { runScripts: "dangerously", resources: new NoNetwork(), pretendToBeVisual: true,
                       virtualConsole: console_, beforeParse }).then((dom) => {
  setTimeout(() => {
    const plots = [...dom.window.document.querySelectorAll("body > div[id]")];
    let drawn = 0;
    for (const div of plots) {
      const view = div.querySelector("canvas, svg");
      if (div.classList.contains("vega-embed") && view) drawn += 1;
      else console.log(`not drawn: ${div.id}`);
    }
    console.log(`${page}: ${drawn} of ${plots.length} plots drawn by vega-embed; ` +
                `${attempted.length} network requests attempted; ${errors.length} script errors`);
    for (const url of attempted) console.log(`  requested: ${url}`);
    for (const error of errors.slice(0, 5)) console.log(`  error: ${error}`);
    process.exit(drawn === plots.length && plots.length > 0 && !attempted.length && !errors.length ? 0 : 1);
  }, 5000);
});
