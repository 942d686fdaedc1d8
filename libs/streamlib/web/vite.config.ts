import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Fixed file names: the Rust crate embeds exactly dist/index.html, dist/assets/app.js and
// dist/assets/app.css (see src/core/service/http/dashboard.rs). No source maps, no hashes: the
// build must be byte-for-byte reproducible from the lockfile (CI rebuilds and compares).
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    cssCodeSplit: false,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/app-[name].js",
        assetFileNames: "assets/app[extname]",
        inlineDynamicImports: true,
      },
    },
  },
});
