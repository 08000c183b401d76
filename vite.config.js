// Vite builds the page and the module worker; Pyodide's own files are served
// raw from web/public/pyodide (copied by scripts/build-web.sh), never bundled.
import { defineConfig } from "vite";

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
  optimizeDeps: { exclude: ["pyodide"] },
  worker: { format: "es" },
  server: { host: "127.0.0.1" },
  preview: { host: "127.0.0.1" },
});
