// Vite builds the page and the module worker; Pyodide's own files are served
// raw from web/public/pyodide (copied by scripts/build-web.sh), never bundled.
// onnxruntime-web likewise: its "use-extern-wasm" build loads its wasm and glue
// from ort.env.wasm.wasmPaths (dist/ort/, copied by the build script) instead of
// having Vite emit a second 15 MB copy into assets/.
import { defaultClientConditions, defineConfig } from "vite";

export default defineConfig({
  root: "web",
  publicDir: "public",
  // Real 404s: the SPA fallback would answer a missing wheel with index.html.
  appType: "mpa",
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    target: "es2022",
  },
  resolve: { conditions: ["onnxruntime-web-use-extern-wasm", ...defaultClientConditions] },
  optimizeDeps: { exclude: ["pyodide", "onnxruntime-web"] },
  worker: { format: "es" },
  server: { host: "127.0.0.1" },
  preview: { host: "127.0.0.1" },
});
