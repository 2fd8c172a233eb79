import { defineConfig } from "vite";

// The gateway's web face serves dist/ from the same origin as its RPCs, so the bundle needs no base URL.
export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No inline scripts or styles: the web face's Content-Security-Policy allows 'self' only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
