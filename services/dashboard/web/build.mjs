// Copies the dashboard's third-party browser files from node_modules into
// ../static/vendor/, the folder solewatch serves (and commits, so that running
// solewatch needs no Node.js). Rebuild after changing package.json:
//
//     cd services/dashboard/web && npm ci && npm run build
//
// Source-map comments are dropped: the maps are not shipped, and a browser
// asking for them would only get 404s.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const vendor = join(here, "..", "static", "vendor");

const FILES = [
  // [package, file in the package, destination under vendor/, strip the source-map comment]
  ["leaflet", "dist/leaflet.js", "leaflet/leaflet.js", true],
  ["leaflet", "dist/leaflet.css", "leaflet/leaflet.css", false],
  ["leaflet", "dist/images/layers.png", "leaflet/images/layers.png", false],
  ["leaflet", "dist/images/layers-2x.png", "leaflet/images/layers-2x.png", false],
  ["leaflet", "dist/images/marker-icon.png", "leaflet/images/marker-icon.png", false],
  ["leaflet", "dist/images/marker-icon-2x.png", "leaflet/images/marker-icon-2x.png", false],
  ["leaflet", "dist/images/marker-shadow.png", "leaflet/images/marker-shadow.png", false],
  ["leaflet", "LICENSE", "leaflet/LICENSE", false],
  ["socket.io-client", "dist/socket.io.esm.min.js", "socket.io/socket.io.esm.min.js", true],
  ["socket.io-client", "LICENSE", "socket.io/LICENSE", false],
];

rmSync(vendor, { recursive: true, force: true });
const versions = {};
for (const [pkg, file, destination, stripSourceMap] of FILES) {
  const source = join(modules, pkg, file);
  const target = join(vendor, destination);
  mkdirSync(dirname(target), { recursive: true });
  if (stripSourceMap) {
    const text = readFileSync(source, "utf8").replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, "\n");
    writeFileSync(target, text);
  } else {
    copyFileSync(source, target);
  }
  versions[pkg] = JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
}
writeFileSync(join(vendor, "VERSIONS.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`vendor files written to ${vendor}:`, versions);
