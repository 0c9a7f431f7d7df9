// Builds the UI into dist/: one JavaScript bundle and one stylesheet (the page is index.html
// itself). The hearth binary embeds them (src/http/ui.rs), so running Hearth needs no Node.js;
// CI rebuilds dist/ and fails when it differs from what is committed.
import { build } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2022",
  legalComments: "none",
  outfile: "dist/app.js",
  logLevel: "warning",
});
const css = ["node_modules/uplot/dist/uPlot.min.css", "src/flamegraph.css", "src/app.css"]
  .map((file) => `/* ${file.replace("node_modules/", "")} */\n${readFileSync(file, "utf8").trim()}\n`)
  .join("\n");
writeFileSync("dist/app.css", css);
