// A worker's track as files: GeoJSON (RFC 7946) and CSV, built in the browser
// from the positions API.

const CSV_COLUMNS = ["imei", "name", "ts", "lat", "lon", "alt", "speed", "course", "sats", "hdop", "battery", "buffered"];

function csvField(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text) && typeof value === "string") text = `'${text}`; // no formulas in spreadsheets
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function trackToCsv(device, positions) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const p of positions) {
    const row = { ...p, imei: device.imei, name: device.name };
    lines.push(CSV_COLUMNS.map((column) => csvField(row[column])).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

export function trackToGeoJson(device, positions, alerts, { since, until }) {
  const features = [{
    type: "Feature",
    geometry: { type: "LineString", coordinates: positions.map((p) => [p.lon, p.lat, p.alt]) },
    properties: {
      imei: device.imei, name: device.name, since, until, points: positions.length,
      times: positions.map((p) => p.ts),
      speeds: positions.map((p) => p.speed),
      batteries: positions.map((p) => p.battery),
    },
  }];
  for (const alert of alerts) {
    if (alert.lat === null || alert.lon === null) continue;
    features.push({
      type: "Feature",
      geometry: { type: "Point", coordinates: [alert.lon, alert.lat] },
      properties: { alert_id: alert.id, imei: alert.imei, kind: alert.kind, ts: alert.ts, status: alert.status },
    });
  }
  return JSON.stringify({ type: "FeatureCollection", features }, null, 1);
}

export function download(filename, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Track length in metres (haversine). */
export function trackLength(positions) {
  let metres = 0;
  for (let i = 1; i < positions.length; i++) metres += distance(positions[i - 1], positions[i]);
  return metres;
}

function distance(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const s = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_000 * Math.asin(Math.sqrt(s));
}
